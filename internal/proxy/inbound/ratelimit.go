package inbound

import (
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/resilience"
)

// This file applies the port's local rate limit (RateLimit of the inbound
// snapshot): a token bucket for every client, and one per override for
// the identities it names. A request over the limit is answered 429 with
// Retry-After (gRPC: RESOURCE_EXHAUSTED) and never reaches the
// application.

// limiter returns the compiled rate limit in force, recompiling it only
// when the snapshot's changed (the buckets keep their state otherwise).
func (s *Server) limiter() *resilience.Limiter {
	if s.cfg.RateLimit == nil {
		return nil
	}
	rl := s.cfg.RateLimit()
	cur := s.limit.Load()
	if cur != nil && cur.l.Same(rl) {
		return cur.l
	}
	next := &limiterBox{l: resilience.NewLimiter(rl, s.cfg.Service, nil)}
	if s.limit.CompareAndSwap(cur, next) {
		return next.l
	}
	return s.limit.Load().l
}

// limiterBox lets an atomic pointer hold a nil limiter.
type limiterBox struct{ l *resilience.Limiter }

// rateLimit takes a token for a request of peer ("" when unauthenticated);
// a non-nil error is the proxy's 429, counted in m.
func (s *Server) rateLimit(peer string, m *metrics.Service) error {
	l := s.limiter()
	if l == nil {
		return nil
	}
	err := l.Allow(peer)
	if err != nil {
		s.cfg.Metrics.Resilience(metrics.Inbound, s.cfg.Service).RateLimited()
		m.Response(proxyerr.From(err).Status, false, 0)
	}
	return err
}
