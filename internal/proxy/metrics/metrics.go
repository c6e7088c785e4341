// Package metrics holds the proxy's Prometheus metrics, in a registry of its
// own (never the global one), served by the admin server at /metrics.
//
// The hot path never looks a metric up by labels: Registry.Service returns
// a *Service with counters resolved once per (direction, service), and a
// Service resolves each status code's counters once and caches them.
//
// Any proxy package may import metrics. All methods are safe for
// concurrent use.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Direction of traffic relative to the workload.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// LatencyBuckets are the response latency histogram's bucket bounds, in
// seconds: 0.5 ms to 10 s.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Registry is the set of the proxy's metrics.
type Registry struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	tcpOpen   *prometheus.GaugeVec
	tcpOpens  *prometheus.CounterVec
	tcpCloses *prometheus.CounterVec
	tcpRead   *prometheus.CounterVec
	tcpWrite  *prometheus.CounterVec

	services sync.Map // serviceKey -> *Service
}

type serviceKey struct {
	dir     Direction
	service string
}

// New returns a Registry with every metric registered, plus the Go runtime
// and process collectors.
func New() *Registry {
	labels := []string{"direction", "service"}
	r := &Registry{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_requests_total", Help: "Requests received, by direction and service.",
		}, labels),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_responses_total", Help: "Responses sent, by status code and classification (failure: 5xx, a proxy error, or grpc-status other than 0).",
		}, []string{"direction", "service", "status_code", "classification"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_response_latency_seconds", Help: "Time from a request's head to the end of its response.", Buckets: LatencyBuckets,
		}, labels),
		tcpOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_tcp_open_connections", Help: "Opaque TCP connections currently open.",
		}, labels),
		tcpOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_open_total", Help: "Opaque TCP connections opened.",
		}, labels),
		tcpCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_close_total", Help: "Opaque TCP connections closed.",
		}, labels),
		tcpRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_read_bytes_total", Help: "Bytes read from the downstream side of opaque TCP connections.",
		}, labels),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_write_bytes_total", Help: "Bytes written to the downstream side of opaque TCP connections.",
		}, labels),
	}
	r.reg.MustRegister(r.requests, r.responses, r.latency, r.tcpOpen, r.tcpOpens, r.tcpCloses, r.tcpRead, r.tcpWrite,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Gatherer exposes the registry, for tests and for embedding.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Service returns the metrics of one (direction, service) pair, creating
// them on first use. Callers keep the result rather than calling Service
// per request.
func (r *Registry) Service(dir Direction, service string) *Service {
	k := serviceKey{dir, service}
	if s, ok := r.services.Load(k); ok {
		return s.(*Service)
	}
	d, svc := string(dir), service
	s := &Service{
		r: r, dir: d, service: svc,
		requests:  r.requests.WithLabelValues(d, svc),
		latency:   r.latency.WithLabelValues(d, svc),
		tcpOpen:   r.tcpOpen.WithLabelValues(d, svc),
		tcpOpens:  r.tcpOpens.WithLabelValues(d, svc),
		tcpCloses: r.tcpCloses.WithLabelValues(d, svc),
		tcpRead:   r.tcpRead.WithLabelValues(d, svc),
		tcpWrite:  r.tcpWrite.WithLabelValues(d, svc),
	}
	got, _ := r.services.LoadOrStore(k, s)
	return got.(*Service)
}

// maxCode bounds the cached status codes; codes outside [0, maxCode) are
// counted under "other" so a misbehaving upstream cannot grow the label set.
const maxCode = 600

// Service is the metrics of one direction and service, resolved once.
type Service struct {
	r            *Registry
	dir, service string
	requests     prometheus.Counter
	latency      prometheus.Observer
	tcpOpen      prometheus.Gauge
	tcpOpens     prometheus.Counter
	tcpCloses    prometheus.Counter
	tcpRead      prometheus.Counter
	tcpWrite     prometheus.Counter
	codes        [maxCode + 1]atomic.Pointer[codeCounters]
}

type codeCounters struct {
	success, failure prometheus.Counter
}

// Request counts a request received.
func (s *Service) Request() { s.requests.Inc() }

// Response counts a response with status code (0 when none was sent) and
// its classification, and observes its latency.
func (s *Service) Response(code int, failure bool, latency time.Duration) {
	cc := s.code(code)
	if failure {
		cc.failure.Inc()
	} else {
		cc.success.Inc()
	}
	s.latency.Observe(latency.Seconds())
}

func (s *Service) code(code int) *codeCounters {
	i := code
	if i < 0 || i >= maxCode {
		i = maxCode
	}
	if cc := s.codes[i].Load(); cc != nil {
		return cc
	}
	label := strconv.Itoa(code)
	if i == maxCode {
		label = "other"
	}
	cc := &codeCounters{
		success: s.r.responses.WithLabelValues(s.dir, s.service, label, "success"),
		failure: s.r.responses.WithLabelValues(s.dir, s.service, label, "failure"),
	}
	s.codes[i].CompareAndSwap(nil, cc)
	return s.codes[i].Load()
}

// TCPOpen counts an opaque connection opened.
func (s *Service) TCPOpen() {
	s.tcpOpens.Inc()
	s.tcpOpen.Inc()
}

// TCPClose counts an opaque connection closed after read bytes came from
// downstream and written bytes went to it.
func (s *Service) TCPClose(read, written int64) {
	s.tcpCloses.Inc()
	s.tcpOpen.Dec()
	s.TCPBytes(read, written)
}

// TCPBytes adds bytes read from and written to downstream.
func (s *Service) TCPBytes(read, written int64) {
	if read > 0 {
		s.tcpRead.Add(float64(read))
	}
	if written > 0 {
		s.tcpWrite.Add(float64(written))
	}
}
