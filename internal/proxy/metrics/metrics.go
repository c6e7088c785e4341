// Package metrics holds the proxy's Prometheus metrics, in a registry of its
// own (never the global one), served by the admin server at /metrics.
//
// The hot path never looks a metric up by labels: Registry.Service returns
// a *Service with counters resolved once per (direction, service, tls), and
// a Service resolves each status code's counters once and caches them.
//
// Every traffic metric carries tls="true" when the connection between the
// proxies was mutual TLS and tls="false" otherwise (plaintext from an
// unmeshed client, or to an unmeshed destination). The proxy's certificate
// is described by weft_identity_cert_expiry_timestamp_seconds and
// weft_identity_renewals_total (see RegisterIdentity).
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

// Passthrough is the service label of captured connections to
// destinations the mesh does not know, forwarded unchanged (TCP metrics
// only).
const Passthrough = "passthrough"

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
	labels := []string{"direction", "service", "tls"}
	r := &Registry{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_requests_total", Help: "Requests received, by direction and service.",
		}, labels),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_responses_total", Help: "Responses sent, by status code and classification (failure: 5xx, a proxy error, or grpc-status other than 0).",
		}, []string{"direction", "service", "tls", "status_code", "classification"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_response_latency_seconds", Help: "Time from a request's head to the end of its response.", Buckets: LatencyBuckets,
		}, labels),
		tcpOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_tcp_open_connections", Help: "TCP connections currently open (HTTP and opaque).",
		}, labels),
		tcpOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_open_total", Help: "TCP connections opened (HTTP and opaque).",
		}, labels),
		tcpCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_close_total", Help: "TCP connections closed (HTTP and opaque).",
		}, labels),
		tcpRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_read_bytes_total", Help: "Bytes read from the downstream side of TCP connections.",
		}, labels),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_write_bytes_total", Help: "Bytes written to the downstream side of TCP connections.",
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

// Service returns the metrics of one (direction, service) pair for
// plaintext traffic (tls="false"), creating them on first use; WithTLS
// gives its twin. Callers keep the result rather than calling Service per
// request.
func (r *Registry) Service(dir Direction, service string) *Service {
	k := serviceKey{dir, service}
	if s, ok := r.services.Load(k); ok {
		return s.(*Service)
	}
	plain, tls := r.newService(dir, service, "false"), r.newService(dir, service, "true")
	plain.twin, tls.twin = tls, plain
	got, _ := r.services.LoadOrStore(k, plain)
	return got.(*Service)
}

func (r *Registry) newService(dir Direction, service, tls string) *Service {
	d, svc := string(dir), service
	return &Service{
		r: r, dir: d, service: svc, tls: tls,
		requests:  r.requests.WithLabelValues(d, svc, tls),
		latency:   r.latency.WithLabelValues(d, svc, tls),
		tcpOpen:   r.tcpOpen.WithLabelValues(d, svc, tls),
		tcpOpens:  r.tcpOpens.WithLabelValues(d, svc, tls),
		tcpCloses: r.tcpCloses.WithLabelValues(d, svc, tls),
		tcpRead:   r.tcpRead.WithLabelValues(d, svc, tls),
		tcpWrite:  r.tcpWrite.WithLabelValues(d, svc, tls),
	}
}

// WithTLS returns the metrics of the same direction and service for
// traffic over mutual TLS (tls true) or not.
func (s *Service) WithTLS(tls bool) *Service {
	if tls == (s.tls == "true") {
		return s
	}
	return s.twin
}

// maxCode bounds the cached status codes; codes outside [0, maxCode) are
// counted under "other" so a misbehaving upstream cannot grow the label set.
const maxCode = 600

// Service is the metrics of one direction, service and tls label,
// resolved once.
type Service struct {
	r            *Registry
	dir, service string
	tls          string   // label value, "true" or "false"
	twin         *Service // the same metrics with the other tls value
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
		success: s.r.responses.WithLabelValues(s.dir, s.service, s.tls, label, "success"),
		failure: s.r.responses.WithLabelValues(s.dir, s.service, s.tls, label, "failure"),
	}
	s.codes[i].CompareAndSwap(nil, cc)
	return s.codes[i].Load()
}

// TCPOpen counts a connection opened (HTTP or opaque).
func (s *Service) TCPOpen() {
	s.tcpOpens.Inc()
	s.tcpOpen.Inc()
}

// TCPClose counts a connection closed after read bytes came from
// downstream and written bytes went to it.
func (s *Service) TCPClose(read, written int64) {
	// The close count last: a scrape that sees the close also sees its
	// bytes and the open gauge down.
	s.TCPBytes(read, written)
	s.tcpOpen.Dec()
	s.tcpCloses.Inc()
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
