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
	m := r.Service(Inbound, "web.default").WithTLS(true)
	if m.WithTLS(true) != m || m.WithTLS(false) != r.Service(Inbound, "web.default") {
		t.Fatal("WithTLS does not return the twins")
	}
	m.Request()
	m.Response(200, false, time.Millisecond)
	m.TCPOpen()

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	got := string(body)
	for _, want := range []string{
		`weft_requests_total{direction="outbound",service="api.default",tls="false"} 2`,
		`weft_requests_total{direction="inbound",service="web.default",tls="false"} 1`,
		`weft_responses_total{classification="success",direction="outbound",service="api.default",status_code="200",tls="false"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="200",tls="false"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="503",tls="false"} 1`,
		`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="other",tls="false"} 1`,
		`weft_response_latency_seconds_bucket{direction="outbound",service="api.default",tls="false",le="0.0005"} 0`,
		`weft_response_latency_seconds_bucket{direction="outbound",service="api.default",tls="false",le="10"} 4`,
		`weft_response_latency_seconds_count{direction="outbound",service="api.default",tls="false"} 4`,
		`weft_tcp_open_connections{direction="outbound",service="api.default",tls="false"} 1`,
		`weft_tcp_open_total{direction="outbound",service="api.default",tls="false"} 2`,
		`weft_tcp_close_total{direction="outbound",service="api.default",tls="false"} 1`,
		`weft_tcp_read_bytes_total{direction="outbound",service="api.default",tls="false"} 10`,
		`weft_tcp_write_bytes_total{direction="outbound",service="api.default",tls="false"} 20`,
		`weft_requests_total{direction="inbound",service="web.default",tls="true"} 1`,
		`weft_responses_total{classification="success",direction="inbound",service="web.default",status_code="200",tls="true"} 1`,
		`weft_tcp_open_total{direction="inbound",service="web.default",tls="true"} 1`,
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

type fakeIdentity struct{}

func (fakeIdentity) NotAfter() time.Time { return time.Unix(1700000000, 0) }
func (fakeIdentity) Renewals() uint64    { return 3 }

func TestIdentityMetrics(t *testing.T) {
	r := New()
	r.RegisterIdentity(fakeIdentity{})
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := rec.Body.String()
	for _, want := range []string{
		"weft_identity_cert_expiry_timestamp_seconds 1.7e+09",
		"weft_identity_renewals_total 3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
