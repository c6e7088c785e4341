package metricstest

import (
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"weft.dev/weft/internal/proxy/metrics"
)

// TestExpositionParses checks that the registry's whole text output, the
// Go runtime and process metrics included, is what Prometheus's own parser
// reads, with the values written.
func TestExpositionParses(t *testing.T) {
	r := metrics.New()
	s := r.Service(metrics.Outbound, `we"ird\name`+"\n.default")
	s.Request()
	for _, d := range []time.Duration{100 * time.Microsecond, 3 * time.Millisecond, 20 * time.Second} {
		s.Response(200, false, d)
	}
	s.TCPBytes(1500, 0)
	r.Route("api.default", "r0").Response(true, time.Millisecond)
	r.Resilience(metrics.Inbound, "api.default").RateLimited()
	fams, err := Gather(r)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}

	// Only the tls value used exists: the mutual TLS twin is made on
	// first use (checked at the end).
	req := byName["weft_requests_total"]
	if req.GetType() != dto.MetricType_COUNTER || len(req.GetMetric()) != 1 {
		t.Fatalf("weft_requests_total: %v", req)
	}
	plain := req.GetMetric()[0]
	if got := label(plain, "service"); got != `we"ird\name`+"\n.default" || label(plain, "tls") != "false" {
		t.Errorf("labels read back as %v", plain.GetLabel())
	}
	if v := plain.GetCounter().GetValue(); v != 1 {
		t.Errorf("requests = %v, want 1", v)
	}
	if v := byName["weft_tcp_read_bytes_total"].GetMetric()[0].GetCounter().GetValue(); v != 1500 {
		t.Errorf("read bytes = %v, want 1500", v)
	}

	h := byName["weft_response_latency_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 || math.Abs(h.GetSampleSum()-20.0031) > 1e-9 {
		t.Errorf("latency count %d sum %v, want 3 and 20.0031", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[float64]uint64{0.0005: 1, 0.001: 1, 0.0025: 1, 0.005: 2, 10: 2}
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if len(h.GetBucket()) != len(metrics.LatencyBuckets)+1 { // and +Inf
		t.Errorf("%d buckets, want %d", len(h.GetBucket()), len(metrics.LatencyBuckets)+1)
	}
	if byName["weft_route_responses_total"] == nil || byName["weft_rate_limited_total"] == nil {
		t.Error("route or resilience families missing")
	}

	gauge := func(name string) float64 {
		f := byName[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Errorf("%s missing", name)
			return 0
		}
		if f.GetType() == dto.MetricType_COUNTER {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	for _, name := range []string{"go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes",
		"go_sched_gomaxprocs_threads", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"} {
		if v := gauge(name); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if v := gauge("process_cpu_seconds_total"); v < 0 {
		t.Errorf("process_cpu_seconds_total = %v", v)
	}
	start := time.Unix(0, int64(gauge("process_start_time_seconds")*1e9))
	if since := time.Since(start); since < -time.Minute || since > 24*time.Hour {
		t.Errorf("process_start_time_seconds says the process started %v ago", since)
	}

	// The twin's series appear once it is used, with their own values.
	s.WithTLS(true).Request()
	s.WithTLS(true).Request()
	if fams, err = Gather(r); err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "weft_requests_total" {
			continue
		}
		got := map[string]float64{}
		for _, m := range f.GetMetric() {
			got[label(m, "tls")] = m.GetCounter().GetValue()
		}
		if len(got) != 2 || got["false"] != 1 || got["true"] != 2 {
			t.Errorf("weft_requests_total by tls: %v, want false 1 and true 2", got)
		}
	}
}
