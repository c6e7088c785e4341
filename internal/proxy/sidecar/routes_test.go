package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	meshv1 "weft.dev/weft/api/meshv1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/sidecar"
)

// This file tests routes end to end: documents as users write them are
// decoded, applied to the store, compiled by the real push server and
// enforced by two real proxies between real applications.

// routeApp answers every request with its name, and what it received in
// headers, so tests see which backend served a request and how.
//
//	GET /hold   -> blocks until the request ends or the app is released
//	GET /mirror -> records the request on got, then blocks until released
type routeApp struct {
	name    string
	addr    string
	got     chan *http.Request
	release chan struct{}
	once    sync.Once
	failed  atomic.Bool // /fail-once has failed
}

func startRouteApp(t testing.TB, name string) *routeApp {
	t.Helper()
	a := &routeApp{name: name, got: make(chan *http.Request, 64), release: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Header.Set("X-Test-Body", string(body))
		switch r.URL.Path {
		case "/hold":
			select {
			case <-r.Context().Done():
			case <-a.release:
			}
			return
		case "/fail-once":
			if a.failed.CompareAndSwap(false, true) {
				w.Header().Set("Served-By", a.name)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		case "/mirror":
			select {
			case a.got <- r:
			default:
			}
			<-a.release
		}
		w.Header().Set("Served-By", a.name)
		w.Header().Set("X-Remove-Me", "app")
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Added", strings.Join(r.Header.Values("X-Added"), ","))
		w.Header().Set("X-Seen-Set", r.Header.Get("X-Set"))
		w.Header().Set("X-Seen-Removed", r.Header.Get("X-Secret"))
		io.WriteString(w, a.name)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go srv.Serve(ln)
	t.Cleanup(func() { a.free(); srv.Close() })
	a.addr = ln.Addr().String()
	return a
}

func (a *routeApp) free() { a.once.Do(func() { close(a.release) }) }

// routeMesh is a real controller (store + push server) and two proxies:
// "web-0" calls the service "books" through its outbound listener;
// "api-0" fronts one application per service (books, v1, v2, mirror).
type routeMesh struct {
	store  *memory.Store
	apps   map[string]*routeApp
	client *proxy
	out    string // web-0's outbound address for "books"
	h1, h2 *http.Client
	// books is the content of the last snapshot of books web-0 was seen
	// to apply (without its version).
	books *meshv1.DestinationSnapshot
}

var routeServices = []string{"books", "v1", "v2", "mirror"}

func startRouteMesh(t *testing.T) *routeMesh {
	t.Helper()
	m := &routeMesh{store: memory.New(""), apps: map[string]*routeApp{}}
	pki := identitytest.New(t, 0)
	ps := push.New(m.store, push.Config{Debounce: 5 * time.Millisecond})
	srv := grpc.NewServer(pki.ServerOption())
	pki.Register(srv)
	ps.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	ctlAddr := ln.Addr().String()
	pkis.Store(ctlAddr, pki)
	t.Cleanup(func() { ps.Shutdown(); srv.Stop(); <-served; pkis.Delete(ctlAddr) })

	var ins []sidecar.InboundSpec
	for _, name := range routeServices {
		m.apps[name] = startRouteApp(t, name)
		ins = append(ins, sidecar.InboundSpec{Listen: "127.0.0.1:0", App: m.apps[name].addr})
	}
	m.store.SetProxy(config.Proxy{ID: "api-0", Service: "api"})
	m.store.SetProxy(config.Proxy{ID: "web-0", Service: "web"})
	server := startProxy(t, sidecar.Config{ID: "api-0", Service: "api", Controller: ctlAddr, Inbound: ins})
	for i, addr := range server.InboundAddrs() {
		name := routeServices[i]
		m.store.SetService(config.Service{Name: name, Endpoints: []config.Endpoint{{Address: addr, Identity: apiID, Meshed: true, Ready: true}}})
	}
	m.client = startProxy(t, sidecar.Config{ID: "web-0", Service: "web", Controller: ctlAddr,
		Outbound: []sidecar.OutboundSpec{{Listen: "127.0.0.1:0", Authority: "books"}}})
	m.out = m.client.OutboundAddrs()[0]
	// Release held requests before the proxies drain (cleanups run last
	// registered first): a drain waits for requests in flight.
	t.Cleanup(func() {
		for _, a := range m.apps {
			a.free()
		}
	})
	server.waitReady(t)
	m.client.waitReady(t)
	m.waitApplied(t)

	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	m.h1 = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, CheckRedirect: noRedirect}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	m.h2 = &http.Client{Transport: &http.Transport{Protocols: &p}, CheckRedirect: noRedirect}
	t.Cleanup(func() { m.h1.CloseIdleConnections(); m.h2.CloseIdleConnections() })
	return m
}

// apply applies a YAML file as `weft apply -f` does.
func (m *routeMesh) apply(t *testing.T, doc string) {
	t.Helper()
	rs, err := file.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if _, err := m.store.Apply(rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	m.waitApplied(t)
}

// waitApplied waits until web-0 runs the store's current configuration of
// books; it returns how long that took. The push server sends a snapshot
// only when its content changes, so a change that does not touch books
// has nothing to wait for.
func (m *routeMesh) waitApplied(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	snap := m.store.Snapshot()
	want := snap.Version
	books := push.Destination(snap, config.Key("books", "default"), "books")
	books.Version = 0
	if m.books != nil && proto.Equal(books, m.books) {
		return 0
	}
	m.books = books
	deadline := start.Add(hangGuard)
	for {
		_, body := m.client.adminGet(t, "/status")
		if v := statusVersion(body, "books.default"); v >= want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-0 never applied version %d: %s", want, body)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func statusVersion(body, service string) uint64 {
	i := strings.Index(body, `"`+service+`"`)
	if i < 0 {
		return 0
	}
	j := strings.Index(body[i:], `"version":`)
	if j < 0 {
		return 0
	}
	var v uint64
	fmt.Sscanf(body[i+j+len(`"version":`):], "%d", &v)
	return v
}

type reply struct {
	code   int
	header http.Header
	body   string
}

func (m *routeMesh) do(t *testing.T, c *http.Client, method, target string, hdr map[string]string) reply {
	t.Helper()
	return m.doBody(t, c, method, target, hdr, "")
}

func (m *routeMesh) doBody(t *testing.T, c *http.Client, method, target string, hdr map[string]string, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+m.out+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "books"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func clients(m *routeMesh) []struct {
	name string
	c    *http.Client
} {
	return []struct {
		name string
		c    *http.Client
	}{{"http1", m.h1}, {"h2c", m.h2}}
}

const matchRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-ab}
spec:
  parentRefs: [{group: "", kind: Service, name: books}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "true"}]}]
    backendRefs: [{name: v2}]
  - matches: [{headers: [{name: cookie, type: RegularExpression, value: '(.*; )?group=beta(;.*)?'}]}]
    backendRefs: [{name: v2}]
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: v2}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: v2}]
  - matches: [{path: {type: RegularExpression, value: '/items/[0-9]+'}}]
    backendRefs: [{name: v2}]
  - matches: [{queryParams: [{name: beta, value: "1"}]}]
    backendRefs: [{name: v2}]
  - matches: [{method: DELETE}]
    backendRefs: [{name: v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: books-grpc}
spec:
  parentRefs: [{group: "", kind: Service, name: books}]
  rules:
  - matches: [{method: {service: weft.test.Books, method: Get}}]
    backendRefs: [{name: v1}]
`

func TestRouteMatches(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, matchRoutes)
	tests := []struct {
		name, method, target string
		hdr                  map[string]string
		want                 string
	}{
		{"no match goes to the service", "GET", "/other", nil, "books"},
		{"header A/B", "GET", "/other", map[string]string{"X-Canary": "true"}, "v2"},
		{"header other value", "GET", "/other", map[string]string{"X-Canary": "false"}, "books"},
		{"cookie A/B", "GET", "/other", map[string]string{"Cookie": "session=1; group=beta"}, "v2"},
		{"cookie other group", "GET", "/other", map[string]string{"Cookie": "group=betamax"}, "books"},
		{"exact path", "GET", "/exact", nil, "v2"},
		{"exact path is not a prefix", "GET", "/exact/more", nil, "books"},
		{"prefix", "GET", "/api/list", nil, "v2"},
		{"prefix itself", "GET", "/api", nil, "v2"},
		{"prefix matches whole segments", "GET", "/apix", nil, "books"},
		{"regex", "GET", "/items/42", nil, "v2"},
		{"regex matches the whole path", "GET", "/items/42/x", nil, "books"},
		{"query", "GET", "/q?a=2&beta=1", nil, "v2"},
		{"query other value", "GET", "/q?beta=2", nil, "books"},
		{"method", "DELETE", "/other", nil, "v1"},
		{"grpc method", "POST", "/weft.test.Books/Get", map[string]string{"Content-Type": "application/grpc"}, "v1"},
		{"grpc other method", "POST", "/weft.test.Books/List", map[string]string{"Content-Type": "application/grpc"}, "books"},
	}
	for _, cl := range clients(m) {
		for _, tt := range tests {
			t.Run(cl.name+"/"+tt.name, func(t *testing.T) {
				got := m.do(t, cl.c, tt.method, tt.target, tt.hdr)
				if got.header.Get("Served-By") != tt.want {
					t.Errorf("served by %q (status %d, %s), want %q", got.header.Get("Served-By"), got.code, got.header.Get(proxyerr.Header), tt.want)
				}
			})
		}
	}
	// Each route counts the requests its rules took, and only those.
	_, metrics := m.client.adminGet(t, "/metrics")
	for _, c := range []struct{ route, want string }{
		{"HTTPRoute/default/books-ab", "16"},
		{"GRPCRoute/default/books-grpc", "2"},
	} {
		series := `weft_route_responses_total{classification="success",route="` + c.route + `",service="books.default"} `
		if got := grep(metrics, series); got != series+c.want {
			t.Errorf("got %q, want %q", got, series+c.want)
		}
	}
}

func TestRouteFilters(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-filters}
spec:
  parentRefs: [{kind: Service, name: books}]
  rules:
  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{name: X-Added, value: by-route}]
        set: [{name: X-Set, value: route-value}]
        remove: [X-Secret]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Resp, value: "yes"}]
        remove: [X-Remove-Me]
  - matches: [{path: {value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.test
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
    backendRefs: [{name: v1}]
  - matches: [{path: {value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}
  - matches: [{path: {value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.test, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /here}}
  - matches: [{path: {value: /hold}}]
    timeouts: {request: 200ms}
`)
	for _, cl := range clients(m) {
		t.Run(cl.name+"/header modifiers", func(t *testing.T) {
			got := m.do(t, cl.c, "GET", "/headers", map[string]string{"X-Secret": "s3cret", "X-Set": "client", "X-Added": "client"})
			if got.code != 200 || got.header.Get("Served-By") != "books" {
				t.Fatalf("got %d from %q, want 200 from books", got.code, got.header.Get("Served-By"))
			}
			for _, c := range []struct{ name, got, want string }{
				{"backend saw X-Added", got.header.Get("X-Seen-Added"), "client,by-route"},
				{"backend saw X-Set", got.header.Get("X-Seen-Set"), "route-value"},
				{"backend saw X-Secret", got.header.Get("X-Seen-Removed"), ""},
				{"client sees X-Resp", got.header.Get("X-Resp"), "yes"},
				{"client sees X-Remove-Me", got.header.Get("X-Remove-Me"), ""},
			} {
				if c.got != c.want {
					t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
				}
			}
		})
		t.Run(cl.name+"/rewrite prefix and host", func(t *testing.T) {
			got := m.do(t, cl.c, "GET", "/old/book?id=7", nil)
			if got.header.Get("Served-By") != "v1" || got.header.Get("X-Seen-Path") != "/new/book?id=7" || got.header.Get("X-Seen-Host") != "rewritten.test" {
				t.Errorf("served by %q path %q host %q, want v1 /new/book?id=7 rewritten.test",
					got.header.Get("Served-By"), got.header.Get("X-Seen-Path"), got.header.Get("X-Seen-Host"))
			}
		})
		t.Run(cl.name+"/rewrite full path", func(t *testing.T) {
			got := m.do(t, cl.c, "GET", "/full/a/b", nil)
			if p := got.header.Get("X-Seen-Path"); p != "/replaced" {
				t.Errorf("backend saw %q, want /replaced", p)
			}
		})
		t.Run(cl.name+"/redirect", func(t *testing.T) {
			before := len(m.apps["books"].got)
			got := m.do(t, cl.c, "GET", "/moved/x?y=1", nil)
			if got.code != 301 || got.header.Get("Location") != "http://example.test/here/x?y=1" {
				t.Errorf("got %d Location %q, want 301 http://example.test/here/x?y=1", got.code, got.header.Get("Location"))
			}
			if got.header.Get("Served-By") != "" || len(m.apps["books"].got) != before {
				t.Errorf("a backend answered the redirect (served by %q)", got.header.Get("Served-By"))
			}
		})
		t.Run(cl.name+"/request timeout", func(t *testing.T) {
			got := m.do(t, cl.c, "GET", "/hold", nil)
			want := "request timeout 200ms exceeded for HTTPRoute/default/books-filters"
			if got.code != 504 || got.header.Get(proxyerr.Header) != want {
				t.Errorf("got %d %q, want 504 %q", got.code, got.header.Get(proxyerr.Header), want)
			}
		})
	}
}

