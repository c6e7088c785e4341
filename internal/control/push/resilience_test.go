package push

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
)

const policiesYAML = `
apiVersion: policy.weft.dev/v1alpha1
kind: RetryPolicy
metadata: {name: api-retries}
spec:
  targetRef: {kind: Service, name: api}
  maxAttempts: 3
  perTryTimeout: 200ms
  retryOn: [gateway-error, connect-failure, unavailable]
  retryable: true
  budget: {ratio: 0.25, minPerSecond: 5}
---
apiVersion: policy.weft.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: api-breaker}
spec:
  targetRef: {kind: Service, name: api}
  consecutiveFailures: 5
  baseEjectionTime: 10s
  maxEjectionTime: 5m
  maxPendingRequests: 100
---
apiVersion: policy.weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: chaos}
spec:
  targetRef: {name: api}
  path: /slow
  delay: {percent: 5, duration: 1s}
  abort: {percent: 10, httpStatus: 503}
---
apiVersion: policy.weft.dev/v1alpha1
kind: RateLimit
metadata: {name: api-limit}
spec:
  targetRef: {name: api}
  requestsPerSecond: 100
  burst: 20
  overrides:
  - clients: [web, spiffe://cluster.local/ns/ops/sa/batch]
    requestsPerSecond: 500
`

func TestPoliciesCompiledIntoSnapshots(t *testing.T) {
	f := start(t)
	f.store.SetService(config.Service{Name: "api", Endpoints: []config.Endpoint{ready("127.0.0.1:9001")}})
	f.store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: []config.InboundPort{{Port: 8080}}})
	st := f.watch(t, "api", "web-0")
	if got := recv(t, st); got.GetResilience() != nil {
		t.Fatalf("resilience before any policy: %v", got.GetResilience())
	}
	rs, err := file.Decode([]byte(policiesYAML))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	got := recv(t, st).GetResilience()
	want := &meshv1.Resilience{
		Name:                "CircuitBreaker/default/api-breaker",
		BudgetRatio:         0.25,
		BudgetMinPerSecond:  5,
		ConsecutiveFailures: 5,
		BaseEjectionMs:      10_000,
		MaxEjectionMs:       300_000,
		MaxPendingRequests:  100,
		DefaultRetry: &meshv1.RetryPolicy{
			Name: "RetryPolicy/default/api-retries", MaxAttempts: 3, PerTryTimeoutMs: 200, Retryable: true,
			OnStatus: []uint32{502, 503, 504}, OnGrpc: []uint32{14}, OnConnectFailure: true,
		},
		DefaultFault: &meshv1.FaultInjection{
			Name: "FaultInjection/default/chaos", PathPrefix: "/slow", DelayPercent: 5, DelayMs: 1000,
			AbortPercent: 10, AbortHttpStatus: 503,
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("resilience\ngot  %v\nwant %v", got, want)
	}

	in := Inbound(f.store.Snapshot(), &meshv1.ProxyInfo{Id: "api-0"})
	wantRL := &meshv1.RateLimit{Name: "RateLimit/default/api-limit", RequestsPerSecond: 100, Burst: 20,
		Overrides: []*meshv1.RateLimitOverride{{
			Identities:        []string{"spiffe://cluster.local/ns/default/sa/web", "spiffe://cluster.local/ns/ops/sa/batch"},
			RequestsPerSecond: 500,
		}}}
	if len(in.GetPorts()) != 1 || !proto.Equal(in.GetPorts()[0].GetRateLimit(), wantRL) {
		t.Errorf("inbound ports %v, want the rate limit %v", in.GetPorts(), wantRL)
	}
}

func TestPolicyTargetsMustExist(t *testing.T) {
	f := start(t)
	rs, err := file.Decode([]byte(policiesYAML))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.store.Apply(rs)
	want := `RetryPolicy/default/api-retries: spec.targetRef.name: service "api" not found in namespace default (services: none); start it or fix the name`
	if err == nil || !containsLine(err.Error(), want) {
		t.Fatalf("got %v, want an error with %q", err, want)
	}
}

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		if s[:i] == line {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}

func TestRoutePoliciesFillTheirRules(t *testing.T) {
	f := start(t)
	f.store.SetService(config.Service{Name: "api", Endpoints: []config.Endpoint{ready("127.0.0.1:9001")}})
	rs, err := file.Decode([]byte(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api-reads}
spec:
  parentRefs: [{kind: Service, name: api}]
  rules:
  - matches: [{method: GET}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api-writes}
spec:
  parentRefs: [{kind: Service, name: api}]
  rules:
  - matches: [{method: POST}]
---
apiVersion: policy.weft.dev/v1alpha1
kind: RetryPolicy
metadata: {name: reads-retry}
spec:
  targetRef: {name: api}
  route: api-reads
  maxAttempts: 2
  retryOn: [connect-failure]
---
apiVersion: policy.weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: writes-chaos}
spec:
  targetRef: {kind: HTTPRoute, name: api-writes}
  abort: {percent: 50, httpStatus: 500}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	m := Destination(f.store.Snapshot(), "api.default", "api")
	got := map[string]string{}
	for _, r := range m.GetRoutes() {
		got[r.GetRoute()] = ""
		if r.GetRetry() != nil {
			got[r.GetRoute()] += "retry:" + r.GetRetry().GetName()
		}
		if r.GetFault() != nil {
			got[r.GetRoute()] += "fault:" + r.GetFault().GetName()
		}
	}
	want := map[string]string{
		"HTTPRoute/default/api-reads":  "retry:RetryPolicy/default/reads-retry",
		"HTTPRoute/default/api-writes": "fault:FaultInjection/default/writes-chaos",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("rule of %s: got %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if m.GetResilience().GetDefaultRetry() != nil || m.GetResilience().GetDefaultFault() != nil {
		t.Errorf("route policies leaked into the service defaults: %v", m.GetResilience())
	}
}
