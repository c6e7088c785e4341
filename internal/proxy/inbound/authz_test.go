package inbound

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/detect"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/transport"
)

// idTransport stands in for mutual TLS in these tests: a client that
// starts with the line "@<identity> <proto>\n" is a proxy with that
// verified identity ("@ http1" is a proxy without one); any other client
// is plaintext and goes through detection.
type idTransport struct{}

func (idTransport) Dial(context.Context, string, string, transport.Proto) (net.Conn, error) {
	return nil, fmt.Errorf("not used")
}

func (idTransport) Accept(c net.Conn, deadline time.Time) (transport.Accepted, error) {
	pc := detect.NewConn(c)
	b, err := pc.Peek(deadline, func(b []byte) bool { return len(b) > 0 && b[0] != '@' || bytes.IndexByte(b, '\n') >= 0 })
	if len(b) == 0 || b[0] != '@' {
		if len(b) > 0 || detect.IsTimeout(err) {
			return transport.Accepted{Conn: pc}, nil
		}
		return transport.Accepted{Conn: pc}, err
	}
	nl := bytes.IndexByte(b, '\n')
	peer, proto, _ := strings.Cut(string(b[1:nl]), " ")
	pc.Discard(nl + 1)
	p := map[string]transport.Proto{"http1": transport.HTTP1, "http2": transport.HTTP2, "tcp": transport.TCP}[proto]
	return transport.Accepted{Proto: p, Conn: pc, Peer: peer, TLS: peer != ""}, nil
}

const (
	idWeb   = "spiffe://cluster.local/ns/default/sa/web"
	idAdmin = "spiffe://cluster.local/ns/default/sa/admin"
)

// pathApp answers every request with 200 and the request-target it
// received, and records the targets.
type pathApp struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func startPathApp(t *testing.T) *pathApp {
	t.Helper()
	a := &pathApp{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.got = append(a.got, r.RequestURI)
		a.mu.Unlock()
		io.WriteString(w, r.RequestURI)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a.addr = ln.Addr().String()
	return a
}

// received returns the targets received since the last call.
func (a *pathApp) received() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := a.got
	a.got = nil
	return got
}

// startAuthz runs an inbound server in front of app with policy pol,
// counting decisions in the returned registry.
func startAuthz(t *testing.T, app string, proto config.Protocol, pol *meshv1.InboundPolicy) (string, *metrics.Registry) {
	t.Helper()
	reg := metrics.New()
	m := authz.NewMetrics(reg, "api.default")
	compiled, err := authz.Compile(pol, m)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{App: app, Protocol: proto, Service: "api.default", Transport: idTransport{}, Metrics: reg,
		Authz: func() *authz.Policy { return compiled }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), reg
}

// rawGet sends one HTTP/1.1 request with the target exactly as given,
// from a proxy with identity peer ("" for none), with extra header lines.
func rawGet(t *testing.T, addr, peer, target string, headers ...string) (int, string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
	req := "@" + peer + " http1\nGET " + target + " HTTP/1.1\r\nHost: api.default\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"), string(body)
}

// bypassPolicy allows anyone below /public/ and only sa/admin at /admin.
func bypassPolicy() *meshv1.InboundPolicy {
	return &meshv1.InboundPolicy{Server: "Server/default/api-http", DefaultPolicy: meshv1.InboundPolicy_DENY, TrustDomain: "cluster.local",
		Rules: []*meshv1.AuthzRule{
			{Name: "default/public", Identities: []string{"*"}, Unauthenticated: true, Paths: []string{"/public/*"}},
			{Name: "default/admins", Identities: []string{idAdmin}, Paths: []string{"/admin", "/admin/*"}},
		}}
}

