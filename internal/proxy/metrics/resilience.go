package metrics

import "sync"

// resilienceVecs are the resilience counters of one Registry, registered
// on first use (most proxies never retry or rate limit).
type resilienceVecs struct {
	once      sync.Once
	retries   CounterVec
	exhausted CounterVec
	ejections CounterVec
	limited   CounterVec
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
		v.retries = r.CounterVec("weft_retries_total", "Requests sent again after a failed attempt.", labels...)
		v.exhausted = r.CounterVec("weft_retry_budget_exhausted_total", "Retries not sent because the retry budget was spent.", labels...)
		v.ejections = r.CounterVec("weft_endpoint_ejections_total", "Endpoints ejected by failure accrual (circuit breaking).", labels...)
		v.limited = r.CounterVec("weft_rate_limited_total", "Requests answered 429 by the local rate limit.", labels...)
	})
	k := serviceKey{dir, service}
	if s, ok := v.services.Load(k); ok {
		return s.(*Resilience)
	}
	d := string(dir)
	s := &Resilience{
		retries:   v.retries.With(d, service),
		exhausted: v.exhausted.With(d, service),
		ejections: v.ejections.With(d, service),
		limited:   v.limited.With(d, service),
	}
	got, _ := v.services.LoadOrStore(k, s)
	return got.(*Resilience)
}

// Resilience counts what the proxy's protections did for one direction
// and service.
type Resilience struct {
	retries, exhausted, ejections, limited Counter
}

// Retry counts a request sent again.
func (s *Resilience) Retry() { s.retries.Inc() }

// BudgetExhausted counts a retry refused by the budget.
func (s *Resilience) BudgetExhausted() { s.exhausted.Inc() }

// Ejection counts an endpoint ejected.
func (s *Resilience) Ejection() { s.ejections.Inc() }

// RateLimited counts a request answered 429.
func (s *Resilience) RateLimited() { s.limited.Inc() }
