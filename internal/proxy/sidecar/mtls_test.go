package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/sidecar"
	"weft.dev/weft/internal/proxy/transport"
)

// recorder is a TCP relay that records the bytes of each direction.
type recorder struct {
	addr  string
	conns atomic.Int64 // connections relayed
	// mu guards up and down.
	mu       sync.Mutex
	up, down bytes.Buffer // client to server, server to client
}

func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.conns.Add(1)
			conns.Store(c, s)
			wg.Add(2)
			copyRec := func(dst, src net.Conn, buf *bytes.Buffer) {
				defer wg.Done()
				b := make([]byte, 32<<10)
				for {
					n, err := src.Read(b)
					if n > 0 {
						r.mu.Lock()
						buf.Write(b[:n])
						r.mu.Unlock()
						if _, werr := dst.Write(b[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				dst.Close()
				src.Close()
			}
			go copyRec(s, c, &r.up)
			go copyRec(c, s, &r.down)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, v any) bool { k.(net.Conn).Close(); v.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return r
}

func (r *recorder) bytes() (up, down []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.up.Bytes()), bytes.Clone(r.down.Bytes())
}

// twoProxies runs "web-0" calling authorities through outbound listeners
// and "api-0" in front of app, with controller ctl.
func twoProxies(t *testing.T, lifetime time.Duration, authorities []string, apps ...string) (ctlAddr string, ctl interface {
	SetDestination(string, *meshv1.DestinationSnapshot)
	SetInbound(string, *meshv1.InboundSnapshot)
}, server, client *proxy, out map[string]string) {
	t.Helper()
	c, addr := startController(t, lifetime)
	var in []sidecar.InboundSpec
	for _, a := range apps {
		in = append(in, sidecar.InboundSpec{Listen: "127.0.0.1:0", App: a})
	}
	server = startProxy(t, sidecar.Config{ID: "api-0", Service: "api", Controller: addr, Inbound: in})
	var outs []sidecar.OutboundSpec
	for _, a := range authorities {
		outs = append(outs, sidecar.OutboundSpec{Listen: "127.0.0.1:0", Authority: a})
	}
	client = startProxy(t, sidecar.Config{ID: "web-0", Service: "web", Controller: addr, Outbound: outs})
	out = map[string]string{}
	for i, a := range client.OutboundAddrs() {
		out[a] = authorities[i]
		out[authorities[i]] = a
	}
	c.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "web.default"})
	return addr, c, server, client, out
}

