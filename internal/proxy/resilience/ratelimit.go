package resilience

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/proxyerr"
)

// GRPCResourceExhausted is the gRPC status of a rate-limited call.
const GRPCResourceExhausted = 8

// Limiter is the local rate limit of one inbound port: one bucket for
// every client, and one bucket per override for the identities it names.
type Limiter struct {
	spec     *meshv1.RateLimit
	name     string
	service  string
	all      *Bucket
	byClient map[string]*Bucket // SPIFFE ID -> its override's bucket
}

// NewLimiter compiles rl for the inbound side of service; nil when rl is
// nil or sets no rate.
func NewLimiter(rl *meshv1.RateLimit, service string, now func() time.Time) *Limiter {
	if rl == nil || rl.GetRequestsPerSecond() <= 0 {
		return nil
	}
	l := &Limiter{spec: rl, name: rl.GetName(), service: service, byClient: map[string]*Bucket{},
		all: NewBucket(rl.GetRequestsPerSecond(), rl.GetBurst(), now)}
	if l.name == "" {
		l.name = "the rate limit of " + service
	}
	for _, o := range rl.GetOverrides() {
		b := NewBucket(o.GetRequestsPerSecond(), o.GetBurst(), now)
		for _, id := range o.GetIdentities() {
			l.byClient[id] = b
		}
	}
	return l
}

// Same reports whether l was compiled from a RateLimit equal to rl, so
// that an unchanged snapshot keeps the buckets' state.
func (l *Limiter) Same(rl *meshv1.RateLimit) bool {
	if l == nil {
		return rl == nil || rl.GetRequestsPerSecond() <= 0
	}
	return proto.Equal(l.spec, rl)
}

// Allow takes a token for a request from client (its SPIFFE ID, "" when
// unauthenticated). When the bucket is empty it returns the proxy's 429
// answer, with Retry-After in whole seconds (at least 1).
func (l *Limiter) Allow(client string) error {
	if l == nil {
		return nil
	}
	b, override := l.byClient[client], true
	if client == "" || b == nil {
		b, override = l.all, false
	}
	ok, wait := b.Take()
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	who := "every client"
	if override {
		who = client
	}
	return &proxyerr.Error{
		Status: http.StatusTooManyRequests,
		Reason: fmt.Sprintf("rate limited by %s: more than %g requests per second to %s from %s; retry after %ds",
			l.name, b.rate, l.service, who, secs),
		GRPCStatus: GRPCResourceExhausted,
		RetryAfter: secs,
	}
}
