package local

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// freePorts hands out free ports of 127.0.0.1, never the same one twice.
type freePorts struct {
	// mu guards used.
	mu   sync.Mutex
	used map[int]bool
}

func newFreePorts(reserved ...int) *freePorts {
	f := &freePorts{used: map[int]bool{}}
	for _, p := range reserved {
		f.used[p] = true
	}
	return f
}

// next returns a port the kernel reports free right now. Another program
// may still take it before a child binds it; the child then fails, and is
// restarted with the same port.
func (f *freePorts) next() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("choose a free port on 127.0.0.1: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !f.used[port] {
			f.used[port] = true
			return port, nil
		}
	}
	return 0, errors.New("choose a free port on 127.0.0.1: the kernel keeps returning ports already chosen")
}

// portUse names who needs a fixed port and how the user changes it.
type portUse struct {
	addr string // host:port
	// what uses the port, e.g. "expose web"
	what string
	// fix tells the user how to choose another port.
	fix string
}

// checkPorts fails on the first address that cannot be bound, before
// anything was started.
func checkPorts(uses []portUse) error {
	seen := map[string]string{}
	for _, u := range uses {
		if other, ok := seen[u.addr]; ok {
			_, port, _ := net.SplitHostPort(u.addr)
			return fmt.Errorf("port %s is wanted by both %s and %s; %s", port, other, u.what, u.fix)
		}
		seen[u.addr] = u.what
		l, err := net.Listen("tcp", u.addr)
		if err != nil {
			_, port, _ := net.SplitHostPort(u.addr)
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("port %s (%s) is in use; free it or %s", port, u.what, u.fix)
			}
			return fmt.Errorf("port %s (%s) cannot be used: %w; %s", port, u.what, err, u.fix)
		}
		l.Close()
	}
	return nil
}