func portOf(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// TestBytesBetweenProxiesAreTLS relays the connection between two proxies
// through a recorder: what crosses the network is TLS from its first byte,
// and neither the request nor the response is visible in it.
func TestBytesBetweenProxiesAreTLS(t *testing.T) {
	app := startHTTPApp(t, "secret-app-name")
	_, ctl, server, client, out := twoProxies(t, 0, []string{"api"}, app.addr)
	rec := startRecorder(t, server.InboundAddrs()[0])
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default"})
	ctl.SetDestination("api", dest("api", "api.default", 1, 0, endpoints(apiID, rec.addr)))
	server.waitReady(t)
	client.waitReady(t)
	client.waitDestination(t, "api.default", 1, 1)

	for _, flag := range []string{"--http1.1", "--http2-prior-knowledge"} {
		code, _, body := curl(t, flag, "-H", "X-Marker: plaintext-marker-header", "http://"+out["api"]+"/who")
		if code != "200" || body != "secret-app-name" {
			t.Fatalf("curl %s: got %s %q, want 200 secret-app-name", flag, code, body)
		}
	}
	// Pooled, warm connections: more requests open no new connection (no
	// handshake per request).
	before := rec.conns.Load()
	h1 := &http.Client{Timeout: hangGuard}
	for range 20 {
		resp, err := h1.Get("http://" + out["api"] + "/who")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	h1.CloseIdleConnections()
	if n := rec.conns.Load(); n != before || before > 2 {
		t.Errorf("proxies opened %d connections for 22 requests (%d before the 20 last); want one per protocol, reused", n, before)
	}
	up, down := rec.bytes()
	if len(up) == 0 || up[0] != 0x16 || len(down) == 0 || down[0] != 0x16 {
		t.Fatalf("first bytes up %x, down %x; want TLS handshake records (0x16)", up[:min(len(up), 8)], down[:min(len(down), 8)])
	}
	for _, leak := range []string{"HTTP/1.1", "GET /who", "plaintext-marker-header", "secret-app-name", "PRI * HTTP/2.0"} {
		if bytes.Contains(up, []byte(leak)) || bytes.Contains(down, []byte(leak)) {
			t.Errorf("%q crossed the network in plaintext", leak)
		}
	}
	// Both sides count it as mutual TLS.
	_, cm := client.adminGet(t, "/metrics")
	_, sm := server.adminGet(t, "/metrics")
	if want := "weft_requests_total{direction=\"outbound\",service=\"api.default\",tls=\"true\"} 22\n"; !strings.Contains(cm, want) {
		t.Errorf("client metrics lack %s", want)
	}
	if want := "weft_requests_total{direction=\"inbound\",service=\"api.default\",tls=\"true\"} 22\n"; !strings.Contains(sm, want) {
		t.Errorf("server metrics lack %s", want)
	}
}

// TestTLSModes: a plaintext client (not a proxy) is served without an
// identity on a permissive port and refused on a strict one, while meshed
// traffic is served on both.
func TestTLSModes(t *testing.T) {
	strictApp, permissiveApp := startHTTPApp(t, "strict-app"), startHTTPApp(t, "permissive-app")
	_, ctl, server, client, out := twoProxies(t, 0, []string{"strict", "permissive"}, strictApp.addr, permissiveApp.addr)
	in := server.InboundAddrs()
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default", Ports: []*meshv1.InboundPort{
		{Port: portOf(t, strictApp.addr), Policy: &meshv1.InboundPolicy{TlsMode: meshv1.InboundPolicy_STRICT}},
		{Port: portOf(t, permissiveApp.addr), Policy: &meshv1.InboundPolicy{TlsMode: meshv1.InboundPolicy_PERMISSIVE}},
	}})
	ctl.SetDestination("strict", dest("strict", "api.default", 1, 0, endpoints(apiID, in[0])))
	ctl.SetDestination("permissive", dest("permissive", "api.default", 1, 0, endpoints(apiID, in[1])))
	server.waitReady(t)
	client.waitReady(t)
	client.waitDestination(t, "api.default", 1, 1)

	tests := []struct {
		name     string
		url      string
		wantCode string
		wantBody string
	}{
		{"meshed to strict", "http://" + out["strict"] + "/who", "200", "strict-app"},
		{"meshed to permissive", "http://" + out["permissive"] + "/who", "200", "permissive-app"},
		{"plaintext to permissive", "http://" + in[1] + "/who", "200", "permissive-app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := curl(t, "--http1.1", tt.url)
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("got %s %q, want %s %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	t.Run("plaintext to strict", func(t *testing.T) {
		c, err := net.Dial("tcp", in[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(hangGuard))
		fmt.Fprintf(c, "GET /who HTTP/1.1\r\nHost: api\r\n\r\n")
		got, err := io.ReadAll(c)
		if len(got) != 0 || err != nil && !strings.Contains(err.Error(), "reset") {
			t.Errorf("strict port answered a plaintext client: %q, %v; want the connection closed", got, err)
		}
		if n := strictApp.hits.Load(); n != 1 {
			t.Errorf("strict app saw %d requests, want only the meshed one", n)
		}
	})
	_, sm := server.adminGet(t, "/metrics")
	for _, want := range []string{
		`weft_requests_total{direction="inbound",service="api.default",tls="true"} 2`,
		`weft_requests_total{direction="inbound",service="api.default",tls="false"} 1`,
	} {
		if !strings.Contains(sm, want+"\n") {
			t.Errorf("server metrics lack %s", want)
		}
	}
}

// TestWrongIdentityRefused: an endpoint whose certificate names another
// workload than discovery says, or a meshed endpoint without identity, is
// never sent a request; the client gets a 502 saying why.
func TestWrongIdentityRefused(t *testing.T) {
	app := startHTTPApp(t, "app")
	_, ctl, server, client, out := twoProxies(t, 0, []string{"impostor", "anonymous"}, app.addr)
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default"})
	ctl.SetDestination("impostor", dest("impostor", "api-admin.default", 1, 0, endpoints(identitytest.ID("api-admin"), server.InboundAddrs()[0])))
	ctl.SetDestination("anonymous", dest("anonymous", "anon.default", 1, 0,
		[]*meshv1.Endpoint{{Address: server.InboundAddrs()[0], Meshed: true}}))
	server.waitReady(t)
	client.waitReady(t)
	client.waitDestination(t, "api-admin.default", 1, 1)
	client.waitDestination(t, "anon.default", 1, 1)

	tests := []struct {
		authority string
		flag      string
		want      string
	}{
		{"impostor", "--http1.1", "peer is " + identitytest.ID("api") + ", want " + identitytest.ID("api-admin")},
		{"impostor", "--http2-prior-knowledge", "peer is " + identitytest.ID("api") + ", want " + identitytest.ID("api-admin")},
		{"anonymous", "--http1.1", "gave no identity for this meshed endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.authority+" "+tt.flag, func(t *testing.T) {
			code, headers, body := curl(t, tt.flag, "http://"+out[tt.authority]+"/who")
			hdr := regexp.MustCompile(`(?im)^weft-proxy-error: (.*)\r$`).FindStringSubmatch(headers)
			if code != "502" || hdr == nil || !strings.Contains(hdr[1], tt.want) || !strings.Contains(body, tt.want) {
				t.Errorf("got %s, header %q, body %q; want 502 naming %q", code, hdr, body, tt.want)
			}
		})
	}
	if n := app.hits.Load(); n != 0 {
		t.Errorf("the application saw %d requests", n)
	}
}

