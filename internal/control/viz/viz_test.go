package viz

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"weft.dev/weft/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSource is a config.Source whose proxies the test sets.
type fakeSource struct {
	mu      sync.Mutex // guards snap and changed
	snap    *config.Snapshot
	changed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		snap:    &config.Snapshot{Services: map[config.ServiceKey]*config.Service{}, Proxies: map[string]*config.Proxy{}},
		changed: make(chan struct{}),
	}
}

func (f *fakeSource) Snapshot() *config.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// set publishes a snapshot with the given services and proxies.
func (f *fakeSource) set(services []*config.Service, proxies ...*config.Proxy) {
	snap := &config.Snapshot{Services: map[config.ServiceKey]*config.Service{}, Proxies: map[string]*config.Proxy{}}
	for _, s := range services {
		snap.Services[s.Key()] = s
	}
	for _, p := range proxies {
		snap.Proxies[p.ID] = p
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	snap.Version = f.snap.Version + 1
	f.snap = snap
	close(f.changed)
	f.changed = make(chan struct{})
}

// latencyBuckets are the proxy's histogram buckets (0.0005 .. 10 s).
var latencyBuckets = []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// fakeProxy serves /metrics like a weft-proxy's admin server, from real
// client_golang collectors that the test advances.
type fakeProxy struct {
	srv *httptest.Server

	mu sync.Mutex // guards the fields below
	// reg holds the collectors; restart replaces it (counters from zero).
	reg   *prometheus.Registry
	reqs  *prometheus.CounterVec
	resps *prometheus.CounterVec
	lat   *prometheus.HistogramVec
	tcp   *prometheus.GaugeVec
	start prometheus.Gauge
	// handler, when set, answers instead of the metrics.
	handler http.HandlerFunc
}

func newFakeProxy(t *testing.T) *fakeProxy {
	t.Helper()
	p := &fakeProxy{}
	p.restart(1000)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		h, reg := p.handler, p.reg
		p.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProxy) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// restart replaces all collectors, as a restarted proxy process would;
// startTime is its process_start_time_seconds (0: not exposed).
func (p *fakeProxy) restart(startTime float64) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests}, []string{"direction", "service"})
	resps := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricResponses},
		[]string{"direction", "service", "status_code", "classification"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricLatency, Buckets: latencyBuckets},
		[]string{"direction", "service"})
	tcp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricTCPOpen}, []string{"direction", "service"})
	reg.MustRegister(reqs, resps, lat, tcp)
	var start prometheus.Gauge
	if startTime != 0 {
		start = prometheus.NewGauge(prometheus.GaugeOpts{Name: metricStartTime})
		start.Set(startTime)
		reg.MustRegister(start)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reg, p.reqs, p.resps, p.lat, p.tcp, p.start = reg, reqs, resps, lat, tcp, start
}

// serve records n requests of dir/svc answered with code after seconds.
func (p *fakeProxy) serve(dir, svc string, n int, code int, seconds float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	class := "success"
	if code >= 500 {
		class = "failure"
	}
	for range n {
		p.reqs.WithLabelValues(dir, svc).Inc()
		p.resps.WithLabelValues(dir, svc, fmt.Sprint(code), class).Inc()
		p.lat.WithLabelValues(dir, svc).Observe(seconds)
	}
}

func (p *fakeProxy) setConns(dir, svc string, n float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tcp.WithLabelValues(dir, svc).Set(n)
}

func (p *fakeProxy) setHandler(h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handler = h
}

// clock is the scraper's injected clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// harness is a scraper on a fake source with a manual clock.
type harness struct {
	src   *fakeSource
	s     *Scraper
	clock *clock
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	src := newFakeSource()
	s := New(src, Config{Interval: 10 * time.Second, Retention: time.Minute})
	c := &clock{t: t0}
	s.now = c.now
	return &harness{src: src, s: s, clock: c}
}

// scrapeAt runs one scrape round at t0+sec and leaves the clock there.
func (h *harness) scrapeAt(t *testing.T, sec int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard
	defer cancel()
	now := t0.Add(time.Duration(sec) * time.Second)
	h.clock.set(now)
	h.s.scrapeOnce(ctx, now)
}

func proxy(id, svc string, p *fakeProxy) *config.Proxy {
	cp := &config.Proxy{ID: id, Service: svc, Namespace: "default"}
	if p != nil {
		cp.AdminAddr = p.addr()
	}
	return cp
}

func f(v float64) *float64 { return &v }

