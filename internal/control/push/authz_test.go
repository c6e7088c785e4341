package push

import (
	"context"
	"testing"
	"time"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/proxy/authz"
)

const authzDocs = `apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http}
spec:
  podSelector: {service: api}
  port: 9001
  proxyProtocol: HTTP/2
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-reads}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - from: {serviceAccounts: [{name: web}]}
    to: {paths: ["/api/*"], methods: [GET]}
  - from: {unauthenticated: true}
    to: {paths: ["/public/*"]}
---
apiVersion: policy.weft.dev/v1alpha1
kind: InboundPolicyDefault
metadata: {name: strict-default}
spec: {policy: all-authenticated, tlsMode: strict}
`

// TestInboundPolicyCompiled applies documents to the store and reads the
// compiled policy from a real Inbound.Watch stream.
func TestInboundPolicyCompiled(t *testing.T) {
	f := start(t)
	f.store.SetService(config.Service{Name: "api"})
	f.store.SetProxy(config.Proxy{ID: "api-1", Service: "api", Ports: []config.InboundPort{{Port: 9001}, {Port: 9002}}})
	rs, err := file.Decode([]byte(authzDocs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := meshv1.NewInboundClient(f.conn).Watch(ctx, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "api-1"}})
	if err != nil {
		t.Fatal(err)
	}
	got := recv(t, st)
	if len(got.GetPorts()) != 2 {
		t.Fatalf("ports %v", got.GetPorts())
	}
	p9001, p9002 := got.GetPorts()[0], got.GetPorts()[1]
	if p9001.GetProtocol() != meshv1.Protocol_HTTP2 {
		t.Errorf("9001 protocol %v, want the Server's HTTP2", p9001.GetProtocol())
	}
	pol := p9001.GetPolicy()
	if pol.GetServer() != "Server/default/api-http" || pol.GetDefaultPolicy() != meshv1.InboundPolicy_DENY || pol.GetTlsMode() != meshv1.InboundPolicy_STRICT || len(pol.GetRules()) != 2 {
		t.Errorf("9001 policy %v", pol)
	}
	if got, want := pol.GetRules()[0].GetIdentities(), "spiffe://cluster.local/ns/default/sa/web"; len(got) != 1 || got[0] != want {
		t.Errorf("identities %q, want %q", got, want)
	}
	other := p9002.GetPolicy()
	if other.GetServer() != "" || other.GetDefaultPolicy() != meshv1.InboundPolicy_ALL_AUTHENTICATED || other.GetDefaultSource() != "InboundPolicyDefault/default/strict-default" || len(other.GetRules()) != 0 {
		t.Errorf("9002 policy %v", other)
	}

	// The compiled policy means what the documents say.
	c, err := authz.Compile(pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		peer, method, path string
		want               bool
	}{
		{"spiffe://cluster.local/ns/default/sa/web", "GET", "/api/books", true},
		{"spiffe://cluster.local/ns/default/sa/web", "POST", "/api/books", false},
		{"spiffe://cluster.local/ns/default/sa/web-admin", "GET", "/api/books", false},
		{"", "GET", "/public/x", true},
		{"", "GET", "/api/books", false},
		{"spiffe://cluster.local/ns/default/sa/web", "GET", "/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.peer+tt.method+tt.path, func(t *testing.T) {
			if got := c.Request(tt.peer, &authz.Request{Method: tt.method, Path: tt.path}).Allowed; got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}

	// Deleting the Server puts the port back under the default.
	if err := f.store.Delete("Server/default/api-http"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		got = recv(t, st)
		if got.GetPorts()[0].GetPolicy().GetServer() == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Server still selects the port after its deletion")
		}
	}
	if d := got.GetPorts()[0].GetPolicy().GetDefaultPolicy(); d != meshv1.InboundPolicy_ALL_AUTHENTICATED {
		t.Errorf("default after deletion %v, want all-authenticated", d)
	}
}

