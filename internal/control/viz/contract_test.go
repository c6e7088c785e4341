package viz

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/metrics"
)

// TestProxyMetricsContract scrapes the proxy's real metrics registry, so a
// change of names or labels on either side fails here.
func TestProxyMetricsContract(t *testing.T) {
	reg := metrics.New()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	h := newHarness(t)
	h.src.set(nil, &config.Proxy{ID: "api-0", Service: "api", Namespace: "default",
		AdminAddr: strings.TrimPrefix(srv.URL, "http://")})
	in := reg.Service(metrics.Inbound, "api.default")
	out := reg.Service(metrics.Outbound, "books.default")
	h.scrapeAt(t, 0)

	// Traffic split over tls="true" and tls="false" is summed.
	for i := range 18 {
		m := in.WithTLS(i%2 == 0)
		m.Request()
		m.Response(200, false, 3*time.Millisecond)
	}
	for range 2 {
		in.Request()
		in.Response(503, true, 3*time.Millisecond)
	}
	for range 5 {
		out.Request()
		out.Response(200, false, time.Millisecond)
	}
	in.TCPOpen()
	in.WithTLS(true).TCPOpen()
	h.scrapeAt(t, 10)

	got := statJSON(t, h.s.Stat(10*time.Second))
	// Latency: 20 in (2.5ms, 5ms]; p50: rank 10 -> 2.5+2.5*10/20 = 3.75ms;
	// p95: rank 19 -> 4.875ms; p99: rank 19.8 -> 4.975ms.
	want := statJSON(t, []ServiceStat{{Name: "api", Namespace: "default", Instances: 1, Meshed: 1,
		Requests: 20, SuccessRate: f(0.9), RPS: 2, P50Ms: f(3.75), P95Ms: f(4.875), P99Ms: f(4.975), TCPConnections: 2}})
	if got != want {
		t.Errorf("Stat =\n%s\nwant\n%s", got, want)
	}
	gotEdges := statJSON(t, h.s.Edges(10*time.Second))
	wantEdges := statJSON(t, []EdgeStat{{From: "api.default", To: "books.default", Requests: 5, RPS: 0.5, SuccessRate: f(1)}})
	if gotEdges != wantEdges {
		t.Errorf("Edges =\n%s\nwant\n%s", gotEdges, wantEdges)
	}
}