// statJSON renders stats with values rounded to 1e-6, so tests compare
// whole results against hand-computed ones without float noise.
func statJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	b, err = json.MarshalIndent(round(generic), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func round(v any) any {
	switch x := v.(type) {
	case float64:
		return math.Round(x*1e6) / 1e6
	case []any:
		for i := range x {
			x[i] = round(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = round(x[k])
		}
	}
	return v
}

func TestStatAndEdges(t *testing.T) {
	h := newHarness(t)
	api0, api1, web0 := newFakeProxy(t), newFakeProxy(t), newFakeProxy(t)
	h.src.set([]*config.Service{{Name: "books", Namespace: "default"}},
		proxy("api-0", "api", api0), proxy("api-1", "api", api1), proxy("web-0", "web", web0))

	// Traffic before the window: must not count.
	api0.serve("inbound", "api.default", 10, 200, 5)
	api1.serve("inbound", "api.default", 10, 500, 5)
	web0.serve("outbound", "api.default", 10, 200, 5)
	h.scrapeAt(t, 0)

	// 0s..10s
	api0.serve("inbound", "api.default", 27, 200, 0.003)
	api0.serve("inbound", "api.default", 3, 503, 0.2)
	api1.serve("inbound", "api.default", 25, 200, 0.03)
	web0.serve("outbound", "api.default", 20, 200, 0.004)
	web0.serve("outbound", "books.default", 5, 200, 0.004)
	// Outbound traffic of api must not count as api's inbound.
	api0.serve("outbound", "books.default", 100, 500, 7)
	h.scrapeAt(t, 10)

	// 10s..20s
	api0.serve("inbound", "api.default", 20, 200, 0.003)
	api1.serve("inbound", "api.default", 25, 200, 0.03)
	web0.serve("outbound", "api.default", 18, 200, 0.004)
	web0.serve("outbound", "api.default", 2, 502, 0.004)
	api0.setConns("inbound", "api.default", 3)
	api0.setConns("outbound", "books.default", 100)
	api1.setConns("inbound", "api.default", 4)
	h.scrapeAt(t, 20)

	t.Run("stat over 20s", func(t *testing.T) {
		// api: 100 requests in 20s, 97 successes. Latency increases:
		// 47 in (1ms,5ms], 50 in (10ms,50ms], 3 in (100ms,500ms].
		// p50: rank 50 -> bucket (10,50], 3 of 50 -> 10+40*3/50 = 12.4ms
		// p95: rank 95 -> 10+40*48/50 = 48.4ms
		// p99: rank 99 -> bucket (100,500], 2 of 3 -> 100+400*2/3 ms
		got := statJSON(t, h.s.Stat(20*time.Second))
		want := statJSON(t, []ServiceStat{
			{Name: "api", Namespace: "default", Instances: 2, Meshed: 2, Requests: 100, SuccessRate: f(0.97),
				RPS: 5, P50Ms: f(12.4), P95Ms: f(48.4), P99Ms: f(100 + 400*2.0/3), TCPConnections: 7},
			{Name: "books", Namespace: "default"},
			{Name: "web", Namespace: "default", Instances: 1, Meshed: 1},
		})
		if got != want {
			t.Errorf("Stat(20s) =\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("stat over 10s", func(t *testing.T) {
		// api: 45 requests in 10s, all successes; 20 in (1,5]ms, 25 in (10,50]ms.
		// p50: rank 22.5 -> bucket (10,50], 2.5 of 25 -> 14ms
		// p95: rank 42.75 -> 10+40*22.75/25 = 46.4ms; p99: rank 44.55 -> 49.28ms
		got := statJSON(t, h.s.Stat(10*time.Second))
		want := statJSON(t, []ServiceStat{
			{Name: "api", Namespace: "default", Instances: 2, Meshed: 2, Requests: 45, SuccessRate: f(1),
				RPS: 4.5, P50Ms: f(14), P95Ms: f(46.4), P99Ms: f(49.28), TCPConnections: 7},
			{Name: "books", Namespace: "default"},
			{Name: "web", Namespace: "default", Instances: 1, Meshed: 1},
		})
		if got != want {
			t.Errorf("Stat(10s) =\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("edges over 20s", func(t *testing.T) {
		got := statJSON(t, h.s.Edges(20*time.Second))
		want := statJSON(t, []EdgeStat{
			{From: "api.default", To: "books.default", Requests: 100, RPS: 5, SuccessRate: f(0)},
			{From: "web.default", To: "api.default", Requests: 40, RPS: 2, SuccessRate: f(0.95)},
			{From: "web.default", To: "books.default", Requests: 5, RPS: 0.25, SuccessRate: f(1)},
		})
		if got != want {
			t.Errorf("Edges(20s) =\n%s\nwant\n%s", got, want)
		}
	})
}

func TestStatJSONNames(t *testing.T) {
	got := statJSON(t, ServiceStat{Name: "api", Namespace: "default"})
	for _, want := range []string{`"name"`, `"namespace"`, `"instances"`, `"meshed"`, `"requests"`,
		`"success_rate": null`, `"rps"`, `"p50_ms": null`, `"p95_ms": null`, `"p99_ms": null`, `"tcp_connections"`} {
		if !strings.Contains(got, want) {
			t.Errorf("ServiceStat JSON %s lacks %s", got, want)
		}
	}
}

// TestStartup checks that a window longer than the history divides by
// the time actually observed.
func TestStartup(t *testing.T) {
	h := newHarness(t)
	api0 := newFakeProxy(t)
	h.src.set(nil, proxy("api-0", "api", api0))
	h.scrapeAt(t, 0)
	api0.serve("inbound", "api.default", 30, 200, 0.003)
	h.scrapeAt(t, 10)

	got := h.s.Stat(time.Minute)
	if len(got) != 1 || got[0].Requests != 30 || got[0].RPS != 3 {
		t.Errorf("Stat(1m) after 10s = %+v, want 30 requests at 3 rps", got)
	}
}

func TestCounterReset(t *testing.T) {
	tests := []struct {
		name string
		// start times of the first and the restarted process; 0: not exposed.
		start1, start2 float64
		// requests the restarted process served before its first scrape.
		afterRestart int
		want         float64
	}{
		// 50 before the restart, then 30 counted from zero, then 20.
		{name: "counters go down", start1: 0, start2: 0, afterRestart: 30, want: 100},
		{name: "counters go down, start time exposed", start1: 1000, start2: 2000, afterRestart: 30, want: 100},
		// The new process already counts more than the old one did: only
		// the start time reveals the restart.
		{name: "counters above old values, start time changed", start1: 1000, start2: 2000, afterRestart: 200, want: 270},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			api0 := newFakeProxy(t)
			api0.restart(tt.start1)
			h.src.set(nil, proxy("api-0", "api", api0))
			api0.serve("inbound", "api.default", 100, 200, 0.003)
			h.scrapeAt(t, 0)
			api0.serve("inbound", "api.default", 50, 200, 0.003)
			h.scrapeAt(t, 10)
			api0.restart(tt.start2)
			api0.serve("inbound", "api.default", tt.afterRestart, 200, 0.003)
			h.scrapeAt(t, 20)
			api0.serve("inbound", "api.default", 20, 200, 0.003)
			h.scrapeAt(t, 30)

			got := h.s.Stat(30 * time.Second)
			if len(got) != 1 {
				t.Fatalf("Stat = %+v, want one service", got)
			}
			if got[0].Requests != tt.want || math.Abs(got[0].RPS-tt.want/30) > 1e-9 {
				t.Errorf("requests, rps = %v, %v; want %v, %v", got[0].Requests, got[0].RPS, tt.want, tt.want/30)
			}
			if got[0].P50Ms == nil || *got[0].P50Ms <= 1 || *got[0].P50Ms > 5 {
				t.Errorf("p50 = %v, want within the (1ms, 5ms] bucket", got[0].P50Ms)
			}
			if got[0].SuccessRate == nil || *got[0].SuccessRate != 1 {
				t.Errorf("success rate = %v, want 1", got[0].SuccessRate)
			}
		})
	}
}

func TestProxyDown(t *testing.T) {
	tests := []struct {
		name string
		down func(p *fakeProxy)
	}{
		{name: "connection refused", down: func(p *fakeProxy) { p.srv.Close() }},
		{name: "status 500", down: func(p *fakeProxy) {
			p.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
		}},
		{name: "garbage", down: func(p *fakeProxy) {
			p.setHandler(func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprint(w, "weft_requests_total{direction=\"inbound\" 1 2 3\n")
			})
		}},
		{name: "page too large", down: func(p *fakeProxy) {
			p.setHandler(func(w http.ResponseWriter, _ *http.Request) {
				line := []byte("# " + strings.Repeat("x", 1<<16) + "\n")
				for range maxMetricsBytes/len(line) + 2 {
					if _, err := w.Write(line); err != nil {
						return
					}
				}
			})
		}},
		{name: "no admin address", down: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			api0, api1 := newFakeProxy(t), newFakeProxy(t)
			h.src.set(nil, proxy("api-0", "api", api0), proxy("api-1", "api", api1))
			h.scrapeAt(t, 0)
			api0.serve("inbound", "api.default", 10, 200, 0.003)
			api1.serve("inbound", "api.default", 20, 200, 0.003)
			api0.setConns("inbound", "api.default", 1)
			api1.setConns("inbound", "api.default", 2)
			h.scrapeAt(t, 10)

			if tt.down != nil {
				tt.down(api1)
			} else {
				h.src.set(nil, proxy("api-0", "api", api0), proxy("api-1", "api", nil))
			}
			api0.serve("inbound", "api.default", 10, 200, 0.003)
			h.scrapeAt(t, 20)

			got := h.s.Stat(20 * time.Second)
			if len(got) != 1 {
				t.Fatalf("Stat = %+v, want one service", got)
			}
			// api-1's history up to its last answer still counts; its
			// connections are no longer current.
			if got[0].Instances != 2 || got[0].Meshed != 1 || got[0].Requests != 40 || got[0].TCPConnections != 1 {
				t.Errorf("instances, meshed, requests, tcp = %d, %d, %v, %v; want 2, 1, 40, 1",
					got[0].Instances, got[0].Meshed, got[0].Requests, got[0].TCPConnections)
			}
		})
	}
}

func TestProxyRecovers(t *testing.T) {
	h := newHarness(t)
	api0 := newFakeProxy(t)
	h.src.set(nil, proxy("api-0", "api", api0))
	h.scrapeAt(t, 0)
	api0.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "starting", http.StatusServiceUnavailable) })
	api0.serve("inbound", "api.default", 10, 200, 0.003)
	h.scrapeAt(t, 10)
	if got := h.s.Stat(time.Minute); got[0].Meshed != 0 {
		t.Errorf("meshed while down = %d, want 0", got[0].Meshed)
	}
	api0.setHandler(nil)
	api0.serve("inbound", "api.default", 10, 200, 0.003)
	h.scrapeAt(t, 20)
	got := h.s.Stat(time.Minute)
	if got[0].Meshed != 1 || got[0].Requests != 20 || got[0].RPS != 1 {
		t.Errorf("meshed, requests, rps after recovery = %d, %v, %v; want 1, 20, 1", got[0].Meshed, got[0].Requests, got[0].RPS)
	}
}

