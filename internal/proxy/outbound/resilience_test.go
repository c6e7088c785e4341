package outbound

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/transport"
)

// backend is a real HTTP server on loopback that counts the attempts it
// receives and answers with handle.
type backend struct {
	addr     string
	attempts atomic.Int64
	bodyLen  atomic.Int64 // of the last request
}

func startBackend(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.attempts.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		b.bodyLen.Store(n)
		handle(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	return b
}

// startOutbound serves an outbound proxy for api.demo with snap applied
// and returns its address and its metrics.
func startOutbound(t *testing.T, snap *meshv1.DestinationSnapshot, bal balance.Config) (string, *metrics.Registry, *Server) {
	t.Helper()
	reg := metrics.New()
	s := New(Config{Authority: "api", Transport: &transport.Preamble{}, Namespace: "demo", Discovery: idleDiscovery(t), Metrics: reg, Balance: bal})
	s.apply(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), reg, s
}

func withResilience(snap *meshv1.DestinationSnapshot, r *meshv1.Resilience) *meshv1.DestinationSnapshot {
	snap.Resilience = r
	return snap
}

func endpoints(bs ...*backend) []*meshv1.Endpoint {
	var eps []*meshv1.Endpoint
	for _, b := range bs {
		eps = append(eps, &meshv1.Endpoint{Address: b.addr})
	}
	return eps
}

func fiveXX() []uint32 {
	var s []uint32
	for c := uint32(500); c < 600; c++ {
		s = append(s, c)
	}
	return s
}

type result struct {
	status int
	reason string
	header http.Header
}

// load sends n requests from workers concurrent clients and returns the
// answers.
func load(t *testing.T, addr string, n, workers int, newReq func() *http.Request) []result {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	out := make([]result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				req := newReq()
				req.URL.Host = addr
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				out[i] = result{resp.StatusCode, resp.Header.Get(proxyerr.Header), resp.Header}
			}
		}()
	}
	wg.Wait()
	return out
}

func get(path string) func() *http.Request {
	return func() *http.Request {
		r, _ := http.NewRequest("GET", "http://api.demo"+path, nil)
		return r
	}
}

func counter(t *testing.T, reg *metrics.Registry, name string) float64 {
	t.Helper()
	mfs, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestRetriesMaskFailuresWithinBudget(t *testing.T) {
	const n, ratio, minPerSec = 2000, 0.5, 10
	flaky := func(w http.ResponseWriter, r *http.Request) {
		if rand.Float64() < 0.2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}
	a, b := startBackend(t, flaky), startBackend(t, flaky)
	snap := withResilience(snapshot(1, endpoints(a, b)...), &meshv1.Resilience{
		BudgetRatio: ratio, BudgetMinPerSecond: minPerSec, ConsecutiveFailures: 1000,
		DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: 5, Retryable: true, OnStatus: fiveXX(), BackoffBaseMs: 1},
	})
	addr, reg, _ := startOutbound(t, snap, balance.Config{})
	start := time.Now()
	res := load(t, addr, n, 8, get("/"))
	elapsed := time.Since(start)
	ok := 0
	for _, r := range res {
		if r.status == 200 {
			ok++
		}
	}
	attempts := a.attempts.Load() + b.attempts.Load()
	bound := float64(n)*(1+ratio) + minPerSec*(elapsed.Seconds()+10)
	t.Logf("%d/%d succeeded, %d attempts in %s (bound %.0f)", ok, n, attempts, elapsed, bound)
	if got, want := float64(ok)/n, 0.995; got < want {
		t.Errorf("success rate %.4f, want >= %.3f", got, want)
	}
	if float64(attempts) > bound {
		t.Errorf("%d attempts, want at most %.0f (the budget)", attempts, bound)
	}
	if got, want := counter(t, reg, "weft_retries_total"), float64(attempts-n); got != want {
		t.Errorf("weft_retries_total = %v, want %v", got, want)
	}
}

