package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	r := New()
	s := r.Service(Outbound, "api.default")
	if r.Service(Outbound, "api.default") != s {
		t.Fatal("Service is not cached per (direction, service)")
	}
	s.Request()
	s.Request()
	s.Response(200, false, 3*time.Millisecond)
	s.Response(503, true, time.Millisecond)
	s.Response(200, true, time.Millisecond) // grpc-status != 0
	s.Response(999, true, time.Millisecond)
	s.TCPOpen()
	s.TCPOpen()
	s.TCPClose(10, 20)
	r.Service(Inbound, "web.default").Request()

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	got := string(body)
	for _, want := range []string{
		`weft_requests_total{direction="outbound",service="api.default"} 2`,
		`weft_requests_total{direction="inbound",service="web.default"} 1`,
		`weft_responses_total{classification="success",direction="outbound",service="api.default",status_code="200"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="200"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="503"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="other"} 1`,
		`weft_response_latency_seconds_bucket{direction="outbound",service="api.default",le="0.0005"} 0`,
		`weft_response_latency_seconds_bucket{direction="outbound",service="api.default",le="10"} 4`,
		`weft_response_latency_seconds_count{direction="outbound",service="api.default"} 4`,
		`weft_tcp_open_connections{direction="outbound",service="api.default"} 1`,
		`weft_tcp_open_total{direction="outbound",service="api.default"} 2`,
		`weft_tcp_close_total{direction="outbound",service="api.default"} 1`,
		`weft_tcp_read_bytes_total{direction="outbound",service="api.default"} 10`,
		`weft_tcp_write_bytes_total{direction="outbound",service="api.default"} 20`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

func BenchmarkResponse(b *testing.B) {
	s := New().Service(Outbound, "api.default")
	b.ReportAllocs()
	for b.Loop() {
		s.Request()
		s.Response(200, false, time.Millisecond)
	}
}