func TestProxyLeaves(t *testing.T) {
	h := newHarness(t)
	api0, api1 := newFakeProxy(t), newFakeProxy(t)
	h.src.set(nil, proxy("api-0", "api", api0), proxy("api-1", "api", api1))
	h.scrapeAt(t, 0)
	api0.serve("inbound", "api.default", 10, 200, 0.003)
	api1.serve("inbound", "api.default", 20, 200, 0.003)
	h.scrapeAt(t, 10)

	// Before the next scrape, Stat already follows the snapshot.
	h.src.set(nil, proxy("api-0", "api", api0))
	if got := h.s.Stat(time.Minute); got[0].Instances != 1 || got[0].Meshed != 1 || got[0].Requests != 10 {
		t.Errorf("after leaving: instances, meshed, requests = %d, %d, %v; want 1, 1, 10",
			got[0].Instances, got[0].Meshed, got[0].Requests)
	}
	h.scrapeAt(t, 20)
	h.s.mu.RLock()
	_, kept := h.s.proxies["api-1"]
	n := len(h.s.proxies)
	h.s.mu.RUnlock()
	if kept || n != 1 {
		t.Errorf("after a scrape, rings kept for api-1: %v, rings: %d; want false, 1", kept, n)
	}

	// Back under the same ID: a fresh history, nothing counted from before.
	h.src.set(nil, proxy("api-0", "api", api0), proxy("api-1", "api", api1))
	h.scrapeAt(t, 30)
	if got := h.s.Stat(time.Minute); got[0].Instances != 2 || got[0].Meshed != 2 || got[0].Requests != 10 {
		t.Errorf("after coming back: instances, meshed, requests = %d, %d, %v; want 2, 2, 10",
			got[0].Instances, got[0].Meshed, got[0].Requests)
	}

	// The whole service leaves.
	h.src.set(nil)
	if got := h.s.Stat(time.Minute); len(got) != 0 {
		t.Errorf("Stat with no proxies = %+v, want none", got)
	}
}