func TestNoRetryStorm(t *testing.T) {
	const n, ratio, minPerSec, maxAttempts = 400, 0.2, 10, 5
	fail := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }
	a, b := startBackend(t, fail), startBackend(t, fail)
	snap := withResilience(snapshot(1, endpoints(a, b)...), &meshv1.Resilience{
		BudgetRatio: ratio, BudgetMinPerSecond: minPerSec,
		DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: maxAttempts, Retryable: true, OnStatus: fiveXX(), BackoffBaseMs: 1},
	})
	addr, reg, _ := startOutbound(t, snap, balance.Config{})
	start := time.Now()
	res := load(t, addr, n, 8, get("/"))
	elapsed := time.Since(start)
	for i, r := range res {
		if r.status != 503 {
			t.Fatalf("request %d: got %d, want the backend's 503", i, r.status)
		}
	}
	attempts := a.attempts.Load() + b.attempts.Load()
	bound := float64(n)*(1+ratio) + minPerSec*(elapsed.Seconds()+10)
	t.Logf("%d attempts for %d requests in %s (bound %.0f, without a budget %d)", attempts, n, elapsed, bound, n*maxAttempts)
	if float64(attempts) > bound {
		t.Errorf("%d attempts, want at most %.0f: a retry storm", attempts, bound)
	}
	if attempts <= n {
		t.Errorf("%d attempts for %d requests: nothing was retried", attempts, n)
	}
	if got := counter(t, reg, "weft_retry_budget_exhausted_total"); got == 0 {
		t.Error("weft_retry_budget_exhausted_total = 0, want the exhausted budget counted")
	}
}

func TestBodyBufferedWithinBound(t *testing.T) {
	tests := []struct {
		name string
		size int
		want int64
	}{
		{"small body retried", 1 << 10, 3},
		{"1 MiB body never retried", 1 << 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
			snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{
				DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: 3, Retryable: true, OnStatus: []uint32{503}, BackoffBaseMs: 1},
			})
			addr, _, _ := startOutbound(t, snap, balance.Config{})
			payload := bytes.Repeat([]byte("x"), tt.size)
			res := load(t, addr, 1, 1, func() *http.Request {
				r, _ := http.NewRequest("POST", "http://api.demo/upload", bytes.NewReader(payload))
				return r
			})
			if res[0].status != 503 {
				t.Errorf("got %d, want the backend's 503", res[0].status)
			}
			if got := a.attempts.Load(); got != tt.want {
				t.Errorf("backend saw %d attempts, want %d", got, tt.want)
			}
		})
	}
}

func TestRetriedBodyArrivesWhole(t *testing.T) {
	var calls atomic.Int64
	payload := strings.Repeat("0123456789", 3000)
	a := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{
		DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: 2, Retryable: true, OnStatus: []uint32{502}, BackoffBaseMs: 1},
	})
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	res := load(t, addr, 1, 1, func() *http.Request {
		r, _ := http.NewRequest("PUT", "http://api.demo/x", strings.NewReader(payload))
		return r
	})
	if res[0].status != 200 || a.attempts.Load() != 2 || a.bodyLen.Load() != int64(len(payload)) {
		t.Fatalf("got %d after %d attempts, the last with a %d-byte body; want 200 after 2 with %d bytes",
			res[0].status, a.attempts.Load(), a.bodyLen.Load(), len(payload))
	}
}

func TestPerTryTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tests := []struct {
		name       string
		hangFirst  int64 // attempts that hang before the backend answers
		wantStatus int
		wantReason string
	}{
		{"the second try answers", 1, 200, ""},
		{"every try times out", 2, 504, "did not respond within 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b *backend
			b = startBackend(t, func(w http.ResponseWriter, r *http.Request) {
				if b.attempts.Load() <= tt.hangFirst {
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
			})
			snap := withResilience(snapshot(1, endpoints(b)...), &meshv1.Resilience{
				DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: 2, PerTryTimeoutMs: 100, Retryable: true, OnStatus: []uint32{502, 503, 504}, BackoffBaseMs: 1},
			})
			addr, _, _ := startOutbound(t, snap, balance.Config{})
			res := load(t, addr, 1, 1, get("/"))
			if res[0].status != tt.wantStatus || !strings.Contains(res[0].reason, tt.wantReason) {
				t.Fatalf("got %d %q, want %d %q", res[0].status, res[0].reason, tt.wantStatus, tt.wantReason)
			}
			if got := b.attempts.Load(); got != 2 {
				t.Errorf("%d attempts, want 2", got)
			}
		})
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

func TestFailingEndpointEjectedAndReadmitted(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	bad := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	good := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	clk := &fakeClock{}
	snap := withResilience(snapshot(1, endpoints(bad, good)...), &meshv1.Resilience{
		ConsecutiveFailures: 3, BaseEjectionMs: 30_000, MaxEjectionMs: 300_000,
	})
	addr, reg, _ := startOutbound(t, snap, balance.Config{Now: clk.Now})
	for i := 0; bad.attempts.Load() < 3; i++ {
		if i > 10_000 {
			t.Fatal("the failing endpoint never got 3 requests")
		}
		load(t, addr, 1, 1, get("/"))
	}
	// The exchange ends (and the failure is recorded) just after the
	// client has its answer: wait for the ejection before counting.
	for deadline := time.Now().Add(time.Minute); counter(t, reg, "weft_endpoint_ejections_total") < 1; {
		if time.Now().After(deadline) { // hang guard
			t.Fatal("the failing endpoint was never ejected")
		}
		time.Sleep(time.Millisecond)
	}
	before := bad.attempts.Load()
	res := load(t, addr, 200, 4, get("/"))
	if got := bad.attempts.Load() - before; got != 0 {
		t.Fatalf("ejected endpoint received %d of 200 requests, want 0", got)
	}
	for i, r := range res {
		if r.status != 200 {
			t.Fatalf("request %d while ejected: got %d, want 200 from the healthy endpoint", i, r.status)
		}
	}
	if got := counter(t, reg, "weft_endpoint_ejections_total"); got != 1 {
		t.Errorf("weft_endpoint_ejections_total = %v, want 1", got)
	}
	// It recovers; once its ejection is over a probe lets it back.
	broken.Store(false)
	clk.Advance(31 * time.Second)
	// Readmitted, it takes a share of the traffic again (more than the
	// one probe); how fast its latency average recovers is the
	// balancer's business, so send batches until it has served 20.
	before = bad.attempts.Load()
	sent := 0
	for bad.attempts.Load()-before < 20 {
		if sent >= 8000 {
			t.Fatalf("recovered endpoint received %d of %d requests, want it readmitted", bad.attempts.Load()-before, sent)
		}
		load(t, addr, 400, 4, get("/"))
		sent += 400
	}
}

func TestPendingLimit(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	a := startBackend(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{MaxPendingRequests: 2})
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	held := make(chan []result, 1)
	go func() { held <- load(t, addr, 2, 2, get("/")) }()
	deadline := time.Now().Add(time.Minute) // hang guard
	for a.attempts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two held requests never reached the backend")
		}
		time.Sleep(time.Millisecond)
	}
	res := load(t, addr, 1, 1, get("/"))
	want := "circuit open: 2 pending requests to api.demo (limit 2)"
	if res[0].status != 503 || res[0].reason != want {
		t.Errorf("got %d %q, want 503 %q", res[0].status, res[0].reason, want)
	}
	free()
	for i, r := range <-held {
		if r.status != 200 {
			t.Errorf("held request %d: got %d, want 200", i, r.status)
		}
	}
	if got := a.attempts.Load(); got != 2 {
		t.Errorf("backend saw %d requests, want 2 (the overflow never reaches it)", got)
	}
}