func TestRouteMirror(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-mirror}
spec:
  parentRefs: [{kind: Service, name: books}]
  rules:
  - matches: [{path: {value: /mirror}}]
    backendRefs: [{name: v1}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror}}
`)
	mirror := m.apps["mirror"]
	for _, cl := range clients(m) {
		t.Run(cl.name, func(t *testing.T) {
			// v1 answers /mirror only once released, the mirror never
			// before the end of the test: release v1 alone.
			m.apps["v1"].free()
			got := m.do(t, cl.c, "GET", "/mirror?n="+cl.name, map[string]string{"X-Trace": cl.name})
			// The caller has its answer while the mirror is still
			// holding its copy: the mirror added no latency.
			if got.code != 200 || got.body != "v1" || got.header.Get("Served-By") != "v1" {
				t.Fatalf("caller got %d %q from %q, want 200 v1 from v1", got.code, got.body, got.header.Get("Served-By"))
			}
			select {
			case r := <-mirror.got:
				if r.URL.RequestURI() != "/mirror?n="+cl.name || r.Header.Get("X-Trace") != cl.name {
					t.Errorf("mirror got %s with X-Trace %q", r.URL.RequestURI(), r.Header.Get("X-Trace"))
				}
			case <-time.After(hangGuard):
				t.Fatal("the mirror never received the copy")
			}
		})
		t.Run(cl.name+"/body", func(t *testing.T) {
			body := strings.Repeat("mirrored body "+cl.name+" ", 1000) // 20 KiB
			got := m.doBody(t, cl.c, "POST", "/mirror?body="+cl.name, nil, body)
			if got.code != 200 || got.header.Get("Served-By") != "v1" {
				t.Fatalf("caller got %d from %q, want 200 from v1", got.code, got.header.Get("Served-By"))
			}
			select {
			case r := <-mirror.got:
				if r.Method != "POST" || r.Header.Get("X-Test-Body") != body {
					t.Errorf("mirror got %s with a body of %d bytes, want POST with the caller's %d", r.Method, len(r.Header.Get("X-Test-Body")), len(body))
				}
			case <-time.After(hangGuard):
				t.Fatal("the mirror never received the copy")
			}
		})
	}
}

// shares sends n GET requests over workers connections and returns the
// share of each backend in percent.
func (m *routeMesh) shares(t *testing.T, n, workers int, target string) map[string]float64 {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+m.out+target, nil)
				req.Host = "books"
				resp, err := m.h1.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				counts[resp.Header.Get("Served-By")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for k, c := range counts {
		out[k] = 100 * float64(c) / float64(n)
	}
	return out
}

func checkShares(t *testing.T, got map[string]float64, want map[string]float64, tolerance float64) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; g < w-tolerance || g > w+tolerance {
			t.Errorf("share of %s = %.2f%%, want %.0f%% ± %.0f (all: %v)", k, g, w, tolerance, got)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("backend %q got %.2f%% of the traffic, want none", k, got[k])
		}
	}
}

const splitDoc = `
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: books-canary}
spec:
  service: books
  backends:
  - service: v1
    weight: %d
  - service: v2
    weight: %d
