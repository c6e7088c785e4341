// Package runtest runs a demo program's main function in a child process, as
// a user would run the built binary, so that tests can read its logs, send
// it SIGTERM and check its exit status. The child is the test binary itself,
// re-executed with an environment variable that makes TestMain call main.
//
// Only tests of the demo programs under examples/demo may import it. A Proc
// is safe for use by one test goroutine.
package runtest

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envRun, set to 1 in a child's environment, makes Main run the program.
const envRun = "WEFT_DEMO_RUNTEST_MAIN"

// Main is called first in TestMain. In a child started by Start it runs
// mainFn with the child's arguments and exits with status 0 if mainFn
// returns; otherwise it returns at once and the tests run.
func Main(mainFn func()) {
	if os.Getenv(envRun) != "1" {
		return
	}
	// The child's command line is: test binary, -test.run=^$, --, args.
	args := os.Args[1:]
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[i+1:]
	}
	os.Args = append([]string{os.Args[0]}, args...)
	mainFn()
	os.Exit(0)
}

// Proc is a running child program.
type Proc struct {
	cmd  *exec.Cmd
	addr chan string
	done chan struct{}

	mu sync.Mutex // guards log
	// log is everything the child wrote to stderr so far.
	log strings.Builder
}

var addrRE = regexp.MustCompile(`msg="serving [^"]+".* addr=(\S+)`)

// Start runs the test binary's main with args and env (KEY=VALUE) added to
// the environment. The child is killed when the test ends if still running.
func Start(t *testing.T, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), envRun+"=1")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{cmd: cmd, addr: make(chan string, 1), done: make(chan struct{})}
	go p.read(stderr)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

func (p *Proc) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		p.mu.Unlock()
		if m := addrRE.FindStringSubmatch(line); m != nil && !sent {
			p.addr <- m[1]
			sent = true
		}
	}
}

// Log returns what the child has written to stderr so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Addr waits for the child to log the address it serves on and returns it.
// It fails the test if the child exits first or a minute passes (a hang
// guard, not a performance check).
func (p *Proc) Addr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-p.addr:
		return a
	case <-p.done:
		t.Fatalf("program exited before serving; its log:\n%s", p.Log())
	case <-time.After(time.Minute):
		t.Fatalf("program did not log a serving address within a minute; its log:\n%s", p.Log())
	}
	return ""
}

// Stop sends SIGTERM and returns the exit code once the child exits, or
// fails the test if it is still running a minute later.
func (p *Proc) Stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM: %v", err)
	}
	return p.Wait(t)
}

// Wait returns the exit code once the child exits by itself, or fails the
// test if it is still running a minute later.
func (p *Proc) Wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("program still running a minute after SIGTERM; its log:\n%s", p.Log())
	}
	err := p.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("wait for program: %v", err)
		return -1
	}
}
