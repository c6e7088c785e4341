// Package metrics holds the proxy's Prometheus metrics, in a registry of its
// own, served by the admin server at /metrics in the Prometheus text format.
// It is its own small implementation (counters, gauges, histograms and the
// Go runtime's and process's metrics), not the Prometheus client library,
// whose dependencies were close to 1 MB of the proxy's resident code
// (docs/performance.md).
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
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
	mu       sync.Mutex
	families map[string]*family

	requests  CounterVec
	responses CounterVec
	latency   HistogramVec
	tcpOpen   GaugeVec
	tcpOpens  CounterVec
	tcpCloses CounterVec
	tcpRead   CounterVec
	tcpWrite  CounterVec

	services sync.Map // serviceKey -> *Service
}

type serviceKey struct {
	dir     Direction
	service string
}

// New returns a Registry with every metric registered, plus the Go runtime
// and process metrics.
func New() *Registry {
	labels := []string{"direction", "service", "tls"}
	r := &Registry{families: map[string]*family{}}
	r.requests = r.CounterVec("weft_requests_total", "Requests received, by direction and service.", labels...)
	r.responses = r.CounterVec("weft_responses_total", "Responses sent, by status code and classification (failure: 5xx, a proxy error, or grpc-status other than 0).",
		"direction", "service", "tls", "status_code", "classification")
	r.latency = r.HistogramVec("weft_response_latency_seconds", "Time from a request's head to the end of its response.", LatencyBuckets, labels...)
	r.tcpOpen = r.GaugeVec("weft_tcp_open_connections", "TCP connections currently open (HTTP and opaque).", labels...)
	r.tcpOpens = r.CounterVec("weft_tcp_open_total", "TCP connections opened (HTTP and opaque).", labels...)
	r.tcpCloses = r.CounterVec("weft_tcp_close_total", "TCP connections closed (HTTP and opaque).", labels...)
	r.tcpRead = r.CounterVec("weft_tcp_read_bytes_total", "Bytes read from the downstream side of TCP connections.", labels...)
	r.tcpWrite = r.CounterVec("weft_tcp_write_bytes_total", "Bytes written to the downstream side of TCP connections.", labels...)
	r.registerRuntime()
	return r
}

// Service returns the metrics of one (direction, service) pair for
// plaintext traffic (tls="false"), creating them on first use; WithTLS
// gives its twin. Callers keep the result rather than calling Service per
// request.
func (r *Registry) Service(dir Direction, service string) *Service {
	k := serviceKey{dir, service}
	if s, ok := r.services.Load(k); ok {
		return s.(*Service)
	}
	got, _ := r.services.LoadOrStore(k, r.newService(dir, service, "false"))
	return got.(*Service)
}

func (r *Registry) newService(dir Direction, service, tls string) *Service {
	d, svc := string(dir), service
	return &Service{
		r: r, dir: d, service: svc, tls: tls,
		requests:  r.requests.With(d, svc, tls),
		latency:   r.latency.With(d, svc, tls),
		tcpOpen:   r.tcpOpen.With(d, svc, tls),
		tcpOpens:  r.tcpOpens.With(d, svc, tls),
		tcpCloses: r.tcpCloses.With(d, svc, tls),
		tcpRead:   r.tcpRead.With(d, svc, tls),
		tcpWrite:  r.tcpWrite.With(d, svc, tls),
	}
}

// WithTLS returns the metrics of the same direction and service for
// traffic over mutual TLS (tls true) or not. The twin and its series are
// made on first use: a destination outside the mesh, reached only in
// plaintext, has no tls="true" series, which halves the series, and the
// exposition, of a proxy calling many such destinations. Callers that
// know a destination is meshed ask for the twin up front, so that its
// series start at zero before the first request.
func (s *Service) WithTLS(tls bool) *Service {
	if tls == (s.tls == "true") {
		return s
	}
	if t := s.twin.Load(); t != nil {
		return t
	}
	other := "true"
	if s.tls == "true" {
		other = "false"
	}
	// Two callers racing make the same series (a family returns the
	// existing series of the same labels); one Service is kept.
	t := s.r.newService(Direction(s.dir), s.service, other)
	t.twin.Store(s)
	if s.twin.CompareAndSwap(nil, t) {
		return t
	}
	return s.twin.Load()
}

// maxCode bounds the cached status codes; codes outside [0, maxCode) are
// counted under "other" so a misbehaving upstream cannot grow the label set.
const maxCode = 600

// Service is the metrics of one direction, service and tls label,
// resolved once.
type Service struct {
	r            *Registry
	dir, service string
	tls          string                  // label value, "true" or "false"
	twin         atomic.Pointer[Service] // the same metrics with the other tls value, made on first use
	requests     Counter
	latency      Histogram
	tcpOpen      Gauge
	tcpOpens     Counter
	tcpCloses    Counter
	tcpRead      Counter
	tcpWrite     Counter
	// codes holds the status codes seen so far, sorted, replaced whole
	// when one is added (under addCode): a few entries per service, where
	// an array indexed by code cost 4.8 KB per Service, twice per
	// destination (docs/performance.md, "Proxy memory in a 1,000-service
	// mesh").
	codes   atomic.Pointer[[]codeEntry]
	addCode sync.Mutex
}

type codeCounters struct {
	success, failure Counter
}

// codeEntry is the counters of one status code (maxCode for "other").
type codeEntry struct {
	code int
	cc   *codeCounters
}

// findCode returns the counters of code in es, sorted by code, or nil.
func findCode(es []codeEntry, code int) *codeCounters {
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].code < code {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) && es[lo].code == code {
		return es[lo].cc
	}
	return nil
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
	if es := s.codes.Load(); es != nil {
		if cc := findCode(*es, i); cc != nil {
			return cc
		}
	}
	s.addCode.Lock()
	defer s.addCode.Unlock()
	var cur []codeEntry
	if es := s.codes.Load(); es != nil {
		cur = *es
		if cc := findCode(cur, i); cc != nil {
			return cc
		}
	}
	label := strconv.Itoa(code)
	if i == maxCode {
		label = "other"
	}
	cc := &codeCounters{
		success: s.r.responses.With(s.dir, s.service, s.tls, label, "success"),
		failure: s.r.responses.With(s.dir, s.service, s.tls, label, "failure"),
	}
	at := 0
	for at < len(cur) && cur[at].code < i {
		at++
	}
	next := make([]codeEntry, 0, len(cur)+1)
	next = append(append(append(next, cur[:at]...), codeEntry{i, cc}), cur[at:]...)
	s.codes.Store(&next)
	return cc
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
