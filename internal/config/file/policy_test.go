package file

import (
	"reflect"
	"strings"
	"testing"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/control/policy"
	"weft.dev/weft/internal/proxy/authz"
)

const policyDocs = `apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http, namespace: shop}
spec:
  podSelector: {service: api}
  port: 8080
  proxyProtocol: HTTP/1
  tlsMode: strict
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-reads, namespace: shop}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - from:
      serviceAccounts: [{name: web}, {name: cart, namespace: billing}]
      identities: ["spiffe://cluster.local/ns/x/sa/y"]
    to:
      paths: ["/api/*", "/healthz"]
      methods: [GET]
      headers: [{name: x-role, value: reader}]
  - from: {unauthenticated: true}
    to: {paths: ["/public/*"]}
---
apiVersion: policy.weft.dev/v1alpha1
kind: InboundPolicyDefault
metadata: {name: strict-api, namespace: shop}
spec: {policy: all-authenticated, workload: api}
`

func TestDecodePolicyKinds(t *testing.T) {
	rs, err := Decode([]byte(policyDocs))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.ID())
	}
	want := []string{"Server/shop/api-http", "AuthorizationPolicy/shop/web-reads", "InboundPolicyDefault/shop/strict-api"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ids %q, want %q", got, want)
	}
	srv := rs[0].Spec.(*policy.Server)
	if srv.Service != "api" || srv.Port != 8080 || srv.Protocol != "http1" || srv.AccessPolicy != "deny" || srv.TLSMode != "strict" {
		t.Errorf("server %+v", srv)
	}
	ap := rs[1].Spec.(*policy.AuthorizationPolicy)
	if ap.TargetKind != "Server" || len(ap.Rules) != 2 || ap.Rules[0].From.ServiceAccounts[1].Namespace != "billing" || ap.Rules[1].To.Paths[0] != "/public/*" {
		t.Errorf("policy %+v", ap)
	}
}

func TestDecodePolicyErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"no selector", `kind: Server
spec: {port: 80}`, "spec.podSelector: required"},
		{"bad port", `kind: Server
spec: {podSelector: {service: api}, port: 70000}`, "spec.port: 70000 is not a port"},
		{"port name", `kind: Server
spec: {podSelector: {service: api}, port: "HTTP_x"}`, `spec.port: "HTTP_x" is neither`},
		{"protocol", `kind: Server
spec: {podSelector: {service: api}, proxyProtocol: SMTP}`, `spec.proxyProtocol: unknown protocol "SMTP"`},
		{"access policy", `kind: Server
spec: {podSelector: {service: api}, accessPolicy: allow}`, `spec.accessPolicy: unknown default inbound policy "allow"`},
		{"tls mode", `kind: Server
spec: {podSelector: {service: api}, tlsMode: mtls}`, `spec.tlsMode: "mtls" is not a TLS mode`},
		{"unknown field", `kind: Server
spec: {podSelector: {service: api}, prot: 80}`, `unknown field "spec.prot"`},
		{"no target", `kind: AuthorizationPolicy
spec: {rules: [{}]}`, "spec.targetRef: required"},
		{"bad target kind", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Pod, name: x}, rules: [{}]}`, `spec.targetRef.kind: "Pod" cannot be a target`},
		{"other namespace", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Namespace, name: kube-system}, rules: [{}]}`, `spec.targetRef.name: a policy can only open its own namespace "default"`},
		{"no rules", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}}`, "spec.rules: at least one rule"},
		{"empty from", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{from: {}}]}`, "spec.rules[0].from: empty"},
		{"identity", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{from: {identities: [web]}}]}`, `spec.rules[0].from.identities[0]: "web" is not a SPIFFE ID`},
		{"identity trailing slash", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{from: {identities: ["spiffe://cluster.local/ns/a/sa/b/"]}}]}`, `spec.rules[0].from.identities[0]`},
		{"sa name", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{from: {serviceAccounts: [{name: Web}]}}]}`, `spec.rules[0].from.serviceAccounts[0].name: "Web" is not a service account name`},
		{"path not normal", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{to: {paths: ["/a/../admin"]}}]}`, `spec.rules[0].to.paths[0]: "/a/../admin" is not in normal form, so no request would match it (requests are normalised first): write "/admin"`},
		{"path star", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{to: {paths: ["/a*"]}}]}`, `spec.rules[0].to.paths[0]: "/a*": '*' is only allowed`},
		{"path encoded slash", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{to: {paths: ["/a%2Fb"]}}]}`, `spec.rules[0].to.paths[0]: "/a%2Fb": invalid request path: %2F`},
		{"method", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{to: {methods: [get]}}]}`, `spec.rules[0].to.methods[0]: "get" is not a method`},
		{"regex", `kind: AuthorizationPolicy
