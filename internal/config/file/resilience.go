package file

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/resilience"
)

// This file decodes the policy.weft.dev kinds: RetryPolicy,
// CircuitBreaker, FaultInjection and RateLimit.

func resilienceKinds() []kind {
	return []kind{
		{apiVersion: resilience.APIVersion, kind: resilience.KindRetry, decode: decodeRetryPolicy},
		{apiVersion: resilience.APIVersion, kind: resilience.KindCircuitBreaker, decode: decodeCircuitBreaker},
		{apiVersion: resilience.APIVersion, kind: resilience.KindFault, decode: decodeFaultInjection},
		{apiVersion: resilience.APIVersion, kind: resilience.KindRateLimit, decode: decodeRateLimit},
	}
}

type targetRefSpec struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

// policyErrs collects errors naming fields.
type policyErrs []error

func (e *policyErrs) add(field, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (e *policyErrs) target(t targetRefSpec, kinds ...string) resilience.TargetRef {
	if t.Name == "" {
		e.add("spec.targetRef.name", "required: name the Service the policy applies to")
	} else if msg := checkName(t.Name); msg != "" {
		e.add("spec.targetRef.name", "%s", msg)
	}
	k := t.Kind
	if k == "" {
		k = resilience.TargetService
	}
	ok := false
	for _, want := range kinds {
		ok = ok || k == want
	}
	if !ok {
		e.add("spec.targetRef.kind", "%q is not supported here (want %s)", t.Kind, strings.Join(kinds, " or "))
	}
	return resilience.TargetRef{Kind: k, Name: t.Name}
}

func checkName(n string) string {
	if len(n) > 253 || !dnsSubdomain.MatchString(n) {
		return fmt.Sprintf("%q is not a valid name: use lowercase letters, digits, '-' and '.'", n)
	}
	return ""
}

// duration parses a Go duration ("200ms", "1.5s"); "" is 0.
func (e *policyErrs) duration(field, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		e.add(field, "%q is not a duration: write it like \"200ms\", \"1.5s\" or \"2m\"", s)
	case d < 0:
		e.add(field, "must not be negative, not %s", s)
	case d > 24*time.Hour:
		e.add(field, "%s is too long (at most 24h)", s)
	}
	return d
}

// number parses a JSON number in [lo, hi]; absent is 0.
func (e *policyErrs) number(field string, raw json.RawMessage, lo, hi float64) float64 {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		e.add(field, "must be a number, not %s", s)
		return 0
	}
	if f < lo || f > hi {
		e.add(field, "must be between %g and %g, not %s", lo, hi, s)
		return 0
	}
	return f
}

func (e *policyErrs) status(field string, v uint32, lo uint32) {
	if v != 0 && (v < lo || v > 599) {
		e.add(field, "must be an HTTP status between %d and 599, not %d", lo, v)
	}
}

type retryPolicySpec struct {
	TargetRef     targetRefSpec `json:"targetRef"`
	Route         string        `json:"route"`
	MaxAttempts   uint32        `json:"maxAttempts"`
	PerTryTimeout string        `json:"perTryTimeout"`
	RetryOn       []string      `json:"retryOn"`
	Retryable     bool          `json:"retryable"`
	MaxBodyBytes  uint32        `json:"maxBodyBytes"`
	Backoff       string        `json:"backoff"`
	Budget        *struct {
		Ratio        json.RawMessage `json:"ratio"`
		MinPerSecond uint32          `json:"minPerSecond"`
	} `json:"budget"`
}

// grpcCodes maps the names retryOn accepts to gRPC status codes.
var grpcCodes = map[string]uint32{
	"cancelled": 1, "unknown": 2, "deadline-exceeded": 4, "resource-exhausted": 8,
	"aborted": 10, "internal": 13, "unavailable": 14,
}