func TestRetention(t *testing.T) {
	h := newHarness(t) // retention 1 minute
	api0 := newFakeProxy(t)
	h.src.set(nil, proxy("api-0", "api", api0))
	for sec := 0; sec <= 120; sec += 10 {
		api0.serve("inbound", "api.default", 10, 200, 0.003)
		h.scrapeAt(t, sec)
	}
	h.s.mu.RLock()
	n := len(h.s.proxies["api-0"].samples)
	h.s.mu.RUnlock()
	if n != 7 { // 60s..120s
		t.Errorf("samples kept = %d, want 7", n)
	}
	// A window longer than the retention sees the retention.
	if got := h.s.Stat(time.Hour); got[0].Requests != 60 || got[0].RPS != 1 {
		t.Errorf("Stat(1h) requests, rps = %v, %v; want 60, 1", got[0].Requests, got[0].RPS)
	}
}

// TestScrapeConcurrency scrapes more proxies than the concurrency bound
// while readers call Stat and Edges (run with -race).
func TestScrapeConcurrency(t *testing.T) {
	h := newHarness(t)
	var proxies []*config.Proxy
	fakes := make([]*fakeProxy, 2*maxConcurrentScrapes+3)
	for i := range fakes {
		fakes[i] = newFakeProxy(t)
		proxies = append(proxies, proxy(fmt.Sprintf("api-%d", i), "api", fakes[i]))
	}
	h.src.set(nil, proxies...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				h.s.Stat(time.Minute)
				h.s.Edges(time.Minute)
			}
		})
	}
	for sec := 0; sec <= 30; sec += 10 {
		for _, p := range fakes {
			p.serve("inbound", "api.default", 1, 200, 0.003)
		}
		h.scrapeAt(t, sec)
	}
	close(done)
	wg.Wait()
	got := h.s.Stat(time.Minute)
	if got[0].Meshed != len(fakes) || got[0].Requests != float64(3*len(fakes)) {
		t.Errorf("meshed, requests = %d, %v; want %d, %d", got[0].Meshed, got[0].Requests, len(fakes), 3*len(fakes))
	}
}