spec: {targetRef: {kind: Server, name: x}, rules: [{to: {headers: [{name: a, value: "(", regex: true}]}}]}`, `spec.rules[0].to.headers[0].value: invalid regular expression`},
		{"default policy", `kind: InboundPolicyDefault
spec: {policy: open}`, `spec.policy: unknown default inbound policy "open"`},
		{"default mesh and workload", `kind: InboundPolicyDefault
spec: {policy: deny, meshWide: true, workload: api}`, `spec.meshWide: a mesh-wide default names no workload`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "apiVersion: policy.weft.dev/v1alpha1\nmetadata: {name: x}\n" + tt.doc
			_, err := Decode([]byte(doc))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "document 1") {
				t.Errorf("error %q, want it to start with \"document 1\" and contain %q", err, tt.want)
			}
		})
	}
}

func TestMeshDefaultInboundPolicy(t *testing.T) {
	doc := `apiVersion: local.weft.dev/v1alpha1
kind: Mesh
metadata: {name: demo}
spec:
  defaultInboundPolicy: all-authenticated
  workloads:
  - {name: api, command: [./api]}
`
	m, rs, err := LoadMesh([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.DefaultInboundPolicy != "all-authenticated" || len(rs) != 1 || rs[0].ID() != "InboundPolicyDefault/default/mesh-default" {
		t.Fatalf("mesh %+v resources %+v", m, rs)
	}
	if d := rs[0].Spec.(*policy.InboundPolicyDefault); !d.MeshWide || d.Policy != "all-authenticated" {
		t.Errorf("default %+v", d)
	}
	_, _, err = LoadMesh([]byte(strings.Replace(doc, "all-authenticated", "open", 1)))
	if err == nil || !strings.Contains(err.Error(), "spec.defaultInboundPolicy: unknown default inbound policy") {
		t.Errorf("error %v, want spec.defaultInboundPolicy named", err)
	}
}

// FuzzDecodePolicy checks that the policy kinds never panic and that every
// AuthorizationPolicy `weft apply` accepts compiles in the proxy.
func FuzzDecodePolicy(f *testing.F) {
	f.Add([]byte(policyDocs))
	f.Add([]byte("apiVersion: policy.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRef: {kind: Server, name: x}, rules: [{to: {paths: [\"/a/*\"], headers: [{name: x, value: \"a|b\", regex: true}]}}]}\n"))
	f.Add([]byte("apiVersion: policy.weft.dev/v1alpha1\nkind: Server\nmetadata: {name: a}\nspec: {podSelector: {service: a}, port: \"http\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			ap, ok := r.Spec.(*policy.AuthorizationPolicy)
			if !ok {
				continue
			}
			pol := &meshv1.InboundPolicy{}
			for _, rule := range ap.Rules {
				ar := &meshv1.AuthzRule{Name: r.Namespace + "/" + r.Name}
				if rule.From != nil {
					ar.Identities, ar.Namespaces = rule.From.Identities, rule.From.Namespaces
				}
				if rule.To != nil {
					ar.Paths, ar.Methods, ar.Hosts = rule.To.Paths, rule.To.Methods, rule.To.Hosts
					for _, h := range rule.To.Headers {
						ar.Headers = append(ar.Headers, &meshv1.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex})
					}
				}
				pol.Rules = append(pol.Rules, ar)
			}
			if _, err := authz.Compile(pol, nil); err != nil {
				t.Fatalf("accepted %s does not compile: %v", r.ID(), err)
			}
		}
	})
}
