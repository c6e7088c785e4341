package outbound

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/h2"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/resilience"
	"weft.dev/weft/internal/proxy/upstream"
)

// This file applies the destination's resilience (DestinationSnapshot.
// resilience and the route rules' retry and fault): retries within a
// budget, faults, the pending-request limit and failure accrual on
// responses.

// policy is the resilience in force with one applied snapshot. Its budget
// and gate carry state and survive snapshots that do not change them.
type policy struct {
	spec     *meshv1.Resilience
	budget   *resilience.Budget
	gate     *resilience.Gate
	conns    *resilience.ConnGate                 // nil when connections are not bounded
	idle     time.Duration                        // of client and upstream connections; 0: defaults
	def      ruleResilience                       // for requests no rule covers
	rules    map[*meshv1.RouteRule]ruleResilience // compiled once per snapshot
	counters *metrics.Resilience
}

// ruleResilience is the compiled retry and fault of one route rule.
type ruleResilience struct {
	retry *resilience.Retry
	fault *resilience.Fault
}

// compilePolicy returns the policy of snap, reusing old's stateful parts
// when their settings stay.
func (s *Server) compilePolicy(old *policy, snap *meshv1.DestinationSnapshot, service string) *policy {
	r := snap.GetResilience()
	p := &policy{
		spec:     r,
		def:      ruleResilience{resilience.NewRetry(r.GetDefaultRetry()), resilience.NewFault(r.GetDefaultFault(), nil)},
		rules:    map[*meshv1.RouteRule]ruleResilience{},
		counters: s.cfg.Metrics.Resilience(metrics.Outbound, service),
	}
	for _, rule := range snap.GetRoutes() {
		rr := p.def
		if rule.GetRetry() != nil {
			rr.retry = resilience.NewRetry(rule.GetRetry())
		}
		if rule.GetFault() != nil {
			rr.fault = resilience.NewFault(rule.GetFault(), nil)
		}
		p.rules[rule] = rr
	}
	if old != nil && old.spec.GetBudgetRatio() == r.GetBudgetRatio() && old.spec.GetBudgetMinPerSecond() == r.GetBudgetMinPerSecond() {
		p.budget = old.budget
	} else {
		p.budget = resilience.NewBudget(r.GetBudgetRatio(), r.GetBudgetMinPerSecond(), s.cfg.Balance.Now)
	}
	if old != nil && old.spec.GetMaxPendingRequests() == r.GetMaxPendingRequests() {
		p.gate = old.gate
	} else {
		p.gate = resilience.NewGate(r.GetMaxPendingRequests(), service)
	}
	if n := r.GetMaxConnections(); n > 0 {
		if old != nil && old.conns != nil && old.spec.GetMaxConnections() == n {
			p.conns = old.conns
		} else {
			p.conns = resilience.NewConnGate(n, service)
		}
	}
	p.idle = time.Duration(r.GetIdleTimeoutMs()) * time.Millisecond
	if old == nil || !proto.Equal(old.spec, r) {
		s.bal.SetAccrual(int(r.GetConsecutiveFailures()),
			time.Duration(r.GetBaseEjectionMs())*time.Millisecond, time.Duration(r.GetMaxEjectionMs())*time.Millisecond)
	}
	return p
}

// applyLimits gives the destination's upstreams its connection bound and
// idle timeout.
func (p *policy) applyLimits(ups map[string]*upstream.Upstream) {
	for _, u := range ups {
		if p.conns != nil {
			u.SetConnGate(p.conns)
		} else {
			u.SetConnGate(nil)
		}
		u.HTTP1.SetIdleTimeout(p.idle)
	}
}

// idleTimeout is the idle timeout of new client connections: the
// destination's, or 0 for the server's default.
func (s *Server) idleTimeout() time.Duration {
	if st := s.state.Load(); st != nil {
		return st.pol.idle
	}
	return 0
}

// of returns the retry and fault of a request matched by rule (nil: no
// rule matched): the rule's own, else the destination's defaults.
func (p *policy) of(rule *meshv1.RouteRule) ruleResilience {
	if rule != nil {
		if rr, ok := p.rules[rule]; ok {
			return rr
		}
	}
	return p.def
}

// onEject counts and logs ejections, then calls next if not nil.
func (s *Server) onEject(next func(string, time.Duration)) func(string, time.Duration) {
	return func(addr string, d time.Duration) {
		s.cfg.Metrics.Resilience(metrics.Outbound, s.Service()).Ejection()
		s.log.Info("endpoint ejected after consecutive failures", "endpoint", addr, "for", d)
		if next != nil {
			next(addr, d)
		}
	}
}

