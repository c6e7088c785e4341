package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// resilienceVecs are the resilience counters of one Registry, registered
// on first use (most proxies never retry or rate limit).
type resilienceVecs struct {
	once      sync.Once
	retries   *prometheus.CounterVec
	exhausted *prometheus.CounterVec
	ejections *prometheus.CounterVec
	limited   *prometheus.CounterVec
	services  sync.Map // serviceKey -> *Resilience
}

// byRegistry maps a *Registry to its *resilienceVecs. Registries live as
// long as their proxy; tests create a few.
var byRegistry sync.Map

// Resilience returns the resilience counters of one (direction, service),
// resolved once; callers keep the result.
func (r *Registry) Resilience(dir Direction, service string) *Resilience {
	vv, _ := byRegistry.LoadOrStore(r, &resilienceVecs{})
	v := vv.(*resilienceVecs)
	v.once.Do(func() {
		labels := []string{"direction", "service"}
		v.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_retries_total", Help: "Requests sent again after a failed attempt.",
		}, labels)
		v.exhausted = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_retry_budget_exhausted_total", Help: "Retries not sent because the retry budget was spent.",
		}, labels)
		v.ejections = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_endpoint_ejections_total", Help: "Endpoints ejected by failure accrual (circuit breaking).",
		}, labels)
		v.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_rate_limited_total", Help: "Requests answered 429 by the local rate limit.",
		}, labels)
		r.reg.MustRegister(v.retries, v.exhausted, v.ejections, v.limited)
	})
	k := serviceKey{dir, service}
	if s, ok := v.services.Load(k); ok {
		return s.(*Resilience)
	}
	d := string(dir)
	s := &Resilience{
		retries:   v.retries.WithLabelValues(d, service),
		exhausted: v.exhausted.WithLabelValues(d, service),
		ejections: v.ejections.WithLabelValues(d, service),
		limited:   v.limited.WithLabelValues(d, service),
	}
	got, _ := v.services.LoadOrStore(k, s)
	return got.(*Resilience)
}

// Resilience counts what the proxy's protections did for one direction
// and service.
type Resilience struct {
	retries, exhausted, ejections, limited prometheus.Counter
}

// Retry counts a request sent again.
func (s *Resilience) Retry() { s.retries.Inc() }

// BudgetExhausted counts a retry refused by the budget.
func (s *Resilience) BudgetExhausted() { s.exhausted.Inc() }

// Ejection counts an endpoint ejected.
func (s *Resilience) Ejection() { s.ejections.Inc() }

// RateLimited counts a request answered 429.
func (s *Resilience) RateLimited() { s.limited.Inc() }
