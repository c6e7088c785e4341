// Package peer starts the proxy pairs the benchmark compares: each Peer knows how to configure
// and launch its client-side proxy A (plain HTTP/1.1 in, TLS 1.3 with a client certificate out,
// pooled keep-alive connections) and its server-side proxy B (TLS in, client certificate
// required, plain HTTP/1.1 to the echo application), each as a process of its own with one
// worker, logs off, on its own loopback ports. Peers that implement ProtoPeer also start pairs
// for HTTP/2, gRPC and TCP with the same TLS between the pair (see proto.go).
//
// Only the benchmark harness imports peer. Peers are stateless values; a started Pair belongs to
// the caller, who must Stop it.
package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"weft.dev/weft/bench/internal/pki"
)

// Env is what every pair is started with.
type Env struct {
	// Dir is a fresh directory for this pair's configuration and logs; the caller removes it.
	Dir string
	// PKI holds the certificates of the run.
	PKI pki.Files
	// Echo is host:port of the echo application.
	Echo string
	// Self is the harness's own executable, re-executed for in-harness roles (see package role).
	Self string
	// Logger receives progress; never nil.
	Logger *slog.Logger
}

// Peer is one kind of proxy pair.
type Peer interface {
	// Name as reported in the results: "haproxy", "nginx", "weft (plaintext pair)".
	Name() string
	// Check says whether the peer can run here; a non-nil error says what to install or build.
	Check() error
	// Version is a short description of what runs, best effort.
	Version(ctx context.Context) string
	// Start launches the pair and returns once a request passes through it.
	Start(ctx context.Context, env Env) (*Pair, error)
}

// Pair is a running pair of proxies (or, for the direct baseline, none).
type Pair struct {
	// URL is where the load goes: proxy A, or the echo application for the baseline.
	URL string
	// A and B are the client-side and server-side proxy processes; nil for the baseline.
	A, B *Proc
	// BAddr is host:port where B accepts A's connections.
	BAddr string
	// BAdmin is B's admin host:port, for Weft pairs started with a Protocol.
	BAdmin string
	// Plaintext is true for a pair that does not (yet) speak TLS between its proxies.
	Plaintext bool
	// cleanup runs after the processes stopped.
	cleanup func()
}

// Stop stops both proxies and waits for them.
func (p *Pair) Stop() error {
	var errs []error
	for _, pr := range []*Proc{p.A, p.B} {
		if pr != nil {
			errs = append(errs, pr.Stop())
		}
	}
	if p.cleanup != nil {
		p.cleanup()
	}
	return errors.Join(errs...)
}

// Proc is a process started by the harness.
type Proc struct {
	Name string
	// PID of the process; its descendants count as part of it.
	PID int
	// Log is the file that holds the process's stdout and stderr.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProc starts path with args and extra environment variables, output to a log file in dir.
func StartProc(name, dir, path string, args, env []string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log of %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own: a signal meant for the harness (Ctrl-C) does not reach the proxies
	// before the harness stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to 5 s, then kills the process group.
func (p *Proc) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for 5s and was killed", p.Name, p.PID)
}

// Tail returns the end of the process's log, for error messages.
func (p *Proc) Tail() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

// FreePort returns a loopback host:port nothing listens on right now.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// WaitReady posts a 1 KiB body to url until it comes back intact, the processes die, or 20 s pass.
func WaitReady(ctx context.Context, url string, procs ...*Proc) error {
	payload := bytes.Repeat([]byte("r"), 1024)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p != nil && p.Exited() {
				return fmt.Errorf("%s exited during start-up: %v; log %s ends with: %s", p.Name, p.err, p.Log, p.Tail())
			}
		}
		last = probe(ctx, client, url, payload)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var tails []string
	for _, p := range procs {
		if p != nil {
			tails = append(tails, fmt.Sprintf("%s log %s: %s", p.Name, p.Log, p.Tail()))
		}
	}
	return fmt.Errorf("%s not ready after 20s: %w; %s", url, last, strings.Join(tails, "; "))
}

func probe(ctx context.Context, client *http.Client, url string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, payload) {
		return fmt.Errorf("status %d with %d bytes (want 200 with the 1024 bytes sent): %.200s", resp.StatusCode, len(body), body)
	}
	return nil
}

// lookBinary finds a binary on PATH or in the sbin directories Debian installs servers to.
func lookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin", name)
}

// firstLine runs a version command and returns the first line of its output.
func firstLine(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// startPair starts B then A, stopping both if the pair does not come up.
func startPair(ctx context.Context, url, bAddr string, startB, startA func() (*Proc, error)) (*Pair, error) {
	b, err := startB()
	if err != nil {
		return nil, err
	}
	a, err := startA()
	if err != nil {
		_ = b.Stop()
		return nil, err
	}
	pair := &Pair{URL: url, A: a, B: b, BAddr: bAddr}
	if err := WaitReady(ctx, url, a, b); err != nil {
		_ = pair.Stop()
		return nil, err
	}
	return pair, nil
}

// Direct is the baseline: the load goes straight to the echo application.
type Direct struct{}

// Name implements Peer.
func (Direct) Name() string { return "direct" }

// Check implements Peer.
func (Direct) Check() error { return nil }

// Version implements Peer.
func (Direct) Version(context.Context) string { return "no proxy" }

// Start implements Peer.
func (Direct) Start(ctx context.Context, env Env) (*Pair, error) {
	url := "http://" + env.Echo + "/"
	if err := WaitReady(ctx, url); err != nil {
		return nil, err
	}
	return &Pair{URL: url}, nil
}

// cutPort splits host:port.
func cutPort(hostport string) (host, port string, err error) {
	return net.SplitHostPort(hostport)
}

// All returns every pair the benchmark knows, HAProxy (the reference) first; the direct
// baseline is not among them.
func All() []Peer {
	return []Peer{HAProxy{}, Nginx{}, GoProxy{}, Caddy{}, Weft{}, Weft{MTLS: true}}
}

// Select returns the peers of All whose names are listed (comma-separated); "" or "all" means
// all of them.
func Select(list string) ([]Peer, error) {
	all := All()
	if list == "" || list == "all" {
		return all, nil
	}
	var out []Peer
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, p := range all {
			if strings.EqualFold(p.Name(), name) || strings.HasPrefix(p.Name(), name+" ") {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			var names []string
			for _, p := range all {
				names = append(names, p.Name())
			}
			return nil, fmt.Errorf("unknown peer %q (known: %s)", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}
