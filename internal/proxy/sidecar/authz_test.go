package sidecar_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/proxy/sidecar"
)

// authzDocs opens the api workload to any client below /public/ and to
// sa/web at /admin/web/; everything else is denied once the Server
// selects the port.
const authzDocs = `apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: api-http}
spec: {podSelector: {service: api}, proxyProtocol: HTTP/1}
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - to: {paths: ["/public/*"]}
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-admin-pages}
spec:
  targetRef: {kind: Server, name: api-http}
  rules:
  - from: {serviceAccounts: [{name: web}]}
    to: {paths: ["/admin/web/*"], methods: [GET]}
`

// pathRecorder answers 200 with the request-target it received and keeps
// them.
type pathRecorder struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func startPathRecorder(t *testing.T) *pathRecorder {
	t.Helper()
	rec := &pathRecorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.got = append(rec.got, r.RequestURI)
		rec.mu.Unlock()
		io.WriteString(w, r.RequestURI)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rec.addr = ln.Addr().String()
	return rec
}

func (r *pathRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestAuthorizationThroughTheMesh runs the real controller parts (store,
// push server, CA) and three proxies over mutual TLS: api-0 in front of a
// backend recording request targets, and clients web-0 (sa/web) and
// lookalike web-admin-0 (sa/web-admin). Every request either is refused
// or reaches the backend with exactly the path the policy authorised.
func TestAuthorizationThroughTheMesh(t *testing.T) {
	store := memory.New("")
	pki := identitytest.New(t, 0)
	ps := push.New(store, push.Config{Debounce: 5 * time.Millisecond})
	srv := grpc.NewServer(pki.ServerOption())
	pki.Register(srv)
	ps.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	ctlAddr := ln.Addr().String()
	pkis.Store(ctlAddr, pki)
	t.Cleanup(func() { ps.Shutdown(); srv.Stop(); <-served; pkis.Delete(ctlAddr) })

	rec := startPathRecorder(t)
	_, portStr, _ := net.SplitHostPort(rec.addr)
	port, _ := strconv.ParseUint(portStr, 10, 32)
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: []config.InboundPort{{Port: uint32(port)}}})
	server := startProxy(t, sidecar.Config{ID: "api-0", Service: "api", Controller: ctlAddr,
		Inbound: []sidecar.InboundSpec{{Listen: "127.0.0.1:0", App: rec.addr}}})
	store.SetService(config.Service{Name: "api", Endpoints: []config.Endpoint{{Address: server.InboundAddrs()[0], Identity: apiID, Meshed: true, Ready: true}}})
	rs, err := file.Decode([]byte(authzDocs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(rs); err != nil {
		t.Fatal(err)
	}
	clients := map[string]string{} // outbound address by client service
	for _, name := range []string{"web", "web-admin"} {
		store.SetProxy(config.Proxy{ID: name + "-0", Service: name})
		c := startProxy(t, sidecar.Config{ID: name + "-0", Service: name, Controller: ctlAddr,
			Outbound: []sidecar.OutboundSpec{{Listen: "127.0.0.1:0", Authority: "api"}}})
		c.waitReady(t)
		clients[name] = c.OutboundAddrs()[0]
	}
	server.waitReady(t)

	tests := []struct {
		client, path string
		wantCode     string
		wantBackend  string // "" when the backend must receive nothing
	}{
		{"web", "/public/x", "200", "/public/x"},
		{"web", "/admin/web/a", "200", "/admin/web/a"},
		{"web", "//admin/web//a", "200", "/admin/web/a"},
		{"web", "/public/../admin/web/b", "200", "/admin/web/b"},
		{"web", "/admin/other", "403", ""},
		{"web", "//admin/other", "403", ""},
		{"web", "/public/../admin/other", "403", ""},
		{"web", "/public/%2e%2e/admin/other", "403", ""},
		{"web", "/public/%2Fadmin", "400", ""},
		{"web", "/ADMIN/web/a", "403", ""},
		{"web", "/admin/web;x/a", "403", ""},
		{"web", "/public/%252F..%252Fadmin", "200", "/public/%252F..%252Fadmin"},
		{"web", "/public/x%00", "400", ""},
		{"web-admin", "/admin/web/a", "403", ""},
		{"web-admin", "/public/y", "200", "/public/y"},
	}
	for _, tt := range tests {
		t.Run(tt.client+" "+tt.path, func(t *testing.T) {
			rec.take()
			code, headers, _ := curl(t, "--path-as-is", "http://"+clients[tt.client]+tt.path)
			got := rec.take()
			if code != tt.wantCode {
				t.Errorf("status %s, want %s\n%s", code, tt.wantCode, headers)
			}
			if tt.wantBackend == "" && len(got) > 0 || tt.wantBackend != "" && (len(got) != 1 || got[0] != tt.wantBackend) {
				t.Errorf("backend received %q, want %q", got, tt.wantBackend)
			}
			if code == "403" && !strings.Contains(headers, "Weft-Proxy-Error: denied by policy Server/default/api-http") {
				t.Errorf("403 without the deciding Server:\n%s", headers)
			}
		})
	}

	// The decisions are counted on the server proxy, by policy.
	_, metrics := server.adminGet(t, "/metrics")
	for _, want := range []string{
		`weft_authz_allow_total{direction="inbound",policy="default/web-admin-pages",service="api.default"} 3`,
		`weft_authz_deny_total{direction="inbound",policy="Server/default/api-http",service="api.default"} 7`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "weft_authz"))
		}
	}
}