// admit applies the fault of the request's rule (rule nil: the
// destination's default) to a request to path (a delay, or an abort
// answered instead) and the pending-request limit. On failure it
// releases u; on success the request's end must call st.pol.gate.Leave
// (routeHTTP1 does).
func (s *Server) admit(st *state, u *upstream.Upstream, rule *meshv1.RouteRule, path string) error {
	p := st.pol
	if f := p.of(rule).fault; f != nil {
		d, abort := f.Decide(path)
		if d > 0 {
			time.Sleep(d)
		}
		if abort != nil {
			u.Release()
			return abort
		}
	}
	if err := p.gate.Enter(); err != nil {
		u.Release()
		return err
	}
	return nil
}

// accrue reports an attempt's outcome to the endpoint's failure accrual.
// A failed connect was counted by the upstream already.
// A connection limit of the proxy's own is not the endpoint's failure,
// nor is a client that went away.
func accrue(ep *balance.Endpoint, status int, err error) {
	// errors.AsType, unlike errors.As with a local target, does not move
	// a variable to the heap on every request.
	pe, isPE := errors.AsType[*proxyerr.Error](err)
	switch {
	case isPE:
		if strings.HasPrefix(pe.Reason, "connect to ") || strings.HasPrefix(pe.Reason, "circuit open") {
			return
		}
		ep.ResponseFailed()
	case status >= 500:
		ep.ResponseFailed()
	case status > 0:
		ep.ResponseSucceeded()
	}
}

