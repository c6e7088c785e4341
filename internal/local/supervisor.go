package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/local/proc"
)

// Registry is the part of the configuration store the supervisor writes:
// *memory.Store implements it.
type Registry interface {
	SetService(config.Service)
	UpsertEndpoint(key config.ServiceKey, ep config.Endpoint)
	RemoveEndpoint(key config.ServiceKey, addr string)
	SetProxy(config.Proxy)
	RemoveProxy(id string)
}

// Timing of the supervisor; the zero value of a field means its default.
type Timing struct {
	// BackoffMin is the first delay before a restart; default 1s.
	BackoffMin time.Duration
	// BackoffMax caps the doubling delay; default 30s.
	BackoffMax time.Duration
	// Grace is how long children get to exit after SIGTERM; default 10s.
	Grace time.Duration
	// ProbeInterval between readiness probes; default 200ms.
	ProbeInterval time.Duration
}

func (t Timing) withDefaults() Timing {
	if t.BackoffMin <= 0 {
		t.BackoffMin = time.Second
	}
	if t.BackoffMax <= 0 {
		t.BackoffMax = 30 * time.Second
	}
	if t.Grace <= 0 {
		t.Grace = 10 * time.Second
	}
	if t.ProbeInterval <= 0 {
		t.ProbeInterval = 200 * time.Millisecond
	}
	return t
}

// Supervisor runs the children of a plan, keeps them running, and keeps the
// registry's endpoints in line with which instances are ready.
type Supervisor struct {
	reg    Registry
	log    *slog.Logger
	out    io.Writer
	timing Timing
	client *http.Client

	instances []*instance
	ingresses []*unit

	// mu guards readyCh, readyClosed and pids.
	mu          sync.Mutex
	readyCh     chan struct{}
	readyClosed bool
	pids        []int
}

// newSupervisor returns a supervisor of p. out receives one line per child
// exit; it does no I/O until Run.
func newSupervisor(p *plan, reg Registry, log *slog.Logger, out io.Writer, timing Timing) *Supervisor {
	s := &Supervisor{
		reg: reg, log: log, out: out, timing: timing.withDefaults(),
		client: &http.Client{
			Timeout:       2 * time.Second,
			Transport:     &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		readyCh: make(chan struct{}),
	}
	for _, ip := range p.instances {
		inst := &instance{plan: ip, sup: s}
		inst.app = &unit{plan: ip.app, sup: s, onChange: inst.update}
		inst.proxy = &unit{plan: ip.proxy, sup: s, onChange: inst.update}
		s.instances = append(s.instances, inst)
	}
	for _, up := range p.ingresses {
		s.ingresses = append(s.ingresses, &unit{plan: up, sup: s, onChange: s.checkAllReady})
	}
	return s
}

// Ready is closed once every child was ready at the same time.
func (s *Supervisor) Ready() <-chan struct{} { return s.readyCh }

// PIDs returns the process ID of every child started so far.
func (s *Supervisor) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pids)
}

// NotReady describes the children that are not ready, with their log files.
func (s *Supervisor) NotReady() []string {
	var out []string
	for _, u := range s.notReady() {
		out = append(out, fmt.Sprintf("%s (log: %s)", u.plan.name, u.plan.logPath))
	}
	return out
}

func (s *Supervisor) notReady() []*unit {
	var out []*unit
	for _, u := range s.units() {
		if !u.isReady() {
			out = append(out, u)
		}
	}
	return out
}

// notReadyError explains a timeout: who is not ready, and the end of the
// first one's log, which usually says why.
func (s *Supervisor) notReadyError(timeout time.Duration) error {
	units := s.notReady()
	if len(units) == 0 {
		return fmt.Errorf("not ready after %s; raise --ready-timeout", timeout)
	}
	msg := fmt.Sprintf("not ready after %s: %s; read the log files named, or raise --ready-timeout",
		timeout, strings.Join(s.NotReady(), ", "))
	if tail := lastLines(units[0].plan.logPath, 8); tail != "" {
		msg += fmt.Sprintf("\nend of %s:\n%s", units[0].plan.logPath, tail)
	}
	return errors.New(msg)
}

// lastLines returns up to n last lines of a file, indented; "" when the
// file cannot be read or is empty.
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const limit = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-limit)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "    " + strings.Join(lines, "\n    ")
}

func (s *Supervisor) units() []*unit {
	var us []*unit
	for _, inst := range s.instances {
		us = append(us, inst.app, inst.proxy)
	}
	return append(us, s.ingresses...)
}