// TestRun runs the real loop: it scrapes on its own and stops with ctx.
func TestRun(t *testing.T) {
	src := newFakeSource()
	api0 := newFakeProxy(t)
	src.set(nil, proxy("api-0", "api", api0))
	s := New(src, Config{Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	deadline := time.After(30 * time.Second) // hang guard
	for {
		api0.serve("inbound", "api.default", 1, 200, 0.003)
		if got := s.Stat(time.Minute); got[0].Meshed == 1 && got[0].Requests > 0 {
			break
		}
		select {
		case <-deadline:
			cancel()
			t.Fatalf("no scraped requests after 30s: %+v", s.Stat(time.Minute))
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestStatVersionedServices: a proxy of service api version v1 is an
// instance of api and of api-v1 when the snapshot has api-v1, and its
// inbound traffic (labelled api) counts for both rows.
func TestStatVersionedServices(t *testing.T) {
	h := newHarness(t)
	v1, v2, v3 := newFakeProxy(t), newFakeProxy(t), newFakeProxy(t)
	versioned := func(id, version string, p *fakeProxy) *config.Proxy {
		cp := proxy(id, "api", p)
		cp.Version = version
		return cp
	}
	h.src.set([]*config.Service{
		{Name: "api", Namespace: "default"},
		{Name: "api-v1", Namespace: "default"},
		{Name: "api-v2", Namespace: "default"},
	}, versioned("api-v1-0", "v1", v1), versioned("api-v2-0", "v2", v2), versioned("api-v3-0", "v3", v3))
	h.scrapeAt(t, 0)
	v1.serve("inbound", "api.default", 30, 200, 0.003)
	v2.serve("inbound", "api.default", 10, 500, 0.003)
	v3.serve("inbound", "api.default", 10, 200, 0.003)
	v1.setConns("inbound", "api.default", 2)
	v2.setConns("inbound", "api.default", 5)
	h.scrapeAt(t, 10)

	got := statJSON(t, h.s.Stat(10*time.Second))
	want := statJSON(t, []ServiceStat{
		{Name: "api", Namespace: "default", Instances: 3, Meshed: 3, Requests: 50, SuccessRate: f(0.8),
			RPS: 5, P50Ms: f(3), P95Ms: f(4.8), P99Ms: f(4.96), TCPConnections: 7},
		{Name: "api-v1", Namespace: "default", Instances: 1, Meshed: 1, Requests: 30, SuccessRate: f(1),
			RPS: 3, P50Ms: f(3), P95Ms: f(4.8), P99Ms: f(4.96), TCPConnections: 2},
		{Name: "api-v2", Namespace: "default", Instances: 1, Meshed: 1, Requests: 10, SuccessRate: f(0),
			RPS: 1, P50Ms: f(3), P95Ms: f(4.8), P99Ms: f(4.96), TCPConnections: 5},
	})
	if got != want {
		t.Errorf("Stat(10s) =\n%s\nwant\n%s", got, want)
	}
}