func TestFaultInjection(t *testing.T) {
	t.Run("10% abort", func(t *testing.T) {
		const n = 5000
		a := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
		snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{
			DefaultFault: &meshv1.FaultInjection{AbortPercent: 10, AbortHttpStatus: 503, Name: "FaultInjection/demo/chaos"},
		})
		addr, _, _ := startOutbound(t, snap, balance.Config{})
		aborted := 0
		for i, r := range load(t, addr, n, 8, get("/")) {
			switch {
			case r.status == 503 && r.reason == "fault injected by FaultInjection/demo/chaos":
				aborted++
			case r.status != 200:
				t.Fatalf("request %d: got %d %q", i, r.status, r.reason)
			}
		}
		share := float64(aborted) / n
		t.Logf("aborted %d of %d (%.2f%%)", aborted, n, 100*share)
		if share < 0.08 || share > 0.12 {
			t.Errorf("aborted share %.4f, want 0.10 ± 0.02", share)
		}
		if got := a.attempts.Load(); got != int64(n-aborted) {
			t.Errorf("backend saw %d, want %d (aborts never reach it)", got, n-aborted)
		}
	})
	t.Run("delay on a path prefix", func(t *testing.T) {
		a := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
		snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{
			DefaultFault: &meshv1.FaultInjection{DelayPercent: 100, DelayMs: 200, PathPrefix: "/slow"},
		})
		addr, _, _ := startOutbound(t, snap, balance.Config{})
		start := time.Now()
		res := load(t, addr, 1, 1, get("/slow/x"))
		if d := time.Since(start); res[0].status != 200 || d < 200*time.Millisecond {
			t.Errorf("got %d after %s, want 200 after at least 200ms", res[0].status, d)
		}
	})
}

func TestP2CAvoidsSlowEndpoint(t *testing.T) {
	const n = 600
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(20 * time.Millisecond) })
	fast := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	addr, _, _ := startOutbound(t, snapshot(1, endpoints(slow, fast)...), balance.Config{})
	load(t, addr, n, 4, get("/"))
	share := float64(slow.attempts.Load()) / n
	t.Logf("slow endpoint share %.3f (round robin: 0.5)", share)
	if share >= 0.3 {
		t.Errorf("slow endpoint got %.1f%% of requests, want clearly less than round robin's 50%%", 100*share)
	}
}

func TestRouteRequestTimeoutBoundsRetries(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	snap := snapshot(1, endpoints(b)...)
	snap.Routes = []*meshv1.RouteRule{{
		Route: "HTTPRoute/demo/api", RequestTimeoutMs: 300,
		Retry: &meshv1.RetryPolicy{MaxAttempts: 10, PerTryTimeoutMs: 100, Retryable: true, OnStatus: []uint32{504}, BackoffBaseMs: 1},
	}}
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	res := load(t, addr, 1, 1, get("/"))
	if res[0].status != 504 || !strings.Contains(res[0].reason, "300ms") {
		t.Fatalf("got %d %q, want 504 naming the request timeout of 300ms", res[0].status, res[0].reason)
	}
	// Each try lasts its 100ms at least, and the whole request 300ms.
	if got := b.attempts.Load(); got < 1 || got > 3 {
		t.Errorf("%d attempts, want 1 to 3 within the request timeout", got)
	}
	t.Logf("%d attempts, reason %q", b.attempts.Load(), res[0].reason)
}

func TestRouteRuleFault(t *testing.T) {
	a := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	snap := snapshot(1, endpoints(a)...)
	snap.Routes = []*meshv1.RouteRule{{
		Route:   "HTTPRoute/demo/api",
		Matches: []*meshv1.RouteMatch{{Path: &meshv1.PathMatch{Type: meshv1.PathMatch_PREFIX, Value: "/broken"}}},
		Fault:   &meshv1.FaultInjection{AbortPercent: 100, AbortHttpStatus: 418, Name: "FaultInjection/demo/teapot"},
	}, {Route: "HTTPRoute/demo/api", Rule: 1}}
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	tests := []struct {
		path       string
		wantStatus int
	}{
		{"/broken/x", 418},
		{"/fine", 200},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := load(t, addr, 1, 1, get(tt.path))
			if res[0].status != tt.wantStatus {
				t.Errorf("got %d %q, want %d", res[0].status, res[0].reason, tt.wantStatus)
			}
		})
	}
}