`

// TestTrafficSplitShares checks the numbers: over 10,000 requests
// each backend's share is within one percentage point of its weight, and
// weight changes and a rollback are in force as soon as the proxy runs
// the new version.
func TestTrafficSplitShares(t *testing.T) {
	m := startRouteMesh(t)
	steps := []struct {
		name   string
		v1, v2 int
		n      int
		want   map[string]float64
	}{
		{"95/5", 95, 5, 10000, map[string]float64{"v1": 95, "v2": 5}},
		{"shift to 50/50", 50, 50, 4000, map[string]float64{"v1": 50, "v2": 50}},
		{"blue-green switch", 0, 100, 1000, map[string]float64{"v2": 100}},
		{"rollback", 100, 0, 1000, map[string]float64{"v1": 100}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			m.apply(t, fmt.Sprintf(splitDoc, s.v1, s.v2))
			tolerance := 1.0
			if s.n < 10000 {
				tolerance = 3 // fewer requests for the intermediate steps
			}
			checkShares(t, m.shares(t, s.n, 8, "/split"), s.want, tolerance)
		})
	}
}

func TestRouteWeightedBackends(t *testing.T) {
	m := startRouteMesh(t)
	const doc = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-weights}
spec:
  parentRefs: [{kind: Service, name: books}]
  rules:
  - backendRefs: [{name: v1, weight: %d}, {name: v2, weight: %d}]
`
	m.apply(t, fmt.Sprintf(doc, 90, 10))
	checkShares(t, m.shares(t, 10000, 8, "/w"), map[string]float64{"v1": 90, "v2": 10}, 1)
	m.apply(t, fmt.Sprintf(doc, 0, 1))
	checkShares(t, m.shares(t, 500, 4, "/w"), map[string]float64{"v2": 100}, 0)
}

