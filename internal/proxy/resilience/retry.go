package resilience

import (
	"math/rand/v2"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
)

// Retry defaults.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultBackoffBase  = 25 * time.Millisecond
	maxBackoff          = time.Second
)

// Retry is a compiled RetryPolicy: when an attempt that failed may be sent
// again. It is immutable.
type Retry struct {
	name         string
	maxAttempts  int
	perTry       time.Duration
	retryable    bool
	statuses     map[int]bool
	grpc         map[int]bool
	maxBodyBytes int64
	backoffBase  time.Duration
}

// NewRetry compiles p; nil when p allows no retries (nil, or at most one
// attempt) and sets no per-try timeout.
func NewRetry(p *meshv1.RetryPolicy) *Retry {
	if p == nil || p.GetMaxAttempts() <= 1 && p.GetPerTryTimeoutMs() <= 0 {
		return nil
	}
	r := &Retry{
		name:         p.GetName(),
		maxAttempts:  max(1, int(p.GetMaxAttempts())),
		perTry:       time.Duration(p.GetPerTryTimeoutMs()) * time.Millisecond,
		retryable:    p.GetRetryable(),
		statuses:     map[int]bool{},
		grpc:         map[int]bool{},
		maxBodyBytes: int64(p.GetMaxBodyBytes()),
		backoffBase:  time.Duration(p.GetBackoffBaseMs()) * time.Millisecond,
	}
	for _, s := range p.GetOnStatus() {
		r.statuses[int(s)] = true
	}
	for _, c := range p.GetOnGrpc() {
		r.grpc[int(c)] = true
	}
	if r.maxBodyBytes <= 0 {
		r.maxBodyBytes = DefaultMaxBodyBytes
	}
	if r.backoffBase <= 0 {
		r.backoffBase = DefaultBackoffBase
	}
	return r
}

// MaxAttempts returns the number of attempts including the first.
func (r *Retry) MaxAttempts() int { return r.maxAttempts }

// PerTryTimeout bounds each attempt's wait for the response head; 0 is
// none.
func (r *Retry) PerTryTimeout() time.Duration { return r.perTry }

// MaxBodyBytes is the largest request body buffered for a retry; larger
// bodies are streamed and never retried.
func (r *Retry) MaxBodyBytes() int64 { return r.maxBodyBytes }

// Name of the policy, for logs.
func (r *Retry) Name() string { return r.name }

// Outcome is how one attempt ended.
type Outcome struct {
	// Status of the upstream's response head; 0 when none came.
	Status int
	// GRPCStatus of a trailers-only response; -1 when none.
	GRPCStatus int
	// Failed is true when no response came: Status is 0 and the proxy
	// would answer the failure itself.
	Failed bool
	// Reached is false when the request surely never reached the
	// application: the connect failed, or the stream was refused.
	Reached bool
	// TimedOut is true when the per-try timeout passed.
	TimedOut bool
}

// ShouldRetry reports whether attempt n (1-based) that ended with o may be
// sent again, before the budget is asked. A request that never reached the
// application is always safe to send again; one that did only when the
// policy declares the route retryable and the condition is listed.
func (r *Retry) ShouldRetry(n int, o Outcome) bool {
	if r == nil || n >= r.maxAttempts {
		return false
	}
	if o.Failed && !o.Reached {
		return true
	}
	if !r.retryable {
		return false
	}
	switch {
	case o.TimedOut:
		return r.statuses[504]
	case o.Failed:
		// The upstream broke before answering: a gateway error.
		return r.statuses[502]
	case o.GRPCStatus > 0:
		return r.grpc[o.GRPCStatus]
	}
	return r.statuses[o.Status]
}

// Backoff returns the jittered wait before attempt n+1 (n >= 1):
// base*2^(n-1), times a random factor in [0.5, 1.5), at most 1s.
func (r *Retry) Backoff(n int) time.Duration {
	d := r.backoffBase << min(n-1, 16)
	d = min(d, maxBackoff)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