func TestDefaultPrecedence(t *testing.T) {
	snap := &config.Snapshot{TrustDomain: "cluster.local"}
	p := &config.Proxy{Service: "api", Namespace: "shop"}
	add := func(doc string) {
		rs, err := file.Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		snap.Resources = append(snap.Resources, rs...)
	}
	check := func(want meshv1.InboundPolicy_Default, wantSource string) {
		t.Helper()
		pol, _ := PortPolicy(snap, p, 80, meshv1.InboundPolicy_AUDIT)
		if pol.GetDefaultPolicy() != want || pol.GetDefaultSource() != wantSource {
			t.Errorf("default %v from %q, want %v from %q", pol.GetDefaultPolicy(), pol.GetDefaultSource(), want, wantSource)
		}
	}
	const hdr = "apiVersion: policy.weft.dev/v1alpha1\nkind: InboundPolicyDefault\n"
	check(meshv1.InboundPolicy_AUDIT, "mesh")
	add(hdr + "metadata: {name: m}\nspec: {policy: deny, meshWide: true}")
	check(meshv1.InboundPolicy_DENY, "InboundPolicyDefault/default/m")
	add(hdr + "metadata: {name: other, namespace: other}\nspec: {policy: all-authenticated}")
	check(meshv1.InboundPolicy_DENY, "InboundPolicyDefault/default/m")
	add(hdr + "metadata: {name: w, namespace: shop}\nspec: {policy: all-unauthenticated, workload: api}")
	check(meshv1.InboundPolicy_ALL_UNAUTHENTICATED, "InboundPolicyDefault/shop/w")
	add(hdr + "metadata: {name: ns-default, namespace: shop}\nspec: {policy: all-authenticated}")
	check(meshv1.InboundPolicy_ALL_UNAUTHENTICATED, "InboundPolicyDefault/shop/w")
	add("apiVersion: policy.weft.dev/v1alpha1\nkind: Server\nmetadata: {name: s, namespace: shop}\nspec: {podSelector: {matchLabels: {app: api}}, accessPolicy: audit}")
	check(meshv1.InboundPolicy_AUDIT, "Server/shop/s")
}

// TestProbesAllowedUnderDeny: the kubelet's probe requests pass a deny
// policy, and nothing else does.
func TestProbesAllowedUnderDeny(t *testing.T) {
	snap := &config.Snapshot{TrustDomain: "cluster.local"}
	rs, err := file.Decode([]byte(`apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http}
spec: {podSelector: {service: api}, port: 8001, accessPolicy: deny}
`))
	if err != nil {
		t.Fatal(err)
	}
	snap.Resources = rs
	p := &config.Proxy{ID: "api-0", Service: "api", Namespace: "default", Ports: []config.InboundPort{
		{Port: 8001, Probes: []config.Probe{{Path: "/healthz"}, {Path: "/healthz"}}},
		{Port: 9000, Probes: []config.Probe{{GRPC: true}}},
	}}
	judge := func(port uint32, method, path string) authz.Decision {
		t.Helper()
		mp, _ := PortPolicy(snap, p, port, meshv1.InboundPolicy_ALL_UNAUTHENTICATED)
		pol, err := authz.Compile(mp, nil)
		if err != nil {
			t.Fatal(err)
		}
		return pol.Request("", &authz.Request{Method: method, Path: path})
	}
	for _, tt := range []struct {
		port         uint32
		method, path string
		allowed      bool
	}{
		{8001, "GET", "/healthz", true},
		{8001, "HEAD", "/healthz", true},
		{8001, "POST", "/healthz", false},
		{8001, "GET", "/books", false},
		{8001, "GET", "/healthz/x", false},
		{9000, "POST", "/grpc.health.v1.Health/Check", true},
		{9000, "POST", "/grpc.health.v1.Health/Watch", true}, // 9000 has no Server: the mesh default allows
	} {
		if d := judge(tt.port, tt.method, tt.path); d.Allowed != tt.allowed {
			t.Errorf("%d %s %s: allowed=%v, want %v (%s)", tt.port, tt.method, tt.path, d.Allowed, tt.allowed, d.Why())
		}
	}
	mp, _ := PortPolicy(snap, p, 8001, meshv1.InboundPolicy_ALL_UNAUTHENTICATED)
	if n := len(mp.GetRules()); n != 1 || mp.GetRules()[0].GetName() != ProbeRuleName || len(mp.GetRules()[0].GetPaths()) != 1 {
		t.Errorf("rules %v, want one %s rule with one path", mp.GetRules(), ProbeRuleName)
	}
}