// TestPathBypassVectors sends each vector through the inbound proxy to a
// backend recording what it receives: a vector is either refused (the
// backend receives nothing) or the backend receives exactly the path the
// policy authorised.
func TestPathBypassVectors(t *testing.T) {
	app := startPathApp(t)
	addr, _ := startAuthz(t, app.addr, config.ProtocolDetect, bypassPolicy())
	tests := []struct {
		name, peer, target string
		wantStatus         int
		wantReceived       string // "" when the backend must receive nothing
	}{
		{"double slash", idWeb, "//admin", 403, ""},
		{"dot dot", idWeb, "/a/../admin", 403, ""},
		{"encoded dot dot", idWeb, "/%2e%2e/admin", 403, ""},
		{"encoded slash", idWeb, "/%2Fadmin", 400, ""},
		{"upper case", idWeb, "/ADMIN", 403, ""},
		{"matrix parameter", idWeb, "/admin;x", 403, ""},
		{"nul", idWeb, "/admin%00", 400, ""},
		{"fragment", idWeb, "/admin#x", 400, ""},
		{"public then dot dot", idWeb, "/public/../admin", 403, ""},
		{"public then encoded slash", idWeb, "/public/..%2Fadmin", 400, ""},
		{"public then encoded backslash", idWeb, "/public/..%5Cadmin", 400, ""},
		{"tomcat dot dot parameter", idWeb, "/public/..;/admin", 400, ""},
		{"double encoding stays encoded", idWeb, "/public/%252F..%252Fadmin", 200, "/public/%252F..%252Fadmin"},
		{"normalised before forwarding", idWeb, "//public//x/./y?q=1", 200, "/public/x/y?q=1"},
		{"unreserved decoded", idWeb, "/public/%61%7e", 200, "/public/a~"},
		{"unauthenticated public", "", "/public/x", 200, "/public/x"},
		{"unauthenticated admin", "", "/admin", 403, ""},
		{"web admin", idWeb, "/admin", 403, ""},
		{"admin", idAdmin, "/admin", 200, "/admin"},
		{"admin double slash forwards the authorised path", idAdmin, "//admin", 200, "/admin"},
		{"admin dot dot", idAdmin, "/public/../admin/x", 200, "/admin/x"},
		{"lookalike admin-x", "spiffe://cluster.local/ns/default/sa/admin-x", "/admin", 403, ""},
		{"lookalike trust domain", "spiffe://evil.local/ns/default/sa/admin", "/admin", 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app.received()
			status, reason, _ := rawGet(t, addr, tt.peer, tt.target)
			got := app.received()
			if status != tt.wantStatus {
				t.Errorf("status %d (%s), want %d", status, reason, tt.wantStatus)
			}
			switch {
			case tt.wantReceived == "" && len(got) > 0:
				t.Errorf("backend received %q, want nothing", got)
			case tt.wantReceived != "" && (len(got) != 1 || got[0] != tt.wantReceived):
				t.Errorf("backend received %q, want exactly %q", got, tt.wantReceived)
			}
			if status == 403 && reason != "denied by policy Server/default/api-http" {
				t.Errorf("Weft-Proxy-Error %q, want the deciding Server named", reason)
			}
		})
	}
}

// TestPathBypassWithCurl sends vectors from a real curl (an unmeshed
// client, no identity) with --path-as-is.
func TestPathBypassWithCurl(t *testing.T) {
	app := startPathApp(t)
	addr, _ := startAuthz(t, app.addr, config.ProtocolDetect, bypassPolicy())
	tests := []struct {
		path, want, received string
	}{
		{"//admin", "403", ""},
		{"/public/../admin", "403", ""},
		{"/public/%2e%2e/admin", "403", ""},
		{"/public/%2Fadmin", "400", ""},
		{"/public//x", "200", "/public/x"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			app.received()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "/usr/bin/curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr+tt.path).Output()
			if err != nil {
				t.Fatalf("curl: %v", err)
			}
			got := app.received()
			if string(out) != tt.want {
				t.Errorf("status %s, want %s", out, tt.want)
			}
			if tt.received == "" && len(got) > 0 || tt.received != "" && (len(got) != 1 || got[0] != tt.received) {
				t.Errorf("backend received %q, want %q", got, tt.received)
			}
		})
	}
}

// h2Client speaks h2c to addr as a proxy with identity peer.
func h2Client(peer string) (*http.Client, func()) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, "@"+peer+" http2\n"); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