func TestConnectFailureAlwaysRetried(t *testing.T) {
	// A port nothing listens on: connects are refused, so the request
	// never reached an application and is safe to send again, even a
	// POST on a policy that does not declare requests retryable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := &backend{addr: ln.Addr().String()}
	ln.Close()
	live := startBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	snap := withResilience(snapshot(1, endpoints(dead, live)...), &meshv1.Resilience{
		ConsecutiveFailures: 1000,
		DefaultRetry:        &meshv1.RetryPolicy{MaxAttempts: 2, BackoffBaseMs: 1},
	})
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	res := load(t, addr, 50, 2, func() *http.Request {
		r, _ := http.NewRequest("POST", "http://api.demo/orders", strings.NewReader(`{"n":1}`))
		return r
	})
	for i, r := range res {
		if r.status != 200 {
			t.Fatalf("request %d: got %d %q, want 200 after a retry on the live endpoint", i, r.status, r.reason)
		}
	}
	if got := live.attempts.Load(); got != 50 {
		t.Errorf("live endpoint saw %d requests, want 50", got)
	}
}

func TestConnectionLimit(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	a := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
	})
	snap := withResilience(snapshot(1, endpoints(a)...), &meshv1.Resilience{MaxConnections: 1, ConsecutiveFailures: 1})
	addr, reg, _ := startOutbound(t, snap, balance.Config{})
	held := make(chan []result, 1)
	go func() { held <- load(t, addr, 1, 1, get("/hold")) }()
	deadline := time.Now().Add(time.Minute) // hang guard
	for a.attempts.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the held request never reached the backend")
		}
		time.Sleep(time.Millisecond)
	}
	// The only connection allowed is busy: a second one is refused.
	res := load(t, addr, 1, 1, get("/"))
	want := "circuit open for " + a.addr + ": 1 connections open to api.demo (limit 1)"
	if res[0].status != 503 || res[0].reason != want {
		t.Errorf("got %d %q, want 503 %q", res[0].status, res[0].reason, want)
	}
	free()
	if r := <-held; r[0].status != 200 {
		t.Errorf("held request: got %d, want 200", r[0].status)
	}
	// Once the connection is back in the pool it serves again.
	if res := load(t, addr, 5, 1, get("/")); res[4].status != 200 {
		t.Errorf("after the release: got %d %q, want 200", res[4].status, res[4].reason)
	}
	// The proxy's own limit is not the endpoint's failure.
	if got := counter(t, reg, "weft_endpoint_ejections_total"); got != 0 {
		t.Errorf("weft_endpoint_ejections_total = %v, want 0", got)
	}
}

func TestIdleTimeoutClosesConnections(t *testing.T) {
	// The defaults (90s) exceed the hang guard: the connections close
	// within it only because the destination's idle timeout applies.
	const hangGuard = 30 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upClosed := make(chan struct{}, 16)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				upClosed <- struct{}{}
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	snap := withResilience(snapshot(1, &meshv1.Endpoint{Address: ln.Addr().String()}), &meshv1.Resilience{IdleTimeoutMs: 200})
	addr, _, _ := startOutbound(t, snap, balance.Config{})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: api\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("got %q, %v, want a 200", buf[:n], err)
	}
	t.Run("client connection", func(t *testing.T) {
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("idle client connection not closed by the proxy: %v", err)
		}
	})
	t.Run("upstream connection", func(t *testing.T) {
		select {
		case <-upClosed:
		case <-time.After(hangGuard):
			t.Error("idle upstream connection not closed by the proxy")
		}
	})
}
