package push

import (
	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/resilience"
)

// This file compiles the policy.weft.dev kinds (RetryPolicy,
// CircuitBreaker, FaultInjection, RateLimit) into snapshots.
//
// A policy that targets a Service fills the destination's Resilience: the
// budget and circuit breaking, and default_retry / default_fault, which
// the proxy applies to requests that match no route rule or whose rule has
// no retry or fault of its own. A RetryPolicy naming a route, or a
// FaultInjection targeting an HTTPRoute or GRPCRoute, sets the retry or
// fault of that route's rules, overriding what the route said. When
// several policies of a kind target the same thing, the last applied wins.

// applyPolicies fills m, the destination snapshot of key whose routes are
// compiled, from the resilience policies in snap.
func applyPolicies(snap *config.Snapshot, key config.ServiceKey, m *meshv1.DestinationSnapshot) {
	var res *meshv1.Resilience
	get := func() *meshv1.Resilience {
		if res == nil {
			res = &meshv1.Resilience{}
		}
		return res
	}
	for i := range snap.Resources {
		r := &snap.Resources[i]
		p, ok := r.Spec.(resilience.Policy)
		if !ok {
			continue
		}
		t := p.Target()
		onService := (t.Kind == resilience.TargetService || t.Kind == "") && config.Key(t.Name, r.Namespace) == key
		switch spec := p.(type) {
		case *resilience.Retry:
			if !onService {
				continue
			}
			rp := retryProto(spec, r.ID())
			if spec.BudgetRatio > 0 || spec.BudgetMinPerSecond > 0 {
				get().BudgetRatio, get().BudgetMinPerSecond = spec.BudgetRatio, spec.BudgetMinPerSecond
			}
			if spec.Route == "" {
				get().DefaultRetry = rp
				continue
			}
			for _, rule := range m.GetRoutes() {
				if rule.GetRoute() == resilience.TargetHTTPRoute+"/"+r.Namespace+"/"+spec.Route ||
					rule.GetRoute() == resilience.TargetGRPCRoute+"/"+r.Namespace+"/"+spec.Route {
					rule.Retry = rp
				}
			}
		case *resilience.CircuitBreaker:
			if !onService {
				continue
			}
			x := get()
			x.Name = r.ID()
			x.ConsecutiveFailures = spec.ConsecutiveFailures
			x.BaseEjectionMs = spec.BaseEjectionTime.Milliseconds()
			x.MaxEjectionMs = spec.MaxEjectionTime.Milliseconds()
			x.MaxPendingRequests = spec.MaxPendingRequests
			x.MaxConnections = spec.MaxConnections
			x.IdleTimeoutMs = spec.IdleTimeout.Milliseconds()
		case *resilience.Fault:
			fp := &meshv1.FaultInjection{
				Name: r.ID(), PathPrefix: spec.PathPrefix,
				DelayPercent: spec.DelayPercent, DelayMs: spec.Delay.Milliseconds(),
				AbortPercent: spec.AbortPercent, AbortHttpStatus: spec.AbortHTTPStatus, AbortGrpcStatus: spec.AbortGRPCStatus,
			}
			if onService {
				get().DefaultFault = fp
				continue
			}
			for _, rule := range m.GetRoutes() {
				if rule.GetRoute() == t.Kind+"/"+r.Namespace+"/"+t.Name {
					rule.Fault = fp
				}
			}
		}
	}
	if res != nil {
		m.Resilience = res
	}
}

func retryProto(p *resilience.Retry, name string) *meshv1.RetryPolicy {
	return &meshv1.RetryPolicy{
		Name:             name,
		MaxAttempts:      p.MaxAttempts,
		PerTryTimeoutMs:  p.PerTryTimeout.Milliseconds(),
		Retryable:        p.Retryable,
		OnStatus:         p.OnStatus,
		OnGrpc:           p.OnGRPC,
		OnConnectFailure: p.OnConnectFailure,
		MaxBodyBytes:     p.MaxBodyBytes,
		BackoffBaseMs:    p.Backoff.Milliseconds(),
	}
}

// applyRateLimits sets the rate limit of every port of m, the inbound
// snapshot of a proxy of service key, from the RateLimit targeting key.
func applyRateLimits(snap *config.Snapshot, key config.ServiceKey, m *meshv1.InboundSnapshot) {
	var rl *meshv1.RateLimit
	for i := range snap.Resources {
		r := &snap.Resources[i]
		spec, ok := r.Spec.(*resilience.RateLimit)
		if !ok || config.Key(spec.TargetRef.Name, r.Namespace) != key {
			continue
		}
		rl = &meshv1.RateLimit{Name: r.ID(), RequestsPerSecond: spec.RequestsPerSecond, Burst: spec.Burst}
		for _, o := range spec.Overrides {
			rl.Overrides = append(rl.Overrides, &meshv1.RateLimitOverride{
				Identities: o.Clients, RequestsPerSecond: o.RequestsPerSecond, Burst: o.Burst,
			})
		}
	}
	if rl == nil {
		return
	}
	for _, p := range m.Ports {
		p.RateLimit = rl
	}
}
