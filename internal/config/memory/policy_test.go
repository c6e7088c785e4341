package memory

import (
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/policy"
)

func policyRes(kind, name string, spec any) config.Resource {
	return config.Resource{APIVersion: policy.APIVersion, Kind: kind, Name: name, Namespace: "default", Spec: spec}
}

func TestApplyPolicyReferences(t *testing.T) {
	srv := policyRes(policy.KindServer, "api-http", &policy.Server{Service: "api", Port: 80, AccessPolicy: "deny"})
	ap := policyRes(policy.KindAuthorizationPolicy, "web", &policy.AuthorizationPolicy{TargetKind: policy.KindServer, TargetName: "api-http", Rules: []policy.Rule{{}}})
	tests := []struct {
		name string
		rs   []config.Resource
		want string // "" means applied
	}{
		{"server and policy in one batch", []config.Resource{srv, ap}, ""},
		{"policy without server", []config.Resource{ap}, `spec.targetRef.name: Server "api-http" not found in namespace default`},
		{"server of a missing service", []config.Resource{policyRes(policy.KindServer, "x", &policy.Server{Service: "nope"})}, `spec.podSelector.service: service "nope" not found`},
		{"named port", []config.Resource{policyRes(policy.KindServer, "x", &policy.Server{Service: "api", PortName: "http"})}, "no named ports"},
		{"service target", []config.Resource{policyRes(policy.KindAuthorizationPolicy, "s", &policy.AuthorizationPolicy{TargetKind: "Service", TargetName: "nope"})}, `spec.targetRef.name: service "nope" not found`},
		{"two defaults of one namespace", []config.Resource{
			policyRes(policy.KindInboundPolicyDefault, "a", &policy.InboundPolicyDefault{Policy: "deny"}),
			policyRes(policy.KindInboundPolicyDefault, "b", &policy.InboundPolicyDefault{Policy: "audit"}),
		}, "already sets the default of namespace default"},
		{"namespace, workload and mesh defaults", []config.Resource{
			policyRes(policy.KindInboundPolicyDefault, "a", &policy.InboundPolicyDefault{Policy: "deny"}),
			policyRes(policy.KindInboundPolicyDefault, "b", &policy.InboundPolicyDefault{Policy: "audit", Workload: "api"}),
			policyRes(policy.KindInboundPolicyDefault, "c", &policy.InboundPolicyDefault{Policy: "audit", MeshWide: true}),
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("")
			s.SetService(config.Service{Name: "api"})
			_, err := s.Apply(tt.rs)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("Apply error %q, want %q", got, tt.want)
			}
		})
	}
}