func TestHTTP2PathsAndGRPC(t *testing.T) {
	app := startPathApp(t)
	addr, _ := startAuthz(t, app.addr, config.ProtocolDetect, bypassPolicy())
	client, done := h2Client(idWeb)
	defer done()
	tests := []struct {
		path       string
		wantStatus int
		received   string
	}{
		{"/a/../admin", 403, ""},
		{"/%2e%2e/admin", 403, ""},
		{"/public/%2Fadmin", 400, ""},
		{"/public/%252F", 200, "/public/%252F"},
		{"/public/x/.//y", 200, "/public/x/y"},
		{"/public/%61", 200, "/public/a"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			app.received()
			req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tt.path // sent as is
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := app.received()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"), tt.wantStatus)
			}
			if tt.received == "" && len(got) > 0 || tt.received != "" && (len(got) != 1 || got[0] != tt.received) {
				t.Errorf("backend received %q, want %q", got, tt.received)
			}
		})
	}

	t.Run("gRPC denied is PERMISSION_DENIED", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
				if err == nil {
					_, err = io.WriteString(c, "@"+idWeb+" http2\n")
				}
				return c, err
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if got := status.Code(err); got != codes.PermissionDenied {
			t.Errorf("code %v (%v), want PermissionDenied", got, err)
		}
		if !strings.Contains(status.Convert(err).Message(), "denied by policy Server/default/api-http") {
			t.Errorf("message %q, want the deciding Server named", status.Convert(err).Message())
		}
		if got := app.received(); len(got) > 0 {
			t.Errorf("backend received %q", got)
		}
	})
}

func TestHeaderRuleOnEveryValue(t *testing.T) {
	app := startPathApp(t)
	addr, _ := startAuthz(t, app.addr, config.ProtocolDetect, &meshv1.InboundPolicy{Server: "Server/default/api-http", DefaultPolicy: meshv1.InboundPolicy_DENY,
		Rules: []*meshv1.AuthzRule{{Name: "default/readers", Identities: []string{"*"}, Headers: []*meshv1.HeaderMatch{{Name: "x-role", Value: "reader"}}}}})
	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{"one matching value", []string{"X-Role: reader"}, 200},
		{"two matching values", []string{"X-Role: reader", "x-role: reader"}, 200},
		{"second value differs", []string{"X-Role: reader", "X-Role: admin"}, 403},
		{"first value differs", []string{"X-Role: admin", "X-Role: reader"}, 403},
		{"list in one value", []string{"X-Role: reader, admin"}, 403},
		{"absent", nil, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, reason, _ := rawGet(t, addr, idWeb, "/", tt.headers...); got != tt.want {
				t.Errorf("status %d (%s), want %d", got, reason, tt.want)
			}
		})
	}
}

// TestDefaultPolicies checks each default with an unauthenticated and an
// authenticated client, over HTTP and opaque TCP.
func TestDefaultPolicies(t *testing.T) {
	app := startPathApp(t)
	echo := startEchoApp(t)
	tests := []struct {
		def                  meshv1.InboundPolicy_Default
		wantUnauth, wantAuth int
	}{
		{meshv1.InboundPolicy_ALL_UNAUTHENTICATED, 200, 200},
		{meshv1.InboundPolicy_ALL_AUTHENTICATED, 403, 200},
		{meshv1.InboundPolicy_DENY, 403, 403},
		{meshv1.InboundPolicy_AUDIT, 200, 200},
	}
	for _, tt := range tests {
		t.Run(authz.DefaultName(tt.def), func(t *testing.T) {
			pol := &meshv1.InboundPolicy{DefaultPolicy: tt.def}
			addr, _ := startAuthz(t, app.addr, config.ProtocolDetect, pol)
			if got, reason, _ := rawGet(t, addr, "", "/x"); got != tt.wantUnauth {
				t.Errorf("unauthenticated: %d (%s), want %d", got, reason, tt.wantUnauth)
			}
			if got, reason, _ := rawGet(t, addr, idWeb, "/x"); got != tt.wantAuth {
				t.Errorf("authenticated: %d (%s), want %d", got, reason, tt.wantAuth)
			}
			tcpAddr, _ := startAuthz(t, echo.addr, config.ProtocolTCP, pol)
			if got := tcpEcho(t, tcpAddr, ""); got != (tt.wantUnauth == 200) {
				t.Errorf("unauthenticated TCP echoed %v, want %v", got, tt.wantUnauth == 200)
			}
			if got := tcpEcho(t, tcpAddr, idWeb); got != (tt.wantAuth == 200) {
				t.Errorf("authenticated TCP echoed %v, want %v", got, tt.wantAuth == 200)
			}
		})
	}
}

