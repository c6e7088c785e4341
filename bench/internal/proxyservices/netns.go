package proxyservices

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Check reports why the scenario cannot run on this machine, or nil: it needs root (network
// namespaces, iptables, a process run as ProxyUID), `ip` and iptables.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates a network namespace, installs iptables rules in it and runs the proxy as uid 2102")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("needs ip (apt-get install iproute2)")
	}
	_, err1 := exec.LookPath("iptables-restore")
	_, err2 := exec.LookPath("iptables-save")
	if err1 != nil || err2 != nil {
		if _, err := exec.LookPath("xtables-nft-multi"); err != nil {
			return errors.New("needs iptables-save and iptables-restore for `weft-proxy init` (apt-get install iptables)")
		}
	}
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		return fmt.Errorf("needs /proc/thread-self/ns/net: %w", err)
	}
	return nil
}

// netns is a network namespace this package created.
type netns struct{ name string }

// newNetns creates a network namespace with a unique name and sets it up: the loopback
// interface up, the endpoints' range 198.18.0.0/16 local on it (every address accepts), and an
// interface owning the cluster IPs' range 198.19.0.0/16 (one end of a veth pair whose both ends
// stay in the namespace; kernels without the dummy driver have veth), so that connections to
// a cluster IP are routed out of it and iptables redirects them to the proxy before they leave.
func newNetns(ctx context.Context) (*netns, error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := &netns{name: fmt.Sprintf("weftbench-ps-%d-%s", os.Getpid(), hex.EncodeToString(b))}
	if err := run(ctx, "ip", "netns", "add", ns.name); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", ns.name, "link", "set", "lo", "up"},
		{"-n", ns.name, "route", "add", "local", "198.18.0.0/16", "dev", "lo"},
		{"-n", ns.name, "link", "add", "svc0", "type", "veth", "peer", "name", "svc1"},
		{"-n", ns.name, "addr", "add", "198.19.255.254/16", "dev", "svc0"},
		{"-n", ns.name, "link", "set", "svc1", "up"},
		{"-n", ns.name, "link", "set", "svc0", "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			ns.delete()
			return nil, err
		}
	}
	return ns, nil
}

// delete removes the namespace (its interfaces, routes and iptables rules go with it); the
// processes in it must have been stopped.
func (ns *netns) delete() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(ctx, "ip", "netns", "del", ns.name)
}

// do runs fn on an OS thread that has entered the namespace: sockets fn opens and processes it
// starts live there. The thread leaves the namespace afterwards; if it cannot, it ends with
// the goroutine instead of serving other goroutines from inside the namespace.
func (ns *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns.name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", ns.name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", ns.name, err))
			return // the thread stays locked and exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dial connects to addr from inside the namespace.
func (ns *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listen listens on addr inside the namespace.
func (ns *netns) listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// run runs a command and returns its output in the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
