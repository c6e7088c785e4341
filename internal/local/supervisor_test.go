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
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/local/proc"
)

// childEnv switches the test binary into one of the fake children below.
const childEnv = "WEFT_LOCAL_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "app":
		os.Exit(fakeApp())
	case "proxy":
		os.Exit(fakeProxy())
	case "client":
		os.Exit(fakeClient())
	default:
		os.Exit(3)
	}
}

// noteStop appends the child's name to $STOP_LOG when it is asked to stop,
// so tests can check the stop order.
func noteStop(name string) {
	if path := os.Getenv("STOP_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintln(f, name)
			f.Close()
		}
	}
}

// waitTerm blocks until SIGTERM; with IGNORE_TERM set it never returns.
func waitTerm(name string) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	noteStop(name)
	if os.Getenv("IGNORE_TERM") != "" {
		select {}
	}
}

// fakeApp serves /healthz on $PORT.
func fakeApp() int {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		}))
	}()
	waitTerm("app " + os.Getenv("WEFT_INSTANCE"))
	return 0
}

// fakeProxy serves /ready on the --admin address.
func fakeProxy() int {
	var admin, id string
	for i, a := range os.Args {
		if i+1 < len(os.Args) && a == "--admin" {
			admin = os.Args[i+1]
		}
		if i+1 < len(os.Args) && a == "--id" {
			id = os.Args[i+1]
		}
	}
	l, err := net.Listen("tcp", admin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ready" {
				http.NotFound(w, r)
			}
		}))
	}()
	waitTerm("proxy " + id)
	return 0
}

// fakeClient listens nowhere; it only runs. It holds its $PORT on 127.0.0.1 bound but not
// listening: connections to it are refused, and no other process on the machine (another test
// package running at the same time) can take the port and make the workload look ready.
func fakeClient() int {
	if port := os.Getenv("PORT"); port != "" {
		if fd, err := holdPort(port); err == nil {
			defer syscall.Close(fd)
		}
	}
	fmt.Fprintln(os.Stderr, "fake client: serving nothing")
	if os.Getenv("EXIT_AT_ONCE") != "" {
		return 2
	}
	waitTerm("app " + os.Getenv("WEFT_INSTANCE"))
	return 0
}

// holdPort binds a TCP socket to 127.0.0.1:port without listening on it.
func holdPort(port string) (int, error) {
	p, err := strconv.Atoi(port)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// recorder is a Registry recording endpoint changes in front of a real
// memory store.
type recorder struct {
	*memory.Store
	mu     sync.Mutex // guards events
	events []string
	added  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{Store: memory.New(""), added: make(chan struct{}, 100)}
}

func (r *recorder) UpsertEndpoint(key config.ServiceKey, ep config.Endpoint) {
	r.Store.UpsertEndpoint(key, ep)
	r.mu.Lock()
	r.events = append(r.events, "add "+string(key))
	r.mu.Unlock()
	r.added <- struct{}{}
}

func (r *recorder) RemoveEndpoint(key config.ServiceKey, addr string) {
	r.Store.RemoveEndpoint(key, addr)
	r.mu.Lock()
	r.events = append(r.events, "remove "+string(key))
	r.mu.Unlock()
}

func (r *recorder) eventsFor(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.HasSuffix(e, " "+key) {
			out = append(out, e)
		}
	}
	return out
}

// testMesh is an api (v1) called by a load generator, exposed as "api".
func testMesh(t *testing.T, appEnv map[string]string) (*Mesh, planEnv) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ports := newFreePorts()
	exposePort, err := ports.next()
	if err != nil {
		t.Fatal(err)
	}
	withEnv := func(kind string) map[string]string {
		env := map[string]string{childEnv: kind}
		for k, v := range appEnv {
			env[k] = v
		}
		return env
	}
	m := &Mesh{
		Path:   "mesh.yaml",
		Dir:    t.TempDir(),
		Expose: []Expose{{Service: "api", Port: exposePort}},
		Workloads: []Workload{
			{Name: "api", Version: "v1", Command: []string{exe, "-test.run=^$"}, Protocol: config.ProtocolHTTP1, Env: withEnv("app"), ReadyPath: "/healthz"},
			{Name: "load", Command: []string{exe, "-test.run=^$"}, Calls: []string{"api"}, Env: withEnv("client")},
		},
	}
	environ := append(os.Environ(), childEnv+"=proxy")
	for k, v := range appEnv {
		environ = append(environ, k+"="+v)
	}
	env := planEnv{
		ProxyBin: exe, BinDir: filepath.Dir(exe), LogDir: t.TempDir(),
		ControllerGRPC: "127.0.0.1:1", Environ: environ, FreePort: ports.next,
	}
	return m, env
}