// pickOther picks an endpoint for a retry among pk's (the rule's
// backends, else the destination's), preferring one not tried yet.
func (s *Server) pickOther(pk picker, tried []string) (*upstream.Upstream, error) {
	var fallback *upstream.Upstream
	for range 4 {
		_, u, err := s.pickWith(false, pk)
		if err != nil {
			break
		}
		if !contains(tried, u.Addr()) {
			if fallback != nil {
				fallback.Release()
			}
			return u, nil
		}
		if fallback == nil {
			fallback = u
		} else {
			u.Release()
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, errors.New("no endpoint to retry on")
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// routeHTTP1 is the HTTP/1.1 route of a request admitted by admit, whose
// first endpoint u is picked; tmpl gives every attempt its Edit and its
// timeout: tmpl.Timeout (0: none) bounds the whole request, retries
// included. With a retry policy (the rule's, else the default) failed
// attempts go again on other endpoints within the budget, each waiting at
// most the per-try timeout. finish is called once, when the request ends.
func (s *Server) routeHTTP1(st *state, u *upstream.Upstream, rule *meshv1.RouteRule, tmpl http1.Route, finish completion) http1.Route {
	p := st.pol
	retry := p.of(rule).retry
	if retry == nil {
		// The common case: one attempt, one closure.
		ep := u.Endpoint()
		start := ep.Start()
		r := tmpl
		r.Upstream = u.HTTP1
		r.Done = func(status int, err error) {
			u.Release()
			finishEndpoint(ep, start, err)
			accrue(ep, status, err)
			p.gate.Leave()
			finish.done(status, err)
		}
		return r
	}
	begin := time.Now()
	total := tmpl.Timeout
	// timeout returns an attempt's timeout and the reason of its 504:
	// the per-try timeout's ("upstream ... did not respond within"), or
	// the request's when less of it is left.
	timeout := func() (time.Duration, string) {
		pt := retry.PerTryTimeout()
		if total > 0 {
			left := max(total-time.Since(begin), time.Millisecond)
			if pt == 0 || left <= pt {
				reason := tmpl.TimeoutReason
				if reason == "" {
					reason = fmt.Sprintf("request to %s timed out after %s", st.service, total)
				}
				return left, reason
			}
		}
		return pt, ""
	}
	attempt := func(u *upstream.Upstream) http1.Route {
		ep := u.Endpoint()
		start := ep.Start()
		r := tmpl
		r.Upstream = u.HTTP1
		if retry != nil {
			r.Timeout, r.TimeoutReason = timeout()
		}
		r.Done = func(status int, err error) {
			u.Release()
			finishEndpoint(ep, start, err)
			accrue(ep, status, err)
			if !errors.Is(err, http1.ErrRetried) {
				p.gate.Leave()
				finish.done(status, err)
			}
		}
		return r
	}
	p.budget.Deposit()
	first := attempt(u)
	tried := []string{u.Addr()}
	first.Retry = &http1.Retry{MaxBodyBytes: retry.MaxBodyBytes(), Again: func(n int, a http1.Attempt) (http1.Route, bool) {
		o := resilience.Outcome{Status: a.Status, GRPCStatus: -1, Failed: a.Status == 0, Reached: a.Reached, TimedOut: a.TimedOut}
		if !retry.ShouldRetry(n, o) {
			return http1.Route{}, false
		}
		wait := retry.Backoff(n)
		if total > 0 && time.Since(begin)+wait >= total {
			return http1.Route{}, false // the request's time is up
		}
		if !p.budget.Withdraw() {
			p.counters.BudgetExhausted()
			return http1.Route{}, false
		}
		time.Sleep(wait)
		nu, err := s.pickOther(s.pickerOf(st, rule), tried)
		if err != nil {
			return http1.Route{}, false
		}
		tried = append(tried, nu.Addr())
		p.counters.Retry()
		next := attempt(nu)
		next.Retry = first.Retry
		return next, true
	}}
	return first
}

// targetH2 is the HTTP/2 target of a request admitted by admit, whose
// first endpoint u is picked; wrap, if not nil, makes an attempt's
// transport from its upstream's. With a retry policy (the rule's, else the
// default) failed attempts, including gRPC statuses of trailers-only
// answers, go again on other endpoints within the budget. finish is
// called once, when the request ends.
func (s *Server) targetH2(st *state, u *upstream.Upstream, rule *meshv1.RouteRule, wrap func(*upstream.Upstream) http.RoundTripper, finish func(h2.Result)) h2.Target {
	p := st.pol
	retry := p.of(rule).retry
	attempt := func(u *upstream.Upstream) h2.Target {
		ep := u.Endpoint()
		start := ep.Start()
		var rt http.RoundTripper = u.HTTP2()
		if wrap != nil {
			rt = wrap(u)
		}
		return h2.Target{Transport: rt, Addr: u.Addr(), Done: func(res h2.Result) {
			u.Release()
			finishEndpoint(ep, start, res.Err)
			accrueH2(ep, res)
			if !errors.Is(res.Err, h2.ErrRetried) {
				p.gate.Leave()
				finish(res)
			}
		}}
	}
	first := attempt(u)
	if retry == nil {
		return first
	}
	p.budget.Deposit()
	tried := []string{u.Addr()}
	first.Retry = &h2.Retry{MaxBodyBytes: retry.MaxBodyBytes(), PerTryTimeout: retry.PerTryTimeout(), Again: func(n int, a h2.Attempt) (h2.Target, bool) {
		o := resilience.Outcome{Status: a.Status, GRPCStatus: a.GRPCStatus, Failed: a.Status == 0, Reached: a.Reached, TimedOut: a.TimedOut}
		if !retry.ShouldRetry(n, o) {
			return h2.Target{}, false
		}
		if !p.budget.Withdraw() {
			p.counters.BudgetExhausted()
			return h2.Target{}, false
		}
		time.Sleep(retry.Backoff(n))
		nu, err := s.pickOther(s.pickerOf(st, rule), tried)
		if err != nil {
			return h2.Target{}, false
		}
		tried = append(tried, nu.Addr())
		p.counters.Retry()
		next := attempt(nu)
		next.Retry = first.Retry
		return next, true
	}}
	return first
}

// finishEndpoint is finish for the balancer alone.
// completion counts an HTTP/1 exchange in the destination's metrics (m)
// and, when it matched a route rule, the rule's (rm, nil otherwise), with
// its latency since start. It is a value captured by the one Done closure
// of each attempt, not a closure of its own: one allocation per request
// less.
type completion struct {
	m     *metrics.Service
	rm    *metrics.Route
	start time.Time
}

func (c completion) done(status int, err error) {
	failed, d := err != nil || status == 0 || status >= 500, time.Since(c.start)
	c.m.Response(status, failed, d)
	c.rm.Response(failed, d)
}

func finishEndpoint(ep *balance.Endpoint, start time.Time, err error) time.Duration {
	return finish(ep, start, err)
}

// accrueH2 reports an HTTP/2 exchange's outcome to failure accrual.
func accrueH2(ep *balance.Endpoint, res h2.Result) {
	switch {
	case res.ProxyError:
		accrue(ep, 0, res.Err)
	case res.Status >= 500 || res.GRPCStatus == resilience.GRPCUnavailable:
		ep.ResponseFailed()
	case res.Status > 0:
		ep.ResponseSucceeded()
	}
}
