package cli

import (
	"net/http/httptest"
	"strings"
	"testing"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/control/push"
)

// TestAuthzCheck runs `weft authz check` against the controller's real
// HTTP API over a store holding a Server and an AuthorizationPolicy.
func TestAuthzCheck(t *testing.T) {
	store := memory.New("")
	for _, n := range []string{"api", "web"} {
		store.SetService(config.Service{Name: n})
	}
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: []config.InboundPort{{Port: 8080}}})
	rs, err := file.Decode([]byte(`apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http}
spec: {podSelector: {service: api}}
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-reads}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - from: {serviceAccounts: [{name: web}]}
    to: {paths: ["/api/*"], methods: [GET]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{Token: testToken, Store: store, Sent: push.New(store, push.Config{DefaultInboundPolicy: meshv1.InboundPolicy_ALL_UNAUTHENTICATED})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := startMesh(t, srv.URL, testToken)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"allowed", []string{"--from", "web", "--to", "api", "GET", "/api/books"}, 0,
			[]string{"ALLOWED: GET /api/books from spiffe://cluster.local/ns/default/sa/web to api.default port 8080", "by rule 0 of AuthorizationPolicy default/web-reads"}},
		{"denied after normalisation", []string{"--from", "web", "--to", "api", "get", "/api/../admin"}, 1,
			[]string{"DENIED: GET /admin from", "by Server/default/api-http", "Weft-Proxy-Error: denied by policy Server/default/api-http"}},
		{"lookalike", []string{"--from", "spiffe://cluster.local/ns/default/sa/web-admin", "--to", "api", "GET", "/api/x"}, 1,
			[]string{"DENIED"}},
		{"unauthenticated tcp", []string{"--from", "unauthenticated", "--to", "api"}, 1,
			[]string{"DENIED: a TCP connection from an unauthenticated client"}},
		{"json", []string{"--from", "ns/default/sa/web", "--to", "api", "GET", "/api/x", "-o", "json"}, 0,
			[]string{`"allowed": true`, `"decided_by": "default/web-reads"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append([]string{"--state-dir", dir, "authz", "check"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		for _, args := range [][]string{{"--to", "api"}, {"--from", "web", "--to", "api", "GET"}, {"--from", "x", "--to", "api", "GET", "/"}} {
			_, stderr, code := runCLI(t, append([]string{"--state-dir", dir, "authz", "check"}, args...)...)
			if code != 1 || !strings.HasPrefix(stderr, "Error: ") {
				t.Errorf("%q: exit %d stderr %q, want exit 1 with an error", args, code, stderr)
			}
		}
	})
}
