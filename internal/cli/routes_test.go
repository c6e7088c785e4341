package cli

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/control/viz"
)

type routeStats struct{}

func (routeStats) Stat(time.Duration) []viz.ServiceStat {
	rate, p50 := 0.995, 2.5
	return []viz.ServiceStat{{Name: "books", Namespace: "default", Requests: 300, RPS: 10, SuccessRate: &rate, P50Ms: &p50}}
}

// TestRoutes runs `weft routes` against the real controller API.
func TestRoutes(t *testing.T) {
	store := memory.New("")
	for _, n := range []string{"books", "v1", "v2"} {
		store.SetService(config.Service{Name: n, Endpoints: []config.Endpoint{{Address: "127.0.0.1:1", Ready: true}}})
	}
	rs, err := file.Decode([]byte(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-ab}
spec:
  parentRefs: [{kind: Service, name: books}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "true"}]}]
    backendRefs: [{name: v2}]
  - backendRefs: [{name: v1, weight: 90}, {name: v2, weight: 10}]
    timeouts: {request: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	// A client proxy whose route counters grow by 10 successes and one
	// failure, 11 ms of latency in all, between two scrapes.
	var scrapes atomic.Int64
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprint(w, "# TYPE weft_route_responses_total counter\n# TYPE weft_route_response_latency_seconds histogram\n")
		fmt.Fprintf(w, "weft_route_response_latency_seconds_bucket{route=\"HTTPRoute/default/books-ab\",service=\"books.default\",le=\"+Inf\"} %d\n", 11*n)
		fmt.Fprintf(w, "weft_route_responses_total{classification=\"success\",route=\"HTTPRoute/default/books-ab\",service=\"books.default\"} %d\n", 10*n)
		fmt.Fprintf(w, "weft_route_responses_total{classification=\"failure\",route=\"HTTPRoute/default/books-ab\",service=\"books.default\"} %d\n", n)
		fmt.Fprintf(w, "weft_route_responses_total{classification=\"success\",route=\"HTTPRoute/default/other\",service=\"other.default\"} %d\n", 100*n)
		fmt.Fprintf(w, "weft_route_response_latency_seconds_sum{route=\"HTTPRoute/default/books-ab\",service=\"books.default\"} %g\n", 0.011*float64(n))
		fmt.Fprintf(w, "weft_route_response_latency_seconds_count{route=\"HTTPRoute/default/books-ab\",service=\"books.default\"} %d\n", 11*n)
	}))
	defer admin.Close()
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web", AdminAddr: strings.TrimPrefix(admin.URL, "http://")})
	if _, err := store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{Token: "tok", Store: store, Stats: routeStats{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := startMesh(t, srv.URL, "tok")

	stdout, stderr, code := runCLI(t, "routes", "books", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Service books.default: backends books=1 (1 ready)",
		"HTTPRoute/default/books-ab   0      header X-Canary=true   v2=1 (1 ready)",
		"HTTPRoute/default/books-ab   1      *                      v1=90 (1 ready), v2=10 (1 ready)",
		"2s",
		"success 99.50%, 10.0rps, latency p50 2.5ms",
		"HTTPRoute/default/books-ab   90.91%    11.0rps   1.0ms",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if _, stderr, code := runCLI(t, "routes", "nope", "--state-dir", dir); code == 0 || !strings.Contains(stderr, "no service nope.default in the mesh") {
		t.Errorf("unknown service: exit %d, stderr %q", code, stderr)
	}
}