// TestRouteUpdateLatency measures how long a weight change takes to reach
// the proxy through the real push server; it asserts only that it arrives.
func TestRouteUpdateLatency(t *testing.T) {
	m := startRouteMesh(t)
	var worst time.Duration
	for i := range 5 {
		rs, err := file.Decode(fmt.Appendf(nil, splitDoc, 100-i, i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.store.Apply(rs); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, m.waitApplied(t))
	}
	t.Logf("slowest weight change applied by the proxy after %s", worst)
}

// TestRouteRetryStaysOnRuleBackends checks that a rule's retries go to
// the rule's backends, not to the service's.
func TestRouteRetryStaysOnRuleBackends(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-retry}
spec:
  parentRefs: [{kind: Service, name: books}]
  rules:
  - matches: [{path: {value: /fail-once}}]
    backendRefs: [{name: v2}]
    retry: {attempts: 2, codes: [503]}
`)
	got := m.do(t, m.h1, "GET", "/fail-once", nil)
	if got.code != 200 || got.header.Get("Served-By") != "v2" {
		t.Errorf("got %d from %q, want 200 from v2 (its second try)", got.code, got.header.Get("Served-By"))
	}
	if !m.apps["v2"].failed.Load() {
		t.Error("v2 never failed: the retry was not exercised")
	}
}