// echoApp echoes TCP and counts accepted connections.
type echoApp struct {
	addr string
	mu   sync.Mutex
	n    int
}

func startEchoApp(t *testing.T) *echoApp {
	t.Helper()
	e := &echoApp{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.n++
			e.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	e.addr = ln.Addr().String()
	return e
}

func (e *echoApp) accepted() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// tcpEcho connects as peer ("" for a plaintext client), sends a line and
// reports whether it came back; a denied connection is closed at once.
func tcpEcho(t *testing.T, addr, peer string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
	pre := ""
	if peer != "" {
		pre = "@" + peer + " tcp\n"
	}
	if _, err := io.WriteString(c, pre+"hello\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "hello\n"
}

func TestDeniedTCPClosedAtOnce(t *testing.T) {
	echo := startEchoApp(t)
	addr, reg := startAuthz(t, echo.addr, config.ProtocolTCP, &meshv1.InboundPolicy{Server: "Server/default/db", DefaultPolicy: meshv1.InboundPolicy_DENY,
		Rules: []*meshv1.AuthzRule{
			{Name: "default/web-db", Identities: []string{idWeb}},
			// HTTP conditions never open an opaque connection.
			{Name: "default/http-only", Identities: []string{idAdmin}, Paths: []string{"/*"}},
		}})
	if !tcpEcho(t, addr, idWeb) {
		t.Fatal("allowed identity: no echo")
	}
	before := echo.accepted()
	for _, peer := range []string{idAdmin, "spiffe://cluster.local/ns/default/sa/web-admin", ""} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
		pre := "hello\n"
		if peer != "" {
			pre = "@" + peer + " tcp\n" + pre
		}
		io.WriteString(c, pre)
		n, err := c.Read(make([]byte, 16))
		c.Close()
		if n != 0 || err == nil {
			t.Errorf("peer %q: read %d bytes, err %v; want the connection closed without a byte", peer, n, err)
		}
	}
	if got := echo.accepted(); got != before {
		t.Errorf("the application accepted %d denied connections", got-before)
	}
	if got := counter(t, reg, "weft_authz_deny_total", "Server/default/db"); got != 3 {
		t.Errorf("weft_authz_deny_total = %v, want 3", got)
	}
	if got := counter(t, reg, "weft_authz_allow_total", "default/web-db"); got != 1 {
		t.Errorf("weft_authz_allow_total = %v, want 1", got)
	}
}

func TestAuditCountsWouldDeny(t *testing.T) {
	app := startPathApp(t)
	pol := bypassPolicy()
	pol.DefaultPolicy = meshv1.InboundPolicy_AUDIT
	addr, reg := startAuthz(t, app.addr, config.ProtocolDetect, pol)
	for _, target := range []string{"/admin", "/admin", "/public/x"} {
		if got, reason, _ := rawGet(t, addr, idWeb, target); got != 200 {
			t.Errorf("%s: %d (%s), want 200 in audit mode", target, got, reason)
		}
	}
	tests := []struct {
		name, policy string
		want         float64
	}{
		{"weft_authz_audit_deny_total", "Server/default/api-http", 2},
		{"weft_authz_allow_total", "Server/default/api-http", 2},
		{"weft_authz_allow_total", "default/public", 1},
		{"weft_authz_deny_total", "Server/default/api-http", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.policy, func(t *testing.T) {
			if got := counter(t, reg, tt.name, tt.policy); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// counter reads a counter of the registry by name and policy label.
func counter(t *testing.T, reg *metrics.Registry, name, policy string) float64 {
	t.Helper()
	mfs, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "policy" && l.GetValue() == policy {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
