package viz

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weft.dev/weft/internal/config"
)

// Metric names every proxy exposes at its admin port (see the proxy's
// metrics package); the scraper reads only these.
const (
	metricRequests    = "weft_requests_total"
	metricResponses   = "weft_responses_total"
	metricLatency     = "weft_response_latency_seconds"
	metricTCPOpen     = "weft_tcp_open_connections"
	metricStartTime   = "process_start_time_seconds"
	labelDirection    = "direction"
	labelService      = "service"
	labelClass        = "classification"
	classSuccess      = "success"
	classFailure      = "failure"
	directionInbound  = "inbound"
	directionOutbound = "outbound"
)

// direction of traffic as the proxy sees it.
type direction uint8

const (
	inbound direction = iota
	outbound
)

// seriesKey names the metrics of one direction and service of one proxy.
type seriesKey struct {
	dir     direction
	service config.ServiceKey
}

// series holds the values of one seriesKey in one scrape.
type series struct {
	requests float64
	success  float64
	failure  float64
	// latency buckets ascending by upper bound, always ending with +Inf.
	latency []bucket
	tcpOpen float64
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// sample is what one successful scrape of one proxy returned. A sample is
// never modified once built, so readers may share it without locking.
type sample struct {
	at time.Time
	// start is process_start_time_seconds, 0 when the proxy does not
	// expose it; a change means the proxy restarted.
	start  float64
	series map[seriesKey]*series
}

// parseMetrics reads a Prometheus text exposition and keeps the Weft
// series. proxyNS resolves service labels that carry no namespace.
// Series with other labels or non-finite values are skipped, never an
// error: one odd line must not hide a proxy's other numbers.
func parseMetrics(r io.Reader, proxyNS string) (map[seriesKey]*series, float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, 0, fmt.Errorf("parse metrics: %w", err)
	}
	out := make(map[seriesKey]*series)
	get := func(m *dto.Metric) *series {
		k, ok := keyOf(m, proxyNS)
		if !ok {
			return nil
		}
		s := out[k]
		if s == nil {
			s = &series{}
			out[k] = s
		}
		return s
	}
	for _, m := range fams[metricRequests].GetMetric() {
		if v, ok := counterValue(m); ok {
			if s := get(m); s != nil {
				s.requests += v
			}
		}
	}
	for _, m := range fams[metricResponses].GetMetric() {
		v, ok := counterValue(m)
		if !ok {
			continue
		}
		class := label(m, labelClass)
		if class != classSuccess && class != classFailure {
			continue
		}
		if s := get(m); s != nil {
			if class == classSuccess {
				s.success += v
			} else {
				s.failure += v
			}
		}
	}
	for _, m := range fams[metricLatency].GetMetric() {
		b, ok := histogramBuckets(m.GetHistogram())
		if !ok {
			continue
		}
		if s := get(m); s != nil {
			s.latency = mergeBuckets(s.latency, b)
		}
	}
	for _, m := range fams[metricTCPOpen].GetMetric() {
		if v, ok := gaugeValue(m); ok {
			if s := get(m); s != nil {
				s.tcpOpen += v
			}
		}
	}
	var start float64
	for _, m := range fams[metricStartTime].GetMetric() {
		if v, ok := gaugeValue(m); ok {
			start = v
		}
	}
	return out, start, nil
}

// keyOf reads the direction and service labels of m.
func keyOf(m *dto.Metric, proxyNS string) (seriesKey, bool) {
	var k seriesKey
	switch label(m, labelDirection) {
	case directionInbound:
		k.dir = inbound
	case directionOutbound:
		k.dir = outbound
	default:
		return k, false
	}
	svc := label(m, labelService)
	if svc == "" {
		return k, false
	}
	k.service = config.ParseAuthority(svc, proxyNS)
	return k, true
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// counterValue accepts counters and untyped values (an exposition without
// TYPE lines); a counter is never negative or non-finite.
func counterValue(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Counter != nil:
		v = m.GetCounter().GetValue()
	case m.Untyped != nil:
		v = m.GetUntyped().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false
	}
	return v, true
}

func gaugeValue(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Gauge != nil:
		v = m.GetGauge().GetValue()
	case m.Untyped != nil:
		v = m.GetUntyped().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// histogramBuckets returns h's cumulative buckets sorted by upper bound,
// with a +Inf bucket holding the sample count when h lists none.
func histogramBuckets(h *dto.Histogram) ([]bucket, bool) {
	if h == nil {
		return nil, false
	}
	total := float64(h.GetSampleCount())
	if h.SampleCountFloat != nil {
		total = h.GetSampleCountFloat()
	}
	out := make([]bucket, 0, len(h.GetBucket())+1)
	hasInf := false
	for _, b := range h.GetBucket() {
		le := b.GetUpperBound()
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		if math.IsNaN(le) || math.IsInf(le, -1) || math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
			return nil, false
		}
		if math.IsInf(le, +1) {
			hasInf = true
		}
		out = append(out, bucket{le: le, count: c})
	}
	if !hasInf {
		if math.IsNaN(total) || math.IsInf(total, 0) || total < 0 {
			return nil, false
		}
		out = append(out, bucket{le: math.Inf(+1), count: total})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return out, true
}

// mergeBuckets adds the cumulative counts of b into a, bucket by upper
// bound; both are sorted and the result is too. It never modifies its
// inputs but may return b itself, so callers must not modify results in
// place either.
func mergeBuckets(a, b []bucket) []bucket {
	if len(a) == 0 {
		return b
	}
	out := make([]bucket, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].le < b[j].le):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].le < a[i].le:
			out = append(out, b[j])
			j++
		default:
			out = append(out, bucket{le: a[i].le, count: a[i].count + b[j].count})
			i++
			j++
		}
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
