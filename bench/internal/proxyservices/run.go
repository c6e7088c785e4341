package proxyservices

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"weft.dev/weft/bench/internal/echo"
	"weft.dev/weft/bench/internal/procstat"
)

// ProxyUID is the user the proxy runs as; `weft-proxy init` exempts its connections from the
// redirection.
const ProxyUID = 2102

// The proxy's ports inside the namespace.
const (
	adminAddr       = "127.0.0.1:4191"
	outboundCapture = 4140
	inboundCapture  = 4143
)

// BodySize is the size of every request body, echoed back.
const BodySize = 1024

// Config is one run.
type Config struct {
	// Self is the harness's executable, re-executed as the controller with EnvRole=Role.
	Self string
	// Proxy is the weft-proxy executable (peer.WeftProxyBinary builds it as the other
	// scenarios do); ProxyVersion describes it in the report.
	Proxy, ProxyVersion string
	// EnvRole is the variable the re-executed binary reads its role from.
	EnvRole string
	// Services in the controller's store, each called once; the first step calls a tenth of
	// them (at least one), the second the rest.
	Services int
	// Settle is the wait after start-up and after each step before reading the proxy's
	// memory; zero means 2 s.
	Settle time.Duration
	// Hold, when set, adds a reading this long after the last step, the proxy still holding
	// every destination (it lets one go after 5 minutes without a connection): by then the Go
	// runtime has collected at least once on its own (every 2 minutes) and shrunk stacks.
	Hold time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Phase is the proxy's state at one reading. Memory is in bytes.
type Phase struct {
	// Name says when it was read: "idle", or after how many services were called.
	Name string `json:"name"`
	// Called is how many distinct services the proxy had carried a request to.
	Called int `json:"services_called"`
	// RSS and HWM are VmRSS and VmHWM of the proxy process; RssAnon and RssFile split VmRSS
	// into anonymous memory (heap, stacks, runtime) and file-backed pages (the executable).
	RSS     uint64 `json:"vm_rss"`
	HWM     uint64 `json:"vm_hwm"`
	RssAnon uint64 `json:"rss_anon"`
	RssFile uint64 `json:"rss_file"`
	// The proxy's Go runtime as its /metrics gives it (read after the figures above): heap
	// objects (live and not yet collected), goroutine stacks, all memory the runtime
	// obtained, goroutines.
	GoHeap     uint64 `json:"go_heap_alloc"`
	GoStacks   uint64 `json:"go_stack_inuse"`
	GoSys      uint64 `json:"go_sys"`
	Goroutines int    `json:"goroutines"`
	// MetricsBytes is the size of the proxy's /metrics text (the scrape that read the figures
	// above).
	MetricsBytes int `json:"metrics_bytes"`
	// Seconds is the wall time of the step's requests (0 for idle).
	Seconds float64 `json:"seconds"`
}

// Result is what one run measured.
type Result struct {
	Started  time.Time `json:"started"`
	Services int       `json:"services"`
	// Proxy is the weft-proxy version; GOMAXPROCS the proxy's.
	Proxy      string  `json:"proxy"`
	GoVersion  string  `json:"go_version"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	Phases     []Phase `json:"phases"`
	// Requests sent, Errors among them (a failed exchange, a wrong status or body, a request
	// the proxy or the endpoint did not count for its service), the first error's text.
	Requests   int    `json:"requests"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Reached is how many services' endpoints received exactly their one request, as the echo
	// server counted by the address each connection arrived on; Counted how many services the
	// proxy's weft_requests_total counts exactly one outbound request for.
	Reached int `json:"services_reached"`
	Counted int `json:"services_counted_by_proxy"`
	// EndHWM is the proxy's VmHWM at the end, after the last phase and two more /metrics
	// scrapes (the exposition of every destination's series).
	EndHWM uint64 `json:"end_vm_hwm"`
	// ControllerRSS is the controller process's VmRSS at the end.
	ControllerRSS uint64 `json:"controller_rss"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start; OtherCPU the vCPU the rest of
	// the machine (everything but the harness, its controller and its proxy) used on average
	// during the run.
	LoadAvg  float64 `json:"loadavg_1m_start"`
	OtherCPU float64 `json:"other_vcpu"`
	Seconds  float64 `json:"seconds"`
}

// Final returns the reading right after every service was called.
func (r *Result) Final() Phase {
	for _, p := range r.Phases {
		if p.Called == r.Services {
			return p
		}
	}
	return Phase{}
}

// Run sets the namespace up, runs the controller, the proxy and the traffic, measures, and
// removes everything before returning.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Services < 1 || cfg.Services > MaxServices {
		return nil, fmt.Errorf("services: %d is not from 1 to %d", cfg.Services, MaxServices)
	}
	if err := Check(); err != nil {
		return nil, err
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := cfg.Proxy
	if bin == "" {
		return nil, errors.New("no weft-proxy executable given")
	}
	// The proxy runs as ProxyUID: it must reach its binary and its files.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weftbench-ps-")
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	res = &Result{Started: time.Now().UTC(), Services: cfg.Services, GoVersion: runtime.Version(), GOMAXPROCS: 1,
		Proxy: cfg.ProxyVersion, LoadAvg: loadAvg()}
	busy0, _ := procstat.SystemBusy()
	start := time.Now()

	ns, err := newNetns(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := ns.delete(); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete network namespace: %w", derr))
		}
	}()
	log.Info("network namespace ready", "name", ns.name)

	// The endpoints: one echo server answering on every endpoint address, counting requests by
	// the address each connection arrived on.
	echoLn, err := ns.listen(fmt.Sprintf("0.0.0.0:%d", EndpointPort))
	if err != nil {
		return nil, err
	}
	hits := &hitCounter{n: map[netip.Addr]int{}}
	srv := &http.Server{Handler: hits.wrap(echo.Handler()), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, localAddrKey{}, c.LocalAddr())
		}}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(echoLn) }()
	defer func() { _ = srv.Close(); <-served }()

	// The controller.
	ctl, ctlAddr, err := startController(ctx, ns, cfg, dir)
	if err != nil {
		return nil, err
	}
	defer ctl.stop()
	token := filepath.Join(dir, TokenFile)
	if err := os.Chown(token, ProxyUID, ProxyUID); err != nil {
		return nil, err
	}

	// The capture rules, as the injector's init container installs them.
	if err := run(ctx, "ip", "netns", "exec", ns.name, bin, "init", "--proxy-uid="+strconv.Itoa(ProxyUID),
		"--inbound-port="+strconv.Itoa(inboundCapture), "--outbound-port="+strconv.Itoa(outboundCapture),
		"--skip-inbound-ports=4191"); err != nil {
		return nil, err
	}

	// The proxy.
	proxy, err := startProxy(ns, bin, dir, ctlAddr, token)
	if err != nil {
		return nil, err
	}
	defer proxy.stop()
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: ns.dial, DisableKeepAlives: true}}
	if err := waitReady(ctx, admin, proxy); err != nil {
		return nil, err
	}
	log.Info("proxy ready", "pid", proxy.pid)

	// read waits, then reads the proxy's memory and runtime; took is the step's wall time.
	read := func(name string, called int, took, wait time.Duration) error {
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		p := Phase{Name: name, Called: called, Seconds: took.Seconds()}
		if err := readMemory(proxy.pid, &p); err != nil {
			return err
		}
		text, err := scrape(ctx, admin)
		if err != nil {
			return err
		}
		p.GoHeap = uint64(sample(text, "go_memstats_heap_alloc_bytes", ""))
		p.GoStacks = uint64(sample(text, "go_memstats_stack_inuse_bytes", ""))
		p.GoSys = uint64(sample(text, "go_memstats_sys_bytes", ""))
		p.Goroutines = int(sample(text, "go_goroutines", ""))
		p.MetricsBytes = len(text)
		res.Phases = append(res.Phases, p)
		log.Info("read", "phase", name, "vm_rss_mib", float64(p.RSS)/(1<<20), "vm_hwm_mib", float64(p.HWM)/(1<<20))
		return nil
	}
	if err := read("idle", 0, 0, cfg.Settle); err != nil {
		return nil, err
	}
	first := max(cfg.Services/10, 1)
	steps := [][2]int{{0, first}}
	if first < cfg.Services {
		steps = append(steps, [2]int{first, cfg.Services})
	}
	var firstErr error
	fail := func(err error) {
		res.Errors++
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, st := range steps {
		t0 := time.Now()
		for i := st[0]; i < st[1]; i++ {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.Requests++
			if err := call(ctx, ns, i); err != nil {
				fail(err)
			}
		}
		if err := read(fmt.Sprintf("after %d services", st[1]), st[1], time.Since(t0), cfg.Settle); err != nil {
			return nil, err
		}
	}

	if cfg.Hold > 0 {
		log.Info("holding", "for", cfg.Hold)
		if err := read(fmt.Sprintf("after %d services, %s later", cfg.Services, cfg.Hold), cfg.Services, 0, cfg.Hold); err != nil {
			return nil, err
		}
	}

	// Every service got its request: at its endpoint, and in the proxy's own count.
	text, err := scrape(ctx, admin)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Services {
		name := ServiceName(i)
		if n := hits.get(EndpointIP(i)); n == 1 {
			res.Reached++
		} else {
			fail(fmt.Errorf("%s: its endpoint %s received %d requests, want 1", name, EndpointIP(i), n))
		}
		if n := sample(text, "weft_requests_total", `direction="outbound",service="`+name+`.default"`); n == 1 {
			res.Counted++
		} else {
			fail(fmt.Errorf("%s: the proxy counted %v outbound requests, want 1", name, n))
		}
	}
	if n := sample(text, "weft_tcp_open_total", `service="passthrough"`); n != 0 {
		fail(fmt.Errorf("the proxy passed %v connections through unresolved, want none", n))
	}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	var end Phase
	if err := readMemory(proxy.pid, &end); err != nil {
		return nil, err
	}
	res.EndHWM = end.HWM
	if st, err := procstat.Read(ctl.pid); err == nil {
		res.ControllerRSS = st.RSS
	}
	res.Seconds = time.Since(start).Seconds()
	if busy1, err := procstat.SystemBusy(); err == nil {
		if own, err := procstat.Read(os.Getpid()); err == nil {
			res.OtherCPU = max(0, (busy1-busy0-own.CPU).Seconds()/res.Seconds)
		}
	}
	return res, nil
}

// call sends one HTTP/1.1 POST with a BodySize body to service i's cluster IP and checks the
// echo; the connection is closed afterwards.
func call(ctx context.Context, ns *netns, i int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	name := ServiceName(i)
	addr := netip.AddrPortFrom(ClusterIP(i), ServicePort).String()
	c, err := ns.dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: dial %s: %w", name, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	body := Body(i)
	req := fmt.Sprintf("POST /%s HTTP/1.1\r\nHost: %s.default\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", name, name, len(body))
	if _, err := c.Write(append([]byte(req), body...)); err != nil {
		return fmt.Errorf("%s: send: %w", name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("%s: read response: %w", name, err)
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, 2*BodySize))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: read response body: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d: %q", name, resp.StatusCode, got)
	}
	if !bytes.Equal(got, body) {
		return fmt.Errorf("%s: the echo differs from the %d bytes sent (got %d bytes)", name, len(body), len(got))
	}
	return nil
}

// Body is the request body sent to service i: BodySize bytes naming it.
func Body(i int) []byte {
	tag := []byte(ServiceName(i) + " ")
	return bytes.Repeat(tag, BodySize/len(tag)+1)[:BodySize]
}

type localAddrKey struct{}

// hitCounter counts requests by the local address of their connection.
type hitCounter struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

func (h *hitCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := r.Context().Value(localAddrKey{}).(*net.TCPAddr); ok {
			h.mu.Lock()
			h.n[a.AddrPort().Addr().Unmap()]++
			h.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (h *hitCounter) get(a netip.Addr) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[a]
}

// process is a process started in the namespace.
type process struct {
	name string
	pid  int
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	// closeInput, when set, asks the process to stop (the controller role stops when its
	// input closes).
	closeInput func()
}

// start starts cmd in the namespace, in a process group of its own.
func (ns *netns) start(name string, cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := ns.do(cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to stop (its input closed, or SIGTERM), waits up to 10 s, then kills
// its process group.
func (p *process) stop() {
	if p.closeInput != nil {
		p.closeInput()
	} else {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the end of the process's log.
func (p *process) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	b = bytes.TrimSpace(b)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return string(b)
}

// startController starts the controller role in the namespace and waits for its address.
func startController(ctx context.Context, ns *netns, cfg Config, dir string) (*process, string, error) {
	cmd := exec.Command(cfg.Self)
	cmd.Env = append(os.Environ(), cfg.EnvRole+"="+Role, fmt.Sprintf("%s=%d", EnvServices, cfg.Services), EnvDir+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	p, err := ns.start("controller", cmd)
	if err != nil {
		return nil, "", err
	}
	p.closeInput = func() { _ = stdin.Close() }
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- addr
			}
		}
		close(ready)
	}()
	select {
	case addr, ok := <-ready:
		if ok {
			return p, addr, nil
		}
		p.stop()
		return nil, "", fmt.Errorf("controller exited: %s", strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		p.stop()
		return nil, "", ctx.Err()
	case <-time.After(2 * time.Minute):
		p.stop()
		return nil, "", errors.New("controller not ready within 2m")
	}
}

// startProxy starts weft-proxy in the namespace as ProxyUID with the outbound capture
// listener, GOMAXPROCS=1 as in the other scenarios.
func startProxy(ns *netns, bin, dir, ctlAddr, token string) (*process, error) {
	logPath := filepath.Join(dir, "weft-proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin,
		"--id="+ClientProxyID, "--service="+ClientService, "--namespace=default", "--service-account="+ClientService,
		"--controller="+ctlAddr, "--trust-anchors="+filepath.Join(dir, AnchorsFile), "--token-file="+token,
		"--admin="+adminAddr, fmt.Sprintf("--outbound-capture=127.0.0.1:%d", outboundCapture), "--log-level=warn")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: ProxyUID, Gid: ProxyUID}}
	p, err := ns.start("weft-proxy", cmd)
	if err != nil {
		return nil, err
	}
	p.log = logPath
	return p, nil
}

// waitReady polls the proxy's /ready until it answers 200.
func waitReady(ctx context.Context, admin *http.Client, proxy *process) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if proxy.exited() {
			return fmt.Errorf("weft-proxy exited during start-up; its log ends with: %s", proxy.tail())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/ready", nil)
		if err != nil {
			return err
		}
		resp, err := admin.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/ready: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("weft-proxy not ready after 30s (%v); its log ends with: %s", err, proxy.tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// scrape returns the proxy's /metrics.
func scrape(ctx context.Context, admin *http.Client) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := admin.Do(req)
	if err != nil {
		return "", fmt.Errorf("read the proxy's metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read the proxy's metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("read the proxy's metrics: status %d", resp.StatusCode)
	}
	return string(b), nil
}

// sample sums the samples of metric name whose label text contains labels (a
// comma-separated run of pairs in the order the proxy writes them; "" matches every sample).
func sample(text, name, labels string) float64 {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if labels != "" && !strings.Contains(rest, labels) {
			continue
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			sum += v
		}
	}
	return sum
}

// readMemory fills VmRSS, VmHWM, RssAnon and RssFile of pid into p.
func readMemory(pid int, p *Phase) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("read the proxy's memory: %w", err)
	}
	fields := map[string]*uint64{"VmRSS": &p.RSS, "VmHWM": &p.HWM, "RssAnon": &p.RssAnon, "RssFile": &p.RssFile}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		dst := fields[k]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("parse /proc/%d/status %s: %q", pid, k, v)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("parse /proc/%d/status %s: %w", pid, k, err)
		}
		*dst = n * 1024
		delete(fields, k)
	}
	if len(fields) > 0 {
		return fmt.Errorf("/proc/%d/status lacks %d of VmRSS, VmHWM, RssAnon, RssFile", pid, len(fields))
	}
	return nil
}

// loadAvg returns the 1-minute load average, or 0.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
