package proc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gone reports whether pid no longer runs (absent or a zombie nobody reaped
// yet: inside containers the reaper may be slow or absent).
func gone(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func TestStopReachesTheWholeGroup(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		{"exits on SIGTERM", `sleep 600 & echo $!; wait`},
		{"ignores SIGTERM", `trap "" TERM; sleep 600 & echo $!; while :; do wait; done`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out lockedBuffer
			p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", tt.script}, Env: os.Environ(), Output: &out})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(out.String(), "\n") {
				if time.Now().After(deadline) {
					t.Fatal("the shell did not print its child's PID")
				}
				time.Sleep(10 * time.Millisecond)
			}
			grandchild, err := strconv.Atoi(strings.TrimSpace(out.String()))
			if err != nil {
				t.Fatal(err)
			}
			if pgid, _ := syscall.Getpgid(p.PID()); pgid != p.PID() {
				t.Errorf("child's process group %d, want its own (%d)", pgid, p.PID())
			}
			p.Stop(200 * time.Millisecond)
			select {
			case <-p.Done():
			default:
				t.Fatal("Stop returned before the child was reaped")
			}
			if err := syscall.Kill(p.PID(), 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("child %d still exists after Stop", p.PID())
			}
			for !gone(grandchild) {
				if time.Now().After(deadline) {
					t.Fatalf("grandchild %d still runs after Stop", grandchild)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestStartError(t *testing.T) {
	_, err := Start(Spec{Path: "/nonexistent/prog"})
	if err == nil || !strings.Contains(err.Error(), "start /nonexistent/prog") {
		t.Errorf("Start = %v", err)
	}
}
