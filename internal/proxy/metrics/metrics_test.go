package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
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

// TestResponseCodes counts many status codes, in and out of order and from
// several goroutines at once: each code gets its own series, codes outside
// [0, 600) go to "other", and nothing is lost.
func TestResponseCodes(t *testing.T) {
	r := New()
	s := r.Service(Outbound, "api.default")
	codes := []int{503, 200, 404, 0, 599, 100, 302, 600, 999, -1, 201}
	const rounds = 50
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range rounds {
				for j := range codes {
					c := codes[(j+g+i)%len(codes)]
					s.Response(c, c >= 500, time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := rec.Body.String()
	for _, c := range []int{503, 200, 404, 0, 599, 100, 302, 201} {
		class := "success"
		if c >= 500 {
			class = "failure"
		}
		want := fmt.Sprintf(`weft_responses_total{classification="%s",direction="outbound",service="api.default",status_code="%d",tls="false"} %d`, class, c, 4*rounds)
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	// 600, 999 and -1: "other", failures for the first two.
	for _, want := range []string{
		fmt.Sprintf(`weft_responses_total{classification="failure",direction="outbound",service="api.default",status_code="other",tls="false"} %d`, 2*4*rounds),
		fmt.Sprintf(`weft_responses_total{classification="success",direction="outbound",service="api.default",status_code="other",tls="false"} %d`, 4*rounds),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if n := len(*s.codes.Load()); n != 9 {
		t.Errorf("got %d code entries, want 9 (8 codes and other)", n)
	}
}

// TestTwinMadeOnce checks that goroutines asking for the mutual TLS twin
// at once all get the same one, and that it counts for all of them.
func TestTwinMadeOnce(t *testing.T) {
	r := New()
	s := r.Service(Inbound, "web.default")
	const n = 8
	got := make([]*Service, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i] = s.WithTLS(true)
			got[i].Request()
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] || got[i].WithTLS(false) != s {
			t.Fatalf("caller %d got another twin", i)
		}
	}
	if v := got[0].requests.Value(); v != n {
		t.Errorf("twin counted %v requests, want %d", v, n)
	}
}

// TestServiceSize keeps a Service small: the proxy holds two per
// destination it calls (plaintext and mutual TLS), a thousand destinations
// and more in a large mesh.
func TestServiceSize(t *testing.T) {
	if n := unsafe.Sizeof(Service{}); n > 512 {
		t.Errorf("a Service is %d bytes, want at most 512", n)
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