func decodeRetryPolicy(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[retryPolicySpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	var e policyErrs
	p := &resilience.Retry{
		TargetRef:     e.target(spec.TargetRef, resilience.TargetService),
		Route:         spec.Route,
		MaxAttempts:   spec.MaxAttempts,
		PerTryTimeout: e.duration("spec.perTryTimeout", spec.PerTryTimeout),
		Retryable:     spec.Retryable,
		MaxBodyBytes:  spec.MaxBodyBytes,
		Backoff:       e.duration("spec.backoff", spec.Backoff),
	}
	if spec.Route != "" {
		if msg := checkName(spec.Route); msg != "" {
			e.add("spec.route", "%s", msg)
		}
	}
	switch {
	case spec.MaxAttempts == 0:
		e.add("spec.maxAttempts", "required: the number of attempts including the first (2 or more to retry)")
	case spec.MaxAttempts > 10:
		e.add("spec.maxAttempts", "%d is too many (at most 10): retries multiply load on a failing service", spec.MaxAttempts)
	}
	if spec.MaxBodyBytes > 16<<20 {
		e.add("spec.maxBodyBytes", "%d is too large (at most 16 MiB buffered per request)", spec.MaxBodyBytes)
	}
	seen := map[uint32]bool{}
	addStatus := func(s uint32) {
		if !seen[s] {
			seen[s] = true
			p.OnStatus = append(p.OnStatus, s)
		}
	}
	for i, c := range spec.RetryOn {
		field := fmt.Sprintf("spec.retryOn[%d]", i)
		c = strings.ToLower(strings.TrimSpace(c))
		switch {
		case c == "connect-failure":
			p.OnConnectFailure = true
		case c == "5xx":
			for s := uint32(500); s < 600; s++ {
				addStatus(s)
			}
		case c == "gateway-error":
			addStatus(502)
			addStatus(503)
			addStatus(504)
		case grpcCodes[c] != 0:
			p.OnGRPC = append(p.OnGRPC, grpcCodes[c])
		default:
			n, err := strconv.ParseUint(c, 10, 32)
			if err != nil || n < 100 || n > 599 {
				e.add(field, "%q is not a retry condition (want connect-failure, 5xx, gateway-error, an HTTP status like \"503\", or a gRPC code: cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, unknown, aborted)", spec.RetryOn[i])
				continue
			}
			addStatus(uint32(n))
		}
	}
	if (len(p.OnStatus) > 0 || len(p.OnGRPC) > 0) && !p.Retryable {
		e.add("spec.retryable", "must be true to retry on statuses or gRPC codes: such requests reached the application, so declare them safe to send again (idempotent) or retry only on connect-failure")
	}
	if spec.Budget != nil {
		p.BudgetRatio = e.number("spec.budget.ratio", spec.Budget.Ratio, 0, 10)
		p.BudgetMinPerSecond = spec.Budget.MinPerSecond
	}
	if len(e) > 0 {
		return nil, e
	}
	return p, nil
}

type circuitBreakerSpec struct {
	TargetRef           targetRefSpec `json:"targetRef"`
	ConsecutiveFailures uint32        `json:"consecutiveFailures"`
	BaseEjectionTime    string        `json:"baseEjectionTime"`
	MaxEjectionTime     string        `json:"maxEjectionTime"`
	MaxPendingRequests  uint32        `json:"maxPendingRequests"`
	MaxConnections      uint32        `json:"maxConnections"`
	IdleTimeout         string        `json:"idleTimeout"`
}

func decodeCircuitBreaker(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[circuitBreakerSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	var e policyErrs
	p := &resilience.CircuitBreaker{
		TargetRef:           e.target(spec.TargetRef, resilience.TargetService),
		ConsecutiveFailures: spec.ConsecutiveFailures,
		BaseEjectionTime:    e.duration("spec.baseEjectionTime", spec.BaseEjectionTime),
		MaxEjectionTime:     e.duration("spec.maxEjectionTime", spec.MaxEjectionTime),
		MaxPendingRequests:  spec.MaxPendingRequests,
		MaxConnections:      spec.MaxConnections,
		IdleTimeout:         e.duration("spec.idleTimeout", spec.IdleTimeout),
	}
	if p.MaxEjectionTime > 0 && p.BaseEjectionTime > p.MaxEjectionTime {
		e.add("spec.maxEjectionTime", "%s is shorter than spec.baseEjectionTime %s", spec.MaxEjectionTime, spec.BaseEjectionTime)
	}
	if len(e) > 0 {
		return nil, e
	}
	return p, nil
}

type faultInjectionSpec struct {
	TargetRef targetRefSpec `json:"targetRef"`
	Path      string        `json:"path"`
	Delay     *struct {
		Percent  json.RawMessage `json:"percent"`
		Duration string          `json:"duration"`
	} `json:"delay"`
	Abort *struct {
		Percent    json.RawMessage `json:"percent"`
		HTTPStatus uint32          `json:"httpStatus"`
		GRPCStatus uint32          `json:"grpcStatus"`
	} `json:"abort"`
}

func decodeFaultInjection(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[faultInjectionSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	var e policyErrs
	p := &resilience.Fault{
		TargetRef:  e.target(spec.TargetRef, resilience.TargetService, resilience.TargetHTTPRoute, resilience.TargetGRPCRoute),
		PathPrefix: spec.Path,
	}
	if spec.Path != "" && !strings.HasPrefix(spec.Path, "/") {
		e.add("spec.path", "%q must start with '/' (a path prefix)", spec.Path)
	}
	if spec.Delay == nil && spec.Abort == nil {
		e.add("spec", "give a delay, an abort, or both")
	}
	if d := spec.Delay; d != nil {
		p.DelayPercent = e.number("spec.delay.percent", d.Percent, 0, 100)
		p.Delay = e.duration("spec.delay.duration", d.Duration)
		if d.Duration == "" {
			e.add("spec.delay.duration", "required: how long to delay, like \"500ms\"")
		}
	}
	if a := spec.Abort; a != nil {
		p.AbortPercent = e.number("spec.abort.percent", a.Percent, 0, 100)
		e.status("spec.abort.httpStatus", a.HTTPStatus, 100)
		p.AbortHTTPStatus = a.HTTPStatus
		if a.GRPCStatus > 16 {
			e.add("spec.abort.grpcStatus", "must be a gRPC status code between 1 and 16, not %d", a.GRPCStatus)
		}
		p.AbortGRPCStatus = a.GRPCStatus
		if a.HTTPStatus == 0 && a.GRPCStatus == 0 {
			e.add("spec.abort.httpStatus", "required: the status to answer, like 503")
		}
	}
	if len(e) > 0 {
		return nil, e
	}
	return p, nil
}

type rateLimitSpec struct {
	TargetRef         targetRefSpec   `json:"targetRef"`
	RequestsPerSecond json.RawMessage `json:"requestsPerSecond"`
	Burst             uint32          `json:"burst"`
	Overrides         []struct {
		Clients           []string        `json:"clients"`
		RequestsPerSecond json.RawMessage `json:"requestsPerSecond"`
		Burst             uint32          `json:"burst"`
	} `json:"overrides"`
}

func decodeRateLimit(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[rateLimitSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	ns := namespaceOf(obj)
	var e policyErrs
	p := &resilience.RateLimit{
		TargetRef:         e.target(spec.TargetRef, resilience.TargetService),
		RequestsPerSecond: e.number("spec.requestsPerSecond", spec.RequestsPerSecond, 0, 1e9),
		Burst:             spec.Burst,
	}
	if p.RequestsPerSecond == 0 && len(e) == 0 {
		e.add("spec.requestsPerSecond", "required: a rate above 0, like 100")
	}
	for i, o := range spec.Overrides {
		field := fmt.Sprintf("spec.overrides[%d]", i)
		ov := resilience.Override{RequestsPerSecond: e.number(field+".requestsPerSecond", o.RequestsPerSecond, 0, 1e9), Burst: o.Burst}
		if ov.RequestsPerSecond == 0 {
			e.add(field+".requestsPerSecond", "required: a rate above 0")
		}
		if len(o.Clients) == 0 {
			e.add(field+".clients", "required: SPIFFE IDs or service account names of the clients")
		}
		for j, c := range o.Clients {
			id, err := clientID(c, ns)
			if err != nil {
				e.add(fmt.Sprintf("%s.clients[%d]", field, j), "%v", err)
				continue
			}
			ov.Clients = append(ov.Clients, id)
		}
		p.Overrides = append(p.Overrides, ov)
	}
	if len(e) > 0 {
		return nil, e
	}
	return p, nil
}

// clientID resolves a client as written: a SPIFFE ID, "namespace/sa" or
// a service account of the policy's namespace.
func clientID(c, ns string) (string, error) {
	switch {
	case strings.HasPrefix(c, "spiffe://"):
		return c, nil
	case c == "":
		return "", errors.New("empty: give a SPIFFE ID or a service account name")
	}
	sa := c
	if n, s, ok := strings.Cut(c, "/"); ok {
		ns, sa = n, s
	}
	if checkName(ns) != "" || checkName(sa) != "" {
		return "", fmt.Errorf("%q is neither a SPIFFE ID (spiffe://...) nor a service account (name or namespace/name)", c)
	}
	return config.SpiffeID(config.DefaultTrustDomain, ns, sa), nil
}

func namespaceOf(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	if ns, _ := md["namespace"].(string); ns != "" {
		return ns
	}
	return config.DefaultNamespace
}
