package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/push"
)

const checkDocs = `apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http}
spec: {podSelector: {service: api}, port: 8080}
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-reads}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - from: {serviceAccounts: [{name: web}]}
    to: {paths: ["/api/*"], methods: [GET]}
  - from: {serviceAccounts: [{name: web}]}
    to: {paths: ["/admin"], headers: [{name: x-role, value: admin}]}
`

// setupAuthz serves the API over a store with services api (a Server
// with rules), web and db, and a push server whose default is deny.
func setupAuthz(t *testing.T) *httptest.Server {
	t.Helper()
	store := memory.New("")
	for _, n := range []string{"api", "web", "db"} {
		store.SetService(config.Service{Name: n})
	}
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: []config.InboundPort{{Port: 8080}}})
	store.SetProxy(config.Proxy{ID: "db-0", Service: "db", Ports: []config.InboundPort{{Port: 5432}}})
	rs, err := file.Decode([]byte(checkDocs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	ps := push.New(store, push.Config{DefaultInboundPolicy: meshv1.InboundPolicy_DENY})
	h, err := New(Config{Token: token, Store: store, Sent: ps})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestAuthzCheck(t *testing.T) {
	srv := setupAuthz(t)
	tests := []struct {
		name          string
		req           AuthzCheckRequest
		wantCode      int
		wantAllowed   bool
		wantBy        string
		wantRule      float64
		wantIdentity  string
		wantPath      string
		wantErrSubstr string
	}{
		{"service name", AuthzCheckRequest{From: "web", To: "api", Method: "GET", Path: "/api/books"}, 200, true, "default/web-reads", 0, "spiffe://cluster.local/ns/default/sa/web", "/api/books", ""},
		{"sa form", AuthzCheckRequest{From: "sa/web", To: "api", Method: "GET", Path: "/api/x"}, 200, true, "default/web-reads", 0, "spiffe://cluster.local/ns/default/sa/web", "/api/x", ""},
		{"ns form other namespace", AuthzCheckRequest{From: "ns/shop/sa/web", To: "api", Method: "GET", Path: "/api/x"}, 200, false, "Server/default/api-http", -1, "spiffe://cluster.local/ns/shop/sa/web", "/api/x", ""},
		{"lookalike", AuthzCheckRequest{From: "sa/web-admin", To: "api", Method: "GET", Path: "/api/x"}, 200, false, "Server/default/api-http", -1, "spiffe://cluster.local/ns/default/sa/web-admin", "/api/x", ""},
		{"normalised path", AuthzCheckRequest{From: "web", To: "api", Method: "GET", Path: "/api/../admin"}, 200, false, "Server/default/api-http", -1, "spiffe://cluster.local/ns/default/sa/web", "/admin", ""},
		{"second rule with header", AuthzCheckRequest{From: "web", To: "api", Method: "GET", Path: "/admin", Headers: map[string][]string{"X-Role": {"admin"}}}, 200, true, "default/web-reads", 1, "spiffe://cluster.local/ns/default/sa/web", "/admin", ""},
		{"invalid path", AuthzCheckRequest{From: "web", To: "api", Method: "GET", Path: "/%2Fadmin"}, 200, false, "path normalisation", -1, "spiffe://cluster.local/ns/default/sa/web", "", ""},
		{"unauthenticated", AuthzCheckRequest{From: "unauthenticated", To: "api", Method: "GET", Path: "/api/x"}, 200, false, "Server/default/api-http", -1, "", "/api/x", ""},
		{"tcp under the mesh default", AuthzCheckRequest{From: "web", To: "db"}, 200, false, "default policy deny", -1, "spiffe://cluster.local/ns/default/sa/web", "", ""},
		{"unknown service", AuthzCheckRequest{From: "web", To: "nope", Method: "GET", Path: "/"}, 404, false, "", 0, "", "", "service nope.default not found"},
		{"unknown client", AuthzCheckRequest{From: "nobody", To: "api", Method: "GET", Path: "/"}, 400, false, "", 0, "", "", `from "nobody" is neither`},
		{"method without path", AuthzCheckRequest{From: "web", To: "api", Method: "GET"}, 400, false, "", 0, "", "", "give both a method and a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(tt.req)
			code, out := do(t, srv, "POST", "/api/v1/authz/check", "Bearer "+token, string(body))
			if code != tt.wantCode {
				t.Fatalf("code %d (%v), want %d", code, out, tt.wantCode)
			}
			if tt.wantErrSubstr != "" {
				if msg, _ := out["error"].(string); !strings.Contains(msg, tt.wantErrSubstr) {
					t.Errorf("error %q, want %q", msg, tt.wantErrSubstr)
				}
				return
			}
			if out["allowed"] != tt.wantAllowed || out["decided_by"] != tt.wantBy || out["rule"] != tt.wantRule {
				t.Errorf("got allowed=%v by=%v rule=%v, want %v %v %v (%v)", out["allowed"], out["decided_by"], out["rule"], tt.wantAllowed, tt.wantBy, tt.wantRule, out["why"])
			}
			if got, _ := out["identity"].(string); got != tt.wantIdentity {
				t.Errorf("identity %q, want %q", got, tt.wantIdentity)
			}
			if got, _ := out["path"].(string); got != tt.wantPath {
				t.Errorf("path %q, want %q", got, tt.wantPath)
			}
		})
	}
}