var fastTiming = Timing{BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Grace: 20 * time.Second, ProbeInterval: 20 * time.Millisecond}

// start runs sup until the returned stop is called (at the latest when
// the test ends); stop returns what Run returned.
func start(t *testing.T, sup *Supervisor) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute):
				err = errors.New("Run did not return within 2 minutes of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitReady waits for the supervisor with a generous hang guard.
func waitReady(t *testing.T, sup *Supervisor) {
	t.Helper()
	select {
	case <-sup.Ready():
	case <-time.After(2 * time.Minute):
		t.Fatalf("children not ready: %v", sup.NotReady())
	}
}

func assertAllGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d: kill(pid, 0) = %v after stop; want ESRCH", pid, err)
		}
	}
}

func TestSupervisorRestartsAndStopsEverything(t *testing.T) {
	stopLog := filepath.Join(t.TempDir(), "stops")
	m, env := testMesh(t, map[string]string{"STOP_LOG": stopLog})
	p, err := buildPlan(m, env)
	if err != nil {
		t.Fatal(err)
	}
	// A log left by an earlier run is started afresh.
	if err := os.WriteFile(p.instances[0].app.logPath, []byte("old run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := newRecorder()
	register(reg, p)
	var out syncBuffer
	sup := newSupervisor(p, reg, slog.New(slog.DiscardHandler), &out, fastTiming)
	stop := start(t, sup)
	waitReady(t, sup)

	api := sup.instances[0]
	if api.plan.id != "api-v1-0" {
		t.Fatalf("first instance is %q, want api-v1-0", api.plan.id)
	}
	snap := reg.Snapshot()
	for _, key := range []config.ServiceKey{"api.default", "api-v1.default"} {
		svc := snap.Services[key]
		if svc == nil || len(svc.Endpoints) != 1 {
			t.Fatalf("service %s: %+v; want one endpoint", key, svc)
		}
		got, want := svc.Endpoints[0], api.plan.endpoint
		if got.Address != want.Address || got.Identity != "spiffe://cluster.local/ns/default/sa/api" || !got.Meshed || !got.Ready || got.Labels["version"] != "v1" {
			t.Errorf("endpoint of %s = %+v", key, got)
		}
	}

	// The application crashes: its endpoint goes, it comes back with a new
	// process, and the endpoint returns.
	old := api.app.current()
	oldPID := old.PID()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-old.Done()
	// Wait for the endpoint to be re-added (a second "add").
	for len(reg.eventsFor("api.default")) < 3 {
		select {
		case <-reg.added:
		case <-time.After(2 * time.Minute):
			t.Fatalf("endpoint not re-added; events %v", reg.eventsFor("api.default"))
		}
	}
	if got, want := reg.eventsFor("api.default"), []string{"add api.default", "remove api.default", "add api.default"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if want := fmt.Sprintf("api-v1-0 exited (signal: killed); restarting in 50ms; log: %s\n", api.app.plan.logPath); !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
	logText, err := os.ReadFile(api.app.plan.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logText), "--- weft up: starting api-v1-0 at "); n != 2 || strings.Contains(string(logText), "old run") {
		t.Errorf("log after one restart has %d start lines (want 2), old run kept: %v\n%s", n, strings.Contains(string(logText), "old run"), logText)
	}
	newPID := api.app.current().PID()
	if newPID == oldPID || !proc.Alive(newPID) {
		t.Errorf("after the crash the app runs as pid %d (old %d, alive %v)", newPID, oldPID, proc.Alive(newPID))
	}

	// The proxy crashes too: same story.
	oldProxy := api.proxy.current()
	if err := syscall.Kill(oldProxy.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for len(reg.eventsFor("api-v1.default")) < 5 {
		select {
		case <-reg.added:
		case <-time.After(2 * time.Minute):
			t.Fatalf("endpoint not re-added after the proxy crash; events %v", reg.eventsFor("api-v1.default"))
		}
	}

	pids := sup.PIDs()
	if len(pids) != 7 { // api app ×2, api proxy ×2, load app, load proxy, ingress
		t.Errorf("started %d processes, want 7: %v", len(pids), pids)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	assertAllGone(t, pids)
	if svc := reg.Snapshot().Services["api.default"]; len(svc.Endpoints) != 0 {
		t.Errorf("endpoints left after stop: %+v", svc.Endpoints)
	}
	data, err := os.ReadFile(stopLog)
	if err != nil {
		t.Fatal(err)
	}
	order := strings.Split(strings.TrimSpace(string(data)), "\n")
	// The traffic sources stop before what they call.
	first := order[:2]
	slices.Sort(first)
	if want := []string{"app load-0", "proxy ingress-api"}; !slices.Equal(first, want) {
		t.Errorf("first stopped: %v, want %v (whole order %v)", first, want, order)
	}
	if len(order) != 5 {
		t.Errorf("stop order %v: want 5 children asked to stop", order)
	}
}

func TestSupervisorKillsChildrenIgnoringSIGTERM(t *testing.T) {
	m, env := testMesh(t, map[string]string{"IGNORE_TERM": "1"})
	p, err := buildPlan(m, env)
	if err != nil {
		t.Fatal(err)
	}
	timing := fastTiming
	timing.Grace = 200 * time.Millisecond
	sup := newSupervisor(p, newRecorder(), slog.New(slog.DiscardHandler), io.Discard, timing)
	stop := start(t, sup)
	waitReady(t, sup)
	pids := sup.PIDs()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids)
}

func TestSupervisorReportsWhoIsNotReady(t *testing.T) {
	m, env := testMesh(t, nil)
	m.Workloads[0].ReadyPath = "" // TCP probe on a port nobody listens on:
	m.Workloads[0].Command = []string{m.Workloads[1].Command[0], "-test.run=^$"}
	m.Workloads[0].Env = map[string]string{childEnv: "client"}
	p, err := buildPlan(m, env)
	if err != nil {
		t.Fatal(err)
	}
	sup := newSupervisor(p, newRecorder(), slog.New(slog.DiscardHandler), io.Discard, fastTiming)
	stop := start(t, sup)
	// Everything else becomes ready; api-v1-0 never does.
	deadline := time.After(2 * time.Minute)
	for {
		nr := sup.NotReady()
		if len(nr) == 1 {
			if !strings.HasPrefix(nr[0], "api-v1-0 (log: ") || !strings.HasSuffix(nr[0], "api-v1-0.log)") {
				t.Errorf("NotReady = %q", nr)
			}
			break
		}
		select {
		case <-deadline:
			t.Fatalf("NotReady = %v", nr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-sup.Ready():
		t.Error("Ready closed although api-v1-0 is not ready")
	default:
	}
	pids := sup.PIDs()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids)
}

func TestSupervisorCrashLoopIsNotReady(t *testing.T) {
	m, env := testMesh(t, nil)
	m.Workloads[1].Env["EXIT_AT_ONCE"] = "1" // the load generator fails at start
	p, err := buildPlan(m, env)
	if err != nil {
		t.Fatal(err)
	}
	reg := newRecorder()
	var out syncBuffer
	timing := fastTiming
	// A program is ready once it ran 5 probe intervals; the failing one
	// exits long before 5s even on a busy machine.
	timing.ProbeInterval = time.Second
	sup := newSupervisor(p, reg, slog.New(slog.DiscardHandler), &out, timing)
	stop := start(t, sup)
	deadline := time.After(2 * time.Minute)
	for strings.Count(out.String(), "load-0 exited (exit status 2)") < 3 {
		select {
		case <-deadline:
			t.Fatalf("load-0 not restarted 3 times; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got := reg.eventsFor("load.default"); len(got) != 0 {
		t.Errorf("a crash-looping load generator was registered: %v", got)
	}
	// Everything else becomes ready; load-0 never does.
	for got := sup.NotReady(); len(got) != 1 || !strings.HasPrefix(got[0], "load-0 "); got = sup.NotReady() {
		select {
		case <-deadline:
			t.Fatalf("NotReady = %v, want load-0 only", got)
		case <-time.After(20 * time.Millisecond):
		}
	}
	pids := sup.PIDs()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids)
}
