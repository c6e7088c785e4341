package file

import (
	"strings"
	"testing"

	"weft.dev/weft/internal/control/resilience"
)

func TestResilienceDocumentErrors(t *testing.T) {
	const head = "apiVersion: policy.weft.dev/v1alpha1\nkind: %s\nmetadata: {name: p}\nspec:\n"
	doc := func(kind, spec string) string { return strings.Replace(head, "%s", kind, 1) + spec }
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"bad duration", doc("RetryPolicy", "  targetRef: {name: api}\n  maxAttempts: 2\n  perTryTimeout: 2 seconds\n"),
			`document 1 (RetryPolicy p): spec.perTryTimeout: "2 seconds" is not a duration`},
		{"unknown retry condition", doc("RetryPolicy", "  targetRef: {name: api}\n  maxAttempts: 2\n  retryable: true\n  retryOn: [5xx, teapot]\n"),
			`spec.retryOn[1]: "teapot" is not a retry condition`},
		{"status retry needs retryable", doc("RetryPolicy", "  targetRef: {name: api}\n  maxAttempts: 2\n  retryOn: [5xx]\n"),
			`spec.retryable: must be true to retry on statuses`},
		{"no attempts", doc("RetryPolicy", "  targetRef: {name: api}\n"), `spec.maxAttempts: required`},
		{"unknown field", doc("RetryPolicy", "  targetRef: {name: api}\n  maxAttempts: 2\n  retries: 3\n"), `unknown field "spec.retries"`},
		{"wrong target kind", doc("CircuitBreaker", "  targetRef: {kind: HTTPRoute, name: r}\n"), `spec.targetRef.kind: "HTTPRoute" is not supported here (want Service)`},
		{"percent over 100", doc("FaultInjection", "  targetRef: {name: api}\n  abort: {percent: 120, httpStatus: 503}\n"),
			`spec.abort.percent: must be between 0 and 100, not 120`},
		{"status out of range", doc("FaultInjection", "  targetRef: {name: api}\n  abort: {percent: 10, httpStatus: 700}\n"),
			`spec.abort.httpStatus: must be an HTTP status between 100 and 599, not 700`},
		{"negative delay", doc("FaultInjection", "  targetRef: {name: api}\n  delay: {percent: 10, duration: -1s}\n"),
			`spec.delay.duration: must not be negative`},
		{"ejection bounds", doc("CircuitBreaker", "  targetRef: {name: api}\n  baseEjectionTime: 1m\n  maxEjectionTime: 10s\n"),
			`spec.maxEjectionTime: 10s is shorter than spec.baseEjectionTime 1m`},
		{"rate required", doc("RateLimit", "  targetRef: {name: api}\n  burst: 3\n"), `spec.requestsPerSecond: required`},
		{"bad client", doc("RateLimit", "  targetRef: {name: api}\n  requestsPerSecond: 5\n  overrides: [{clients: [\"Not A Name\"], requestsPerSecond: 9}]\n"),
			`spec.overrides[0].clients[0]: "Not A Name" is neither a SPIFFE ID`},
		{"rate not a number", doc("RateLimit", "  targetRef: {name: api}\n  requestsPerSecond: lots\n"), `spec.requestsPerSecond: must be a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeResilience(f *testing.F) {
	const head = "apiVersion: policy.weft.dev/v1alpha1\nmetadata: {name: p}\n"
	f.Add([]byte(head + "kind: RetryPolicy\nspec: {targetRef: {name: api}, maxAttempts: 3, perTryTimeout: 200ms, retryOn: [5xx, unavailable, \"429\"], retryable: true, budget: {ratio: 0.2, minPerSecond: 10}}\n"))
	f.Add([]byte(head + "kind: CircuitBreaker\nspec: {targetRef: {name: api}, consecutiveFailures: 5, baseEjectionTime: 1s, maxEjectionTime: 1m, maxPendingRequests: 10}\n"))
	f.Add([]byte(head + "kind: FaultInjection\nspec: {targetRef: {kind: HTTPRoute, name: r}, path: /x, delay: {percent: 1.5, duration: 1s}, abort: {percent: 10, httpStatus: 503, grpcStatus: 14}}\n"))
	f.Add([]byte(head + "kind: RateLimit\nspec: {targetRef: {name: api}, requestsPerSecond: 2.5, burst: 3, overrides: [{clients: [web, ops/batch], requestsPerSecond: 9}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			switch p := r.Spec.(type) {
			case *resilience.Retry:
				if p.MaxAttempts < 1 || p.MaxAttempts > 10 || p.PerTryTimeout < 0 || p.BudgetRatio < 0 {
					t.Fatalf("accepted %+v", p)
				}
				for _, s := range p.OnStatus {
					if s < 100 || s > 599 {
						t.Fatalf("accepted status %d", s)
					}
				}
			case *resilience.Fault:
				if p.AbortPercent < 0 || p.AbortPercent > 100 || p.DelayPercent < 0 || p.DelayPercent > 100 || p.Delay < 0 ||
					p.AbortHTTPStatus != 0 && (p.AbortHTTPStatus < 100 || p.AbortHTTPStatus > 599) {
					t.Fatalf("accepted %+v", p)
				}
			case *resilience.RateLimit:
				if p.RequestsPerSecond <= 0 {
					t.Fatalf("accepted %+v", p)
				}
				for _, o := range p.Overrides {
					for _, c := range o.Clients {
						if !strings.HasPrefix(c, "spiffe://") {
							t.Fatalf("client %q not resolved to a SPIFFE ID", c)
						}
					}
				}
			}
		}
	})
}