func (s *Supervisor) checkAllReady() {
	for _, u := range s.units() {
		if !u.isReady() {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.readyClosed {
		s.readyClosed = true
		close(s.readyCh)
	}
}

func (s *Supervisor) started(pid int) {
	s.mu.Lock()
	s.pids = append(s.pids, pid)
	s.mu.Unlock()
}

// Run starts every child and supervises them until ctx ends, then stops
// them all (see stop) and returns. It returns nil after a clean stop.
func (s *Supervisor) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range s.units() {
		wg.Go(func() { u.run(runCtx) })
	}
	<-ctx.Done()
	cancel()
	wg.Wait() // no unit starts a child any more
	s.stop()
	return nil
}

// stop removes every endpoint, then stops the traffic sources (ingresses and
// load generators), then every other child: SIGTERM, up to Grace to exit,
// then SIGKILL, and waits until every child was reaped.
func (s *Supervisor) stop() {
	for _, inst := range s.instances {
		inst.deregister()
	}
	var first, rest []*unit
	first = append(first, s.ingresses...)
	for _, inst := range s.instances {
		if inst.plan.client {
			first = append(first, inst.app)
			rest = append(rest, inst.proxy)
		} else {
			rest = append(rest, inst.app, inst.proxy)
		}
	}
	s.terminate(first)
	s.terminate(rest)
}

// terminate stops the current processes of us and waits until they exited.
func (s *Supervisor) terminate(us []*unit) {
	var procs []*proc.Process
	for _, u := range us {
		if p := u.current(); p != nil {
			procs = append(procs, p)
			p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(s.timing.Grace)
	defer deadline.Stop()
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-deadline.C:
			// Grace is over: kill whatever is left, then reap.
			for _, q := range procs {
				q.Signal(syscall.SIGKILL)
			}
			for _, q := range procs {
				<-q.Done()
			}
			return
		}
	}
}

// instance is one replica at run time.
type instance struct {
	plan       *instancePlan
	sup        *Supervisor
	app, proxy *unit

	// mu guards registered and serialises registry writes of the instance.
	mu         sync.Mutex
	registered bool
}

// update registers the instance's endpoint when application and proxy are
// both ready, and removes it as soon as either is not.
func (i *instance) update() {
	i.mu.Lock()
	// Read under i.mu: the last of two racing updates sees the latest state.
	ready := i.app.isReady() && i.proxy.isReady()
	switch {
	case ready && !i.registered:
		for _, k := range i.plan.keys {
			i.sup.reg.UpsertEndpoint(k, i.plan.endpoint)
		}
		i.registered = true
		i.sup.log.Info("endpoint added", "instance", i.plan.id, "address", i.plan.endpoint.Address)
	case !ready && i.registered:
		i.removeLocked()
	}
	i.mu.Unlock()
	if ready {
		i.sup.checkAllReady()
	}
}

func (i *instance) deregister() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.registered {
		i.removeLocked()
	}
}

func (i *instance) removeLocked() {
	for _, k := range i.plan.keys {
		i.sup.reg.RemoveEndpoint(k, i.plan.endpoint.Address)
	}
	i.registered = false
	i.sup.log.Info("endpoint removed", "instance", i.plan.id, "address", i.plan.endpoint.Address)
}

// unit is one child process kept running.
type unit struct {
	plan     unitPlan
	sup      *Supervisor
	onChange func()
	// starts counts the starts; only run's goroutine uses it.
	starts int

	// mu guards cur and ready.
	mu    sync.Mutex
	cur   *proc.Process
	ready bool
}

func (u *unit) isReady() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ready
}

func (u *unit) current() *proc.Process {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

func (u *unit) setReady(r bool) {
	u.mu.Lock()
	changed := u.ready != r
	u.ready = r
	u.mu.Unlock()
	if changed {
		u.onChange()
	}
}

// run starts the child, restarts it with backoff whenever it exits, and
// returns when ctx ends, leaving the last process running for stop.
func (u *unit) run(ctx context.Context) {
	t := u.sup.timing
	delay := t.BackoffMin
	for ctx.Err() == nil {
		startedAt := time.Now()
		p, err := u.start()
		if err != nil {
			fmt.Fprintf(u.sup.out, "%s: %v; retrying in %s\n", u.plan.name, err, delay)
		} else {
			u.mu.Lock()
			u.cur = p
			u.mu.Unlock()
			if u.waitReady(ctx, p) {
				u.setReady(true)
			}
			select {
			case <-ctx.Done():
				return
			case <-p.Done():
			}
			u.setReady(false)
			if ctx.Err() != nil {
				return
			}
			// A child that ran for a while earns a quick restart.
			if time.Since(startedAt) > t.BackoffMax {
				delay = t.BackoffMin
			}
			fmt.Fprintf(u.sup.out, "%s exited (%v); restarting in %s; log: %s\n", u.plan.name, exitReason(p.Err()), delay, u.plan.logPath)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(2*delay, t.BackoffMax)
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (u *unit) start() (*proc.Process, error) {
	// Each weft up starts the log afresh; restarts append to it.
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if u.starts == 0 {
		flags |= os.O_TRUNC
	}
	u.starts++
	f, err := os.OpenFile(u.plan.logPath, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	// The child holds its own copy of the descriptor.
	defer f.Close()
	fmt.Fprintf(f, "--- weft up: starting %s at %s\n", u.plan.name, time.Now().UTC().Format(time.RFC3339))
	spec := u.plan.spec
	spec.Output = f
	p, err := proc.Start(spec)
	if err != nil {
		fmt.Fprintf(f, "--- weft up: %v\n", err)
		return nil, err
	}
	u.sup.started(p.PID())
	u.sup.log.Info("started", "child", u.plan.name, "pid", p.PID())
	return p, nil
}

// waitReady probes the child until it is ready (true), or it exits or ctx
// ends (false).
func (u *unit) waitReady(ctx context.Context, p *proc.Process) bool {
	tick := time.NewTicker(u.sup.timing.ProbeInterval)
	defer tick.Stop()
	if u.plan.probe == probeRunning {
		// A program that serves nothing is ready once it survived its
		// start-up, so that one failing at once is not reported ready.
		settle := time.NewTimer(5 * u.sup.timing.ProbeInterval)
		defer settle.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-p.Done():
			return false
		case <-settle.C:
			return true
		}
	}
	for {
		if u.probe(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-p.Done():
			return false
		case <-tick.C:
		}
	}
}

func (u *unit) probe(ctx context.Context) bool {
	switch u.plan.probe {
	case probeRunning:
		return true // see waitReady
	case probeTCP:
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", u.plan.probeAddr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.plan.probeURL, nil)
	if err != nil {
		return false
	}
	resp, err := u.sup.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if u.plan.proxyReady {
		return resp.StatusCode == http.StatusOK
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
