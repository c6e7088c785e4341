package viz

import (
	"math"
	"slices"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP weft_requests_total Requests.
# TYPE weft_requests_total counter
weft_requests_total{direction="inbound",service="api.default"} 7
weft_requests_total{direction="outbound",service="books"} 3
weft_requests_total{direction="sideways",service="api.default"} 100
weft_requests_total{direction="inbound"} 100
weft_requests_total{direction="outbound",service="books.default"} NaN
# TYPE weft_responses_total counter
weft_responses_total{direction="inbound",service="api.default",status_code="200",classification="success"} 5
weft_responses_total{direction="inbound",service="api.default",status_code="204",classification="success"} 1
weft_responses_total{direction="inbound",service="api.default",status_code="503",classification="failure"} 1
weft_responses_total{direction="inbound",service="api.default",status_code="503",classification="maybe"} 9
# TYPE weft_response_latency_seconds histogram
weft_response_latency_seconds_bucket{direction="inbound",service="api.default",le="0.001"} 2
weft_response_latency_seconds_bucket{direction="inbound",service="api.default",le="0.01"} 6
weft_response_latency_seconds_bucket{direction="inbound",service="api.default",le="+Inf"} 7
weft_response_latency_seconds_sum{direction="inbound",service="api.default"} 0.5
weft_response_latency_seconds_count{direction="inbound",service="api.default"} 7
# TYPE weft_tcp_open_connections gauge
weft_tcp_open_connections{direction="inbound",service="api.default"} 4
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7e9
# TYPE other_total counter
other_total{direction="inbound",service="api.default"} 1000
`
	got, start, err := parseMetrics(strings.NewReader(in), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if start != 1.7e9 {
		t.Errorf("start = %v, want 1.7e9", start)
	}
	api := got[seriesKey{dir: inbound, service: "api.default"}]
	books := got[seriesKey{dir: outbound, service: "books.demo"}]
	if len(got) != 2 || api == nil || books == nil {
		t.Fatalf("series = %v, want inbound api.default and outbound books.demo", got)
	}
	wantAPI := series{requests: 7, success: 6, failure: 1, tcpOpen: 4,
		latency: []bucket{{0.001, 2}, {0.01, 6}, {math.Inf(1), 7}}}
	if api.requests != wantAPI.requests || api.success != wantAPI.success || api.failure != wantAPI.failure ||
		api.tcpOpen != wantAPI.tcpOpen || !slices.Equal(api.latency, wantAPI.latency) {
		t.Errorf("api = %+v, want %+v", *api, wantAPI)
	}
	if books.requests != 3 {
		t.Errorf("books requests = %v, want 3 (NaN skipped)", books.requests)
	}
}

func TestParseMetricsUntyped(t *testing.T) {
	in := "weft_requests_total{direction=\"inbound\",service=\"api.default\"} 7\n" +
		"weft_tcp_open_connections{direction=\"inbound\",service=\"api.default\"} 2\n"
	got, _, err := parseMetrics(strings.NewReader(in), "default")
	if err != nil {
		t.Fatal(err)
	}
	s := got[seriesKey{dir: inbound, service: config.Key("api", "default")}]
	if s == nil || s.requests != 7 || s.tcpOpen != 2 {
		t.Errorf("untyped series = %+v, want requests 7, tcp 2", s)
	}
}

func TestParseMetricsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{name: "broken labels", in: "weft_requests_total{direction=\"inbound\" 1\n"},
		{name: "bad value", in: "weft_requests_total 1x\n"},
		{name: "type mismatch", in: "# TYPE weft_requests_total counter\n# TYPE weft_requests_total gauge\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseMetrics(strings.NewReader(tt.in), "default"); err == nil {
				t.Errorf("parseMetrics(%q) = nil error, want an error", tt.in)
			}
		})
	}
}

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		q       float64
		buckets []bucket
		want    float64
		wantOK  bool
	}{
		{name: "empty", q: 0.5},
		{name: "no +Inf bucket", q: 0.5, buckets: []bucket{{0.1, 1}, {1, 2}}},
		{name: "no observations", q: 0.5, buckets: []bucket{{0.1, 0}, {inf, 0}}},
		{name: "first bucket from zero", q: 0.5, buckets: []bucket{{0.1, 10}, {inf, 10}}, want: 0.05, wantOK: true},
		{name: "interpolated", q: 0.75, buckets: []bucket{{1, 10}, {2, 20}, {inf, 20}}, want: 1.5, wantOK: true},
		{name: "in the +Inf bucket", q: 0.99, buckets: []bucket{{1, 10}, {2, 20}, {inf, 100}}, want: 2, wantOK: true},
		{name: "exact bucket edge", q: 0.5, buckets: []bucket{{1, 10}, {2, 20}, {inf, 20}}, want: 1, wantOK: true},
		{name: "non-positive first bound", q: 0.1, buckets: []bucket{{-1, 5}, {1, 10}, {inf, 10}}, want: -1, wantOK: true},
		{name: "non-monotonic repaired", q: 0.5, buckets: []bucket{{1, 10}, {2, 8}, {4, 20}, {inf, 20}}, want: 1, wantOK: true},
		{name: "empty buckets skipped", q: 0.5, buckets: []bucket{{1, 0}, {2, 0}, {4, 10}, {inf, 10}}, want: 3, wantOK: true},
		{name: "q above 1 clamps", q: 2, buckets: []bucket{{1, 10}, {2, 20}, {inf, 20}}, want: 2, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := bucketQuantile(tt.q, tt.buckets)
			if ok != tt.wantOK || math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("bucketQuantile(%v, %v) = %v, %v; want %v, %v", tt.q, tt.buckets, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestMergeBuckets(t *testing.T) {
	inf := math.Inf(1)
	got := mergeBuckets([]bucket{{1, 1}, {3, 2}, {inf, 3}}, []bucket{{2, 5}, {3, 6}, {inf, 7}})
	want := []bucket{{1, 1}, {2, 5}, {3, 8}, {inf, 10}}
	if !slices.Equal(got, want) {
		t.Errorf("mergeBuckets = %v, want %v", got, want)
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("# TYPE weft_requests_total counter\nweft_requests_total{direction=\"inbound\",service=\"a\"} 1\n")
	f.Add("# TYPE weft_response_latency_seconds histogram\n" +
		"weft_response_latency_seconds_bucket{direction=\"outbound\",service=\"b.x\",le=\"0.1\"} 1\n" +
		"weft_response_latency_seconds_bucket{direction=\"outbound\",service=\"b.x\",le=\"+Inf\"} 2\n" +
		"weft_response_latency_seconds_count{direction=\"outbound\",service=\"b.x\"} 2\n")
	f.Add("weft_tcp_open_connections{direction=\"inbound\",service=\"a:80\"} -Inf\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, _, err := parseMetrics(strings.NewReader(in), "default")
		if err != nil {
			return
		}
		for k, s := range got {
			if k.service == "" {
				t.Errorf("series with empty service: %+v", s)
			}
			for _, v := range []float64{s.requests, s.success, s.failure} {
				if math.IsNaN(v) || v < 0 {
					t.Errorf("counter %v in %+v", v, s)
				}
			}
			if n := len(s.latency); n > 0 && !math.IsInf(s.latency[n-1].le, 1) {
				t.Errorf("histogram without +Inf bucket: %v", s.latency)
			}
			if !slices.IsSortedFunc(s.latency, func(a, b bucket) int { return cmpFloat(a.le, b.le) }) {
				t.Errorf("histogram buckets not sorted: %v", s.latency)
			}
			if v, ok := bucketQuantile(0.99, s.latency); ok && math.IsNaN(v) {
				t.Errorf("quantile of %v is NaN", s.latency)
			}
		}
	})
}
