// Package resilience holds Weft's own resilience policy kinds (group
// policy.weft.dev, version v1alpha1) as the control plane understands
// them, free of any document format: RetryPolicy, CircuitBreaker,
// FaultInjection and RateLimit. Configuration sources decode documents
// into these types, the memory store checks their targets with Check, and
// the push server compiles them into destination and inbound snapshots.
//
// Any control-plane or configuration package may import resilience; the
// proxy does not. Values are plain data and must not be modified once in
// a snapshot. Functions are safe for concurrent use.
package resilience

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
)

// Group, version and kinds.
const (
	Group      = "policy.weft.dev"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version

	KindRetry          = "RetryPolicy"
	KindCircuitBreaker = "CircuitBreaker"
	KindFault          = "FaultInjection"
	KindRateLimit      = "RateLimit"
)

// Target kinds.
const (
	TargetService   = "Service"
	TargetHTTPRoute = "HTTPRoute"
	TargetGRPCRoute = "GRPCRoute"
)

// TargetRef names what a policy applies to, in the policy's namespace.
type TargetRef struct {
	// Kind is TargetService, or for a FaultInjection also TargetHTTPRoute
	// or TargetGRPCRoute.
	Kind string
	Name string
}

// Policy is implemented by every kind of this package.
type Policy interface {
	// Target returns what the policy applies to.
	Target() TargetRef
}

// Retry is a RetryPolicy: retries of requests to a Service (optionally
// only those matched by one route's rules) and the Service's budget.
type Retry struct {
	TargetRef TargetRef
	// Route, if not "", limits the policy to the rules of the HTTPRoute
	// or GRPCRoute of that name.
	Route       string
	MaxAttempts uint32
	// PerTryTimeout bounds each attempt; 0 = none.
	PerTryTimeout time.Duration
	// OnStatus are HTTP statuses retried ("5xx" and "gateway-error"
	// expanded); OnGRPC gRPC status codes.
	OnStatus []uint32
	OnGRPC   []uint32
	// OnConnectFailure is informational: a connect failure is always
	// retried, the request never reached the application.
	OnConnectFailure bool
	// Retryable declares the requests safe to send again.
	Retryable bool
	// MaxBodyBytes buffered for a retry; 0 = 64 KiB.
	MaxBodyBytes uint32
	// Backoff base; 0 = 25ms.
	Backoff time.Duration
	// Budget; 0 = defaults (0.2 and 10/s).
	BudgetRatio        float64
	BudgetMinPerSecond uint32
}

// CircuitBreaker is failure accrual and limits for a Service's clients.
type CircuitBreaker struct {
	TargetRef           TargetRef
	ConsecutiveFailures uint32
	BaseEjectionTime    time.Duration
	MaxEjectionTime     time.Duration
	MaxPendingRequests  uint32
	MaxConnections      uint32
	IdleTimeout         time.Duration
}

// Fault is a FaultInjection.
type Fault struct {
	TargetRef TargetRef
	// PathPrefix, if not "", limits the fault to matching paths.
	PathPrefix      string
	DelayPercent    float64
	Delay           time.Duration
	AbortPercent    float64
	AbortHTTPStatus uint32
	AbortGRPCStatus uint32
}

// RateLimit is a local rate limit applied by each inbound proxy of the
// target Service.
type RateLimit struct {
	TargetRef         TargetRef
	RequestsPerSecond float64
	Burst             uint32
	Overrides         []Override
}

// Override gives the named clients their own bucket.
type Override struct {
	// Clients are SPIFFE IDs (service accounts are resolved on decode).
	Clients           []string
	RequestsPerSecond float64
	Burst             uint32
}

// Target implements Policy.
func (p *Retry) Target() TargetRef { return p.TargetRef }

// Target implements Policy.
func (p *CircuitBreaker) Target() TargetRef { return p.TargetRef }

// Target implements Policy.
func (p *Fault) Target() TargetRef { return p.TargetRef }

// Target implements Policy.
func (p *RateLimit) Target() TargetRef { return p.TargetRef }

// Check verifies that the policy r (whose Spec is a Policy) targets
// something that exists in snap or in the resources applied with it
// (batch). Errors name the resource and the field.
func Check(snap *config.Snapshot, batch []config.Resource, r *config.Resource) []error {
	p, ok := r.Spec.(Policy)
	if !ok {
		return nil
	}
	t := p.Target()
	var errs []error
	switch t.Kind {
	case TargetService, "":
		if _, ok := snap.Services[config.Key(t.Name, r.Namespace)]; !ok {
			errs = append(errs, fmt.Errorf("%s: spec.targetRef.name: service %q not found in namespace %s (services: %s); start it or fix the name",
				r.ID(), t.Name, r.Namespace, servicesIn(snap, r.Namespace)))
		}
	default:
		if !hasResource(snap.Resources, batch, t.Kind+"/"+r.Namespace+"/"+t.Name) {
			errs = append(errs, fmt.Errorf("%s: spec.targetRef.name: %s %q not found in namespace %s; apply it first or fix the name",
				r.ID(), t.Kind, t.Name, r.Namespace))
		}
	}
	if rp, ok := p.(*Retry); ok && rp.Route != "" &&
		!hasResource(snap.Resources, batch, TargetHTTPRoute+"/"+r.Namespace+"/"+rp.Route) &&
		!hasResource(snap.Resources, batch, TargetGRPCRoute+"/"+r.Namespace+"/"+rp.Route) {
		errs = append(errs, fmt.Errorf("%s: spec.route: no HTTPRoute or GRPCRoute %q in namespace %s; apply it first or fix the name",
			r.ID(), rp.Route, r.Namespace))
	}
	return errs
}

func hasResource(a, b []config.Resource, id string) bool {
	for _, rs := range [][]config.Resource{a, b} {
		for i := range rs {
			if rs[i].ID() == id {
				return true
			}
		}
	}
	return false
}

func servicesIn(snap *config.Snapshot, ns string) string {
	var names []string
	for _, svc := range snap.Services {
		if svc.Namespace == ns {
			names = append(names, svc.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
