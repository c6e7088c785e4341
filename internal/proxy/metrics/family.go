package metrics

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// The metric kinds of the Prometheus text format that the proxy uses.
const (
	kindCounter   = "counter"
	kindGauge     = "gauge"
	kindHistogram = "histogram"
)

// family is one metric name with its help, kind, label names and series.
type family struct {
	name, help, kind string
	labels           []string
	order            []int          // indices of labels, sorted by name: the exposition's order
	buckets          []float64      // upper bounds, histograms only
	fn               func() float64 // a value read at each scrape, no labels

	mu     sync.Mutex
	series map[string]*series // label values joined by 0xff
}

// series is one set of label values of a family. Counters and gauges
// keep their value as float64 bits; histograms count per bucket (the last
// is +Inf) and keep the sum of observations.
type series struct {
	values []string
	bits   atomic.Uint64
	counts []atomic.Uint64
	sum    atomic.Uint64
}

func (s *series) add(v float64) {
	for {
		old := s.bits.Load()
		if s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (s *series) value() float64 { return math.Float64frombits(s.bits.Load()) }

// with returns the series of values, creating it on first use. Callers
// resolve series once and keep them: this takes a lock.
func (f *family) with(values []string) *series {
	key := strings.Join(values, "\xff")
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.series[key]; ok {
		return s
	}
	s := &series{values: slices.Clone(values)}
	if f.kind == kindHistogram {
		s.counts = make([]atomic.Uint64, len(f.buckets)+1)
	}
	f.series[key] = s
	return s
}

// sorted returns the family's series ordered by label values.
func (f *family) sorted() []*series {
	f.mu.Lock()
	out := make([]*series, 0, len(f.series))
	for _, s := range f.series {
		out = append(out, s)
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].values, out[j].values
		for _, k := range f.order {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return false
	})
	return out
}

// Counter is a value that only goes up. The zero Counter is not usable;
// get one from a CounterVec.
type Counter struct{ s *series }

// Inc adds 1.
func (c Counter) Inc() { c.s.add(1) }

// Add adds v, which must not be negative.
func (c Counter) Add(v float64) { c.s.add(v) }

// Value is the current count.
func (c Counter) Value() float64 { return c.s.value() }

// Gauge is a value that goes up and down.
type Gauge struct{ s *series }

// Inc adds 1.
func (g Gauge) Inc() { g.s.add(1) }

// Dec subtracts 1.
func (g Gauge) Dec() { g.s.add(-1) }

// Value is the current value.
func (g Gauge) Value() float64 { return g.s.value() }

// Histogram counts observations in buckets.
type Histogram struct {
	s       *series
	buckets []float64
}

// Observe records v: it counts in the first bucket whose upper bound is at
// least v (the +Inf bucket if none), and adds v to the sum.
func (h Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.buckets, v)
	h.s.counts[i].Add(1)
	for {
		old := h.s.sum.Load()
		if h.s.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// CounterVec is a counter family with labels.
type CounterVec struct{ f *family }

// With returns the counter of the label values, in the order of the
// family's label names, creating it on first use.
func (v CounterVec) With(values ...string) Counter { return Counter{v.f.with(values)} }

// GaugeVec is a gauge family with labels.
type GaugeVec struct{ f *family }

// With returns the gauge of the label values.
func (v GaugeVec) With(values ...string) Gauge { return Gauge{v.f.with(values)} }

// HistogramVec is a histogram family with labels.
type HistogramVec struct{ f *family }

// With returns the histogram of the label values.
func (v HistogramVec) With(values ...string) Histogram {
	return Histogram{s: v.f.with(values), buckets: v.f.buckets}
}

// family returns the family called name, registering it on first use.
// A second registration of the same name returns the first family (one
// registry may serve several listeners of one kind), so a name means one
// kind and one set of labels throughout the proxy.
func (r *Registry) family(name, help, kind string, labels []string, buckets []float64, fn func() float64) *family {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		return f
	}
	f := &family{name: name, help: help, kind: kind, labels: labels, buckets: buckets, fn: fn, series: map[string]*series{}}
	f.order = make([]int, len(labels))
	for i := range f.order {
		f.order[i] = i
	}
	sort.SliceStable(f.order, func(i, j int) bool { return labels[f.order[i]] < labels[f.order[j]] })
	r.families[name] = f
	return f
}

// CounterVec returns the counter family name with the given label names.
func (r *Registry) CounterVec(name, help string, labels ...string) CounterVec {
	return CounterVec{r.family(name, help, kindCounter, labels, nil, nil)}
}

// GaugeVec returns the gauge family name with the given label names.
func (r *Registry) GaugeVec(name, help string, labels ...string) GaugeVec {
	return GaugeVec{r.family(name, help, kindGauge, labels, nil, nil)}
}

// HistogramVec returns the histogram family name with the given bucket
// upper bounds (ascending) and label names.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) HistogramVec {
	return HistogramVec{r.family(name, help, kindHistogram, labels, buckets, nil)}
}

// gaugeFunc registers a gauge without labels whose value fn gives at each
// scrape; counterFunc the same for a counter.
func (r *Registry) gaugeFunc(name, help string, fn func() float64) {
	r.family(name, help, kindGauge, nil, nil, fn)
}

func (r *Registry) counterFunc(name, help string, fn func() float64) {
	r.family(name, help, kindCounter, nil, nil, fn)
}
