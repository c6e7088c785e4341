// Package proc starts and stops the child processes of a local mesh: each
// child runs in its own process group (so the terminal's Ctrl-C reaches only
// `weft up`, which stops the children in order) and is killed by the kernel
// if `weft up` dies (Pdeathsig).
//
// Only the local-mode supervisor imports proc. A *Process is safe for
// concurrent use.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// Spec describes one child process.
type Spec struct {
	// Path of the program; a name without a slash is looked up in PATH, a
	// relative path is relative to Dir.
	Path string
	Args []string
	// Env is the complete environment of the child.
	Env []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Output receives the child's stdout and stderr; nil discards them.
	Output io.Writer
}

// Process is a started child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	// err is the result of Wait; written once before done is closed.
	err error
}

// Start starts the child described by s.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	out := s.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID returns the child's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and was reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the child exited; valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the child's process group, so that programs the child
// started itself stop too. It does nothing once the child exited.
func (p *Process) Signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	// The child is the leader of its own group (Setpgid), so -pid is the group.
	if err := syscall.Kill(-p.PID(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM, waits up to grace for the child to exit, then sends
// SIGKILL and waits for it to be reaped.
func (p *Process) Stop(grace time.Duration) {
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Alive reports whether a process with pid exists (kill(pid, 0) does not
// fail with ESRCH).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