// TestRenewalUnderLoad runs the mesh with certificates of a few seconds:
// both proxies renew several times while HTTP requests and new opaque
// connections (each a new handshake) flow, and none fails.
func TestRenewalUnderLoad(t *testing.T) {
	app := startHTTPApp(t, "app")
	echo := startEcho(t)
	_, ctl, server, client, out := twoProxies(t, 6*time.Second, []string{"api", "echo"}, app.addr, echo)
	in := server.InboundAddrs()
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default", Ports: []*meshv1.InboundPort{
		{Port: portOf(t, echo), Protocol: meshv1.Protocol_TCP}}})
	ctl.SetDestination("api", dest("api", "api.default", 1, 0, endpoints(apiID, in[0])))
	ctl.SetDestination("echo", dest("echo", "echo.default", 1, meshv1.Protocol_TCP, endpoints(apiID, in[1])))
	server.waitReady(t)
	client.waitReady(t)
	client.waitDestination(t, "api.default", 1, 1)
	client.waitDestination(t, "echo.default", 1, 1)

	l := startLoad(t, "http://"+out["api"]+"/who", 2)
	var tcpOK, tcpFailed atomic.Int64
	var lastTCPErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := echoOnce(out["echo"])
			if err != nil {
				tcpFailed.Add(1)
				lastTCPErr.Store(err.Error())
			} else {
				tcpOK.Add(1)
			}
		}
	}()
	renewals := func(p *proxy) int {
		_, m := p.adminGet(t, "/metrics")
		match := regexp.MustCompile(`(?m)^weft_identity_renewals_total (\d+)`).FindStringSubmatch(m)
		if match == nil {
			t.Fatalf("no weft_identity_renewals_total in %s", p.AdminAddr())
		}
		n, _ := strconv.Atoi(match[1])
		return n
	}
	// Two renewals each: the first certificates have expired by then.
	deadline := time.Now().Add(hangGuard)
	for renewals(server) < 2 || renewals(client) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("renewals: server %d, client %d; want 2 each", renewals(server), renewals(client))
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	l.end()
	if f := l.failures.Load(); f != 0 || l.ok.Load() == 0 {
		t.Errorf("%d HTTP requests failed, %d succeeded (last error: %s)", f, l.ok.Load(), l.lastErr)
	}
	if f := tcpFailed.Load(); f != 0 || tcpOK.Load() == 0 {
		t.Errorf("%d opaque connections failed, %d succeeded (last error: %v)", f, tcpOK.Load(), lastTCPErr.Load())
	}
	_, body := client.adminGet(t, "/status")
	var st struct {
		Identity     string    `json:"identity"`
		CertNotAfter time.Time `json:"cert_not_after"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Identity != identitytest.ID("web") || st.CertNotAfter.IsZero() {
		t.Errorf("client /status lacks its identity and certificate expiry: %s", body)
	}
}

// echoOnce opens a connection through the mesh to the echo server, sends
// a line and reads it back.
func echoOnce(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(b) != "ping\n" {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

// TestNotReadyWithoutCertificate: a proxy whose token the controller
// refuses never becomes ready and refuses inbound connections.
func TestNotReadyWithoutCertificate(t *testing.T) {
	app := startHTTPApp(t, "app")
	_, addr := startController(t, 0)
	v, _ := pkis.Load(addr)
	pki := v.(*identitytest.PKI)
	p := startProxy(t, sidecar.Config{ID: "api-0", Service: "api", Controller: addr,
		TrustAnchors: pki.AnchorPEM, Token: "weftjt1_" + strings.Repeat("A", 43),
		Inbound: []sidecar.InboundSpec{{Listen: "127.0.0.1:0", App: app.addr}}})
	// Wait for at least one refused certificate request.
	deadline := time.Now().Add(hangGuard)
	for {
		code, body := p.adminGet(t, "/ready")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no certificate yet") {
			t.Fatalf("/ready: %d %q, want 503 no certificate yet", code, body)
		}
		if strings.Contains(body, "failed requests") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed certificate request seen: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := net.Dial("tcp", p.InboundAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	fmt.Fprintf(c, "GET /who HTTP/1.1\r\nHost: api\r\n\r\n")
	if got, _ := io.ReadAll(c); len(got) != 0 || app.hits.Load() != 0 {
		t.Errorf("uncertified proxy answered %q; app hits %d", got, app.hits.Load())
	}
}

// TestIssuerRotationUnderLoad rotates the trust anchor and the issuer in
// the three steps of identity.CA.Rotate while HTTP requests and new
// opaque connections flow between two proxies with short certificates:
// none fails, and at the end both proxies hold certificates of the new
// issuer and trust only the new anchor.
func TestIssuerRotationUnderLoad(t *testing.T) {
	app := startHTTPApp(t, "app")
	echo := startEcho(t)
	ctlAddr, ctl, server, client, out := twoProxies(t, 6*time.Second, []string{"api", "echo"}, app.addr, echo)
	v, _ := pkis.Load(ctlAddr)
	pki := v.(*identitytest.PKI)
	in := server.InboundAddrs()
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default", Ports: []*meshv1.InboundPort{
		{Port: portOf(t, echo), Protocol: meshv1.Protocol_TCP}}})
	ctl.SetDestination("api", dest("api", "api.default", 1, 0, endpoints(apiID, in[0])))
	ctl.SetDestination("echo", dest("echo", "echo.default", 1, meshv1.Protocol_TCP, endpoints(apiID, in[1])))
	server.waitReady(t)
	client.waitReady(t)
	client.waitDestination(t, "api.default", 1, 1)
	client.waitDestination(t, "echo.default", 1, 1)

	l := startLoad(t, "http://"+out["api"]+"/who", 2)
	var tcpOK, tcpFailed atomic.Int64
	var lastTCPErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := echoOnce(out["echo"]); err != nil {
				tcpFailed.Add(1)
				lastTCPErr.Store(err.Error())
			} else {
				tcpOK.Add(1)
			}
		}
	}()
	renewals := func(p *proxy) int {
		_, m := p.adminGet(t, "/metrics")
		match := regexp.MustCompile(`(?m)^weft_identity_renewals_total (\d+)`).FindStringSubmatch(m)
		if match == nil {
			t.Fatalf("no weft_identity_renewals_total in %s", p.AdminAddr())
		}
		n, _ := strconv.Atoi(match[1])
		return n
	}
	// renewedAll waits until both proxies renewed twice more: at least one
	// full renewal under the new configuration each.
	renewedAll := func(step string) {
		t.Helper()
		s0, c0 := renewals(server), renewals(client)
		deadline := time.Now().Add(hangGuard)
		for renewals(server) < s0+2 || renewals(client) < c0+2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: proxies did not renew", step)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	newAnchor, newCert, newKey, err := identity.GenerateRoots(identitytest.TrustDomain, 0)
	if err != nil {
		t.Fatal(err)
	}
	both := append(append([]byte(nil), pki.AnchorPEM...), newAnchor...)
	steps := []struct {
		name            string
		anchors         []byte
		issuerCert, key []byte
	}{
		{"1 old issuer, both anchors", both, pki.IssuerCertPEM, pki.IssuerKeyPEM},
		{"2 new issuer, both anchors", both, newCert, newKey},
		{"3 new issuer, new anchor only", newAnchor, newCert, newKey},
	}
	for _, st := range steps {
		is, err := identity.LoadIssuer(st.anchors, st.issuerCert, st.key)
		if err != nil {
			t.Fatalf("step %s: %v", st.name, err)
		}
		if err := pki.CA.Rotate(is); err != nil {
			t.Fatalf("step %s: %v", st.name, err)
		}
		renewedAll(st.name)
	}
	close(stop)
	wg.Wait()
	l.end()
	if f := l.failures.Load(); f != 0 || l.ok.Load() == 0 {
		t.Errorf("%d HTTP requests failed, %d succeeded (last error: %s)", f, l.ok.Load(), l.lastErr)
	}
	if f := tcpFailed.Load(); f != 0 || tcpOK.Load() == 0 {
		t.Errorf("%d opaque connections failed, %d succeeded (last error: %v)", f, tcpOK.Load(), lastTCPErr.Load())
	}
	// The server proxy now presents a certificate of the new issuer: a
	// client trusting only the new anchor accepts it.
	newOnly, err := mtls.ParseBundlePEM(newAnchor)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := transport.NewMTLS(pki.Leaf(t, "web"), newOnly).Dial(ctx, in[1], apiID, transport.TCP)
	if err != nil {
		t.Fatalf("after rotation, the server's certificate does not chain to the new anchor alone: %v", err)
	}
	c.Close()
}
