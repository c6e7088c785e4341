package sidecar_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/proxy/discovery/discoverytest"
	"weft.dev/weft/internal/proxy/sidecar"
)

func TestMain(m *testing.M) {
	encoding.RegisterCodec(rawCodec{})
	goleak.VerifyTestMain(m)
}

// hangGuard bounds waits that only a broken feature would exhaust.
const hangGuard = time.Minute

// ---- applications behind the proxies ----

// httpApp answers HTTP/1.1 and h2c on one port:
//
//	POST /sum   -> 200, body "<sha256 of request body> <length>"
//	GET  /who   -> 200, body name
//	GET  /slow  -> blocks until release is closed, then "slow done"
type httpApp struct {
	name    string
	addr    string
	hits    atomic.Int64
	release chan struct{}
	started chan struct{}
}

func startHTTPApp(t testing.TB, name string) *httpApp {
	t.Helper()
	a := &httpApp{name: name, release: make(chan struct{}), started: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sum", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%x %d proto=%s", h.Sum(nil), n, r.Proto)
	})
	mux.HandleFunc("GET /who", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		io.WriteString(w, a.name)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		a.started <- struct{}{}
		<-a.release
		io.WriteString(w, "slow done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a.addr = ln.Addr().String()
	return a
}

// rawCodec lets a tiny gRPC service exchange raw bytes without protos.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string                        { return "raw" }
func echoChat(_ any, stream grpc.ServerStream) error { return chat(stream) }

// chat echoes every message, upper-cased, until the client half-closes.
func chat(stream grpc.ServerStream) error {
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		out := []byte(strings.ToUpper(string(msg)))
		if err := stream.SendMsg(&out); err != nil {
			return err
		}
	}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "weft.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Chat", Handler: echoChat, ServerStreams: true, ClientStreams: true,
	}},
}

// startGRPCApp serves the health service (service "api" SERVING) and the
// raw-bytes Echo service.
func startGRPCApp(t testing.TB) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&echoDesc, struct{}{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

// startEcho serves a TCP echo that half-closes after the client does.
func startEcho(t testing.TB) string {
	t.Helper()
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ---- proxies ----

type proxy struct {
	*sidecar.Sidecar
	cancel context.CancelFunc
	done   chan error
}

// startProxy runs a sidecar until the test ends (or stop is called).
func startProxy(t testing.TB, cfg sidecar.Config) *proxy {
	t.Helper()
	cfg.Admin = "127.0.0.1:0"
	if v, ok := pkis.Load(cfg.Controller); ok && cfg.TrustAnchors == nil {
		pki := v.(*identitytest.PKI)
		cfg.TrustAnchors = pki.AnchorPEM
		cfg.Token = pki.Token(t, cfg.Service)
	}
	cfg.DetectTimeout = 200 * time.Millisecond
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 20 * time.Second
	}
	s, err := sidecar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{Sidecar: s, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- s.Run(ctx) }()
	select {
	case <-s.Bound():
	case err := <-p.done:
		t.Fatalf("proxy %s stopped: %v", cfg.ID, err)
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proxy) stop(t testing.TB) {
	t.Helper()
	p.cancel()
	if err := <-p.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	p.done <- nil // later stops return at once
}

func (p *proxy) adminGet(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady waits until /ready answers 200.
func (p *proxy) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		code, body := p.adminGet(t, "/ready")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not ready: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDestination waits until /status shows service at version with n
// endpoints.
func (p *proxy) waitDestination(t testing.TB, service string, version uint64, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		_, body := p.adminGet(t, "/status")
		var st struct {
			Destinations map[string]struct {
				Version   uint64 `json:"version"`
				Endpoints int    `json:"endpoints"`
			} `json:"destinations"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if d, ok := st.Destinations[service]; ok && d.Version == version && d.Endpoints == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination %s never reached version %d with %d endpoints: %s", service, version, n, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// apiID is the identity of the "api" workload.
var apiID = identitytest.ID("api")

// endpoints are meshed endpoints of the workload with identity id, or
// unmeshed ones when id is empty.
func endpoints(id string, addrs ...string) []*meshv1.Endpoint {
	var out []*meshv1.Endpoint
	for _, a := range addrs {
		out = append(out, &meshv1.Endpoint{Address: a, Meshed: id != "", Identity: id})
	}
	return out
}

// pkis holds the CA behind each fake controller, by its address.
var pkis sync.Map

// newController returns a stopped fake controller that serves over TLS
// with a CA of its own, as the real one does, and the Identity API.
func newController(t testing.TB, lifetime time.Duration) (*discoverytest.Controller, *identitytest.PKI) {
	t.Helper()
	pki := identitytest.New(t, lifetime)
	ctl := discoverytest.New()
	ctl.Serve(pki.Register, pki.ServerOption())
	return ctl, pki
}

// startController starts a controller of newController.
func startController(t testing.TB, lifetime time.Duration) (*discoverytest.Controller, string) {
	t.Helper()
	ctl, pki := newController(t, lifetime)
	addr, err := ctl.Start()
	if err != nil {
		t.Fatal(err)
	}
	pkis.Store(addr, pki)
	t.Cleanup(func() { ctl.Stop(); pkis.Delete(addr) })
	return ctl, addr
}

func dest(authority, service string, version uint64, proto meshv1.Protocol, eps []*meshv1.Endpoint) *meshv1.DestinationSnapshot {
	return &meshv1.DestinationSnapshot{
		Authority: authority, Version: version, Exists: true, Service: service, Protocol: proto,
		Backends: []*meshv1.Backend{{Service: service, Weight: 1, Endpoints: eps}},
	}
}

// mesh is two proxies: "web-0" (client side, outbound listeners) and
// "api-0" (server side, inbound listeners in front of the applications).
type mesh struct {
	ctl      *discoverytest.Controller
	app      *httpApp
	app2     *httpApp
	grpcApp  string
	health   *health.Server
	server   *proxy
	client   *proxy
	out      map[string]string // outbound listen address by authority
	inHTTP   string            // api-0 inbound addresses
	inHTTP2  string
	inGRPC   string
	inTCP    string
	refused  string
	echoAddr string
}

func startMesh(t testing.TB, drain time.Duration) *mesh {
	t.Helper()
	m := &mesh{out: map[string]string{}}
	var ctlAddr string
	m.ctl, ctlAddr = startController(t, 0)
	m.app = startHTTPApp(t, "app-1")
	m.app2 = startHTTPApp(t, "app-2")
	m.grpcApp, m.health = startGRPCApp(t)
	m.echoAddr = startEcho(t)
	m.refused = closedPort(t)

	m.server = startProxy(t, sidecar.Config{
		ID: "api-0", Service: "api", Controller: ctlAddr, DrainTimeout: drain,
		Inbound: []sidecar.InboundSpec{
			{Listen: "127.0.0.1:0", App: m.app.addr},
			{Listen: "127.0.0.1:0", App: m.app2.addr},
			{Listen: "127.0.0.1:0", App: m.grpcApp, Protocol: "grpc"},
			{Listen: "127.0.0.1:0", App: m.echoAddr, Protocol: "tcp"},
		},
	})
	in := m.server.InboundAddrs()
	m.inHTTP, m.inHTTP2, m.inGRPC, m.inTCP = in[0], in[1], in[2], in[3]

	m.ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default"})
	m.ctl.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "web.default"})
	m.ctl.SetDestination("api", dest("api", "api.default", 1, meshv1.Protocol_PROTOCOL_UNSPECIFIED, endpoints(apiID, m.inHTTP)))
	m.ctl.SetDestination("grpc-api", dest("grpc-api", "grpc-api.default", 1, meshv1.Protocol_GRPC, endpoints(apiID, m.inGRPC)))
	m.ctl.SetDestination("echo", dest("echo", "echo.default", 1, meshv1.Protocol_TCP, endpoints(apiID, m.inTCP)))
	m.ctl.SetDestination("echo-detect", dest("echo-detect", "echo-detect.default", 1, meshv1.Protocol_PROTOCOL_UNSPECIFIED, endpoints(apiID, m.inTCP)))
	m.ctl.SetDestination("empty", dest("empty", "empty.default", 1, meshv1.Protocol_PROTOCOL_UNSPECIFIED, nil))
	m.ctl.SetDestination("refused", dest("refused", "refused.default", 1, meshv1.Protocol_PROTOCOL_UNSPECIFIED, endpoints("", m.refused)))
	m.ctl.SetDestination("direct", dest("direct", "direct.default", 1, meshv1.Protocol_PROTOCOL_UNSPECIFIED, endpoints("", m.app2.addr)))

	authorities := []string{"api", "grpc-api", "echo", "echo-detect", "nope", "empty", "refused", "direct"}
	var outs []sidecar.OutboundSpec
	for _, a := range authorities {
		outs = append(outs, sidecar.OutboundSpec{Listen: "127.0.0.1:0", Authority: a})
	}
	m.client = startProxy(t, sidecar.Config{ID: "web-0", Service: "web", Controller: ctlAddr, Outbound: outs, DrainTimeout: drain})
	for i, addr := range m.client.OutboundAddrs() {
		m.out[authorities[i]] = addr
	}
	m.server.waitReady(t)
	m.client.waitReady(t)
	m.client.waitDestination(t, "api.default", 1, 1)
	m.client.waitDestination(t, "grpc-api.default", 1, 1)
	m.client.waitDestination(t, "echo.default", 1, 1)
	return m
}

// curl runs /usr/bin/curl and returns status code, headers and body.
func curl(t *testing.T, args ...string) (code string, headers, body string) {
	t.Helper()
	dir := t.TempDir()
	hfile, bfile := filepath.Join(dir, "h"), filepath.Join(dir, "b")
	args = append([]string{"-sS", "--max-time", "60", "-D", hfile, "-o", bfile, "-w", "%{http_code}"}, args...)
	out, err := exec.Command("/usr/bin/curl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	h, _ := os.ReadFile(hfile)
	b, _ := os.ReadFile(bfile)
	return string(out), string(h), string(b)
}

func TestHTTPThroughTwoProxies(t *testing.T) {
	m := startMesh(t, 0)
	sizes := []struct {
		name string
		size int
	}{{"0 B", 0}, {"1 KiB", 1 << 10}, {"10 MiB", 10 << 20}}
	protos := []struct {
		name      string
		flag      string
		wantProto string
	}{
		{"curl HTTP/1.1", "--http1.1", "proto=HTTP/1.1"},
		{"curl HTTP/2 prior knowledge", "--http2-prior-knowledge", "proto=HTTP/2.0"},
	}
	dir := t.TempDir()
	for _, p := range protos {
		for _, sz := range sizes {
			t.Run(p.name+" "+sz.name, func(t *testing.T) {
				payload := make([]byte, sz.size)
				for i := range payload {
					payload[i] = byte(i * 7)
				}
				f := filepath.Join(dir, fmt.Sprintf("body-%d", sz.size))
				if err := os.WriteFile(f, payload, 0o600); err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(payload)
				code, _, body := curl(t, p.flag, "--data-binary", "@"+f, "-H", "Content-Type: application/octet-stream",
					"http://"+m.out["api"]+"/sum")
				want := fmt.Sprintf("%s %d %s", hex.EncodeToString(sum[:]), sz.size, p.wantProto)
				if code != "200" || body != want {
					t.Errorf("got %s %q, want 200 %q", code, body, want)
				}
			})
		}
	}

	t.Run("unmeshed endpoint", func(t *testing.T) {
		code, _, body := curl(t, "http://"+m.out["direct"]+"/who")
		if code != "200" || body != "app-2" {
			t.Errorf("got %s %q, want 200 app-2", code, body)
		}
	})

	errs := []struct {
		name       string
		authority  string
		flag       string
		wantCode   string
		wantReason string
	}{
		{"unknown service", "nope", "--http1.1", "503", "unknown service nope.default"},
		{"no endpoints", "empty", "--http1.1", "503", "no endpoints for empty.default"},
		{"refused", "refused", "--http1.1", "502", "connect to " + "REFUSED" + ": refused"},
		{"unknown service h2", "nope", "--http2-prior-knowledge", "503", "unknown service nope.default"},
		{"no endpoints h2", "empty", "--http2-prior-knowledge", "503", "no endpoints for empty.default"},
		{"refused h2", "refused", "--http2-prior-knowledge", "502", "connect to " + "REFUSED" + ": refused"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			reason := strings.ReplaceAll(tt.wantReason, "REFUSED", m.refused)
			code, headers, body := curl(t, tt.flag, "http://"+m.out[tt.authority]+"/who")
			if code != tt.wantCode || !strings.Contains(strings.ToLower(headers), strings.ToLower("weft-proxy-error: "+reason)) ||
				!strings.HasPrefix(body, reason) {
				t.Errorf("got %s, headers %q, body %q; want %s with reason %q", code, headers, body, tt.wantCode, reason)
			}
		})
	}

	t.Run("metrics", func(t *testing.T) {
		_, client := m.client.adminGet(t, "/metrics")
		_, server := m.server.adminGet(t, "/metrics")
		for _, want := range []string{
			`weft_requests_total{direction="outbound",service="api.default",tls="true"} 6`,
			`weft_responses_total{classification="success",direction="outbound",service="api.default",status_code="200",tls="true"} 6`,
			`weft_responses_total{classification="failure",direction="outbound",service="nope.default",status_code="503",tls="false"} 2`,
			`weft_responses_total{classification="failure",direction="outbound",service="refused.default",status_code="502",tls="false"} 2`,
			`weft_response_latency_seconds_count{direction="outbound",service="api.default",tls="true"} 6`,
		} {
			if !strings.Contains(client, want) {
				t.Errorf("client metrics lack %s", want)
			}
		}
		if want := `weft_requests_total{direction="inbound",service="api.default",tls="true"} 6`; !strings.Contains(server, want) {
			t.Errorf("server metrics lack %s", want)
		}
	})
}

func TestGRPCThroughTwoProxies(t *testing.T) {
	m := startMesh(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	conn, err := grpc.NewClient(m.out["grpc-api"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	t.Run("unary", func(t *testing.T) {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("got %v, %v; want SERVING", resp, err)
		}
	})
	t.Run("grpc-status passes through", func(t *testing.T) {
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
		if got := statusCode(err); got != "NotFound" {
			t.Fatalf("got %v, want NotFound", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := hc.Watch(sctx, &healthpb.HealthCheckRequest{Service: "api"})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []healthpb.HealthCheckResponse_ServingStatus{
			healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING,
		} {
			got, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if got.GetStatus() != want {
				t.Fatalf("message %d: got %v, want %v", i, got.GetStatus(), want)
			}
			// The next change happens only after this message arrived;
			// the last one leaves the service SERVING.
			switch i {
			case 0:
				m.health.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
			case 1:
				m.health.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
			}
		}
	})
	t.Run("bidi streaming", func(t *testing.T) {
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/weft.test.Echo/Chat", grpc.CallContentSubtype("raw"))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range []string{"hello", "", strings.Repeat("x", 100<<10), "bye"} {
			in := []byte(msg)
			if err := stream.SendMsg(&in); err != nil {
				t.Fatal(err)
			}
			var out []byte
			if err := stream.RecvMsg(&out); err != nil {
				t.Fatal(err)
			}
			if string(out) != strings.ToUpper(msg) {
				t.Fatalf("got %d bytes %.20q, want %.20q", len(out), out, strings.ToUpper(msg))
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var out []byte
		if err := stream.RecvMsg(&out); err != io.EOF {
			t.Fatalf("got %v after half-close, want io.EOF (status OK)", err)
		}
	})
	t.Run("concurrent calls share connections", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"})
					if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
						err = fmt.Errorf("status %v", resp.GetStatus())
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("proxy errors are UNAVAILABLE", func(t *testing.T) {
		for _, a := range []string{"nope", "empty", "refused"} {
			c, err := grpc.NewClient(m.out[a], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
			c.Close()
			if got := statusCode(err); got != "Unavailable" {
				t.Errorf("%s: got %v, want Unavailable", a, err)
			}
			if !strings.Contains(fmt.Sprint(err), a+".default") && !strings.Contains(fmt.Sprint(err), m.refused) {
				t.Errorf("%s: message %v does not say why", a, err)
			}
		}
	})
	t.Run("metrics classify grpc-status", func(t *testing.T) {
		_, client := m.client.adminGet(t, "/metrics")
		// NOT_FOUND, and the Watch stream the client cancelled.
		want := `weft_responses_total{classification="failure",direction="outbound",service="grpc-api.default",status_code="200",tls="true"} 2`
		if !strings.Contains(client, want) {
			t.Errorf("client metrics lack %s:\n%s", want, grep(client, "grpc-api"))
		}
		want = `weft_responses_total{classification="success",direction="outbound",service="grpc-api.default",status_code="200",tls="true"} 202`
		if !strings.Contains(client, want) {
			t.Errorf("client metrics lack %s:\n%s", want, grep(client, "grpc-api"))
		}
	})
}

// grep returns the lines of s containing sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func statusCode(err error) string { return status.Code(err).String() }

func TestTCPThroughTwoProxies(t *testing.T) {
	m := startMesh(t, 0)
	tests := []struct {
		name      string
		authority string
		size      int
	}{
		{"declared tcp 1 MiB", "echo", 1 << 20},
		{"declared tcp empty", "echo", 0},
		{"detected opaque 64 KiB", "echo-detect", 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.out[tt.authority])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, tt.size)
			for i := range payload {
				payload[i] = byte(i)
			}
			// Binary first bytes: detection says opaque.
			if tt.size > 0 {
				payload[0] = 0
			}
			go func() {
				c.Write(payload)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(payload) {
				t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(payload))
			}
		})
	}
	t.Run("unknown service closes", func(t *testing.T) {
		c, err := net.Dial("tcp", m.out["nope"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0, 1, 2})
		c.SetReadDeadline(time.Now().Add(hangGuard))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err == nil || err == os.ErrDeadlineExceeded {
			t.Fatalf("got %d, %v; want the connection closed", n, err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		_, client := m.client.adminGet(t, "/metrics")
		for _, want := range []string{
			`weft_tcp_open_total{direction="outbound",service="echo.default",tls="true"} 2`,
			`weft_tcp_close_total{direction="outbound",service="echo.default",tls="true"} 2`,
			`weft_tcp_read_bytes_total{direction="outbound",service="echo.default",tls="true"} 1.048576e+06`,
			`weft_tcp_write_bytes_total{direction="outbound",service="echo.default",tls="true"} 1.048576e+06`,
			`weft_tcp_open_connections{direction="outbound",service="echo.default",tls="true"} 0`,
			// Opaque connections are not requests.
			`weft_requests_total{direction="outbound",service="echo.default",tls="true"} 0`,
		} {
			if !strings.Contains(client, want) {
				t.Errorf("client metrics lack %s", want)
			}
		}
	})
}

// load sends GET /who through the client proxy from several goroutines
// until stop is closed, and counts answers by body and failures.
type load struct {
	wg       sync.WaitGroup
	stop     chan struct{}
	ok       atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	lastErr  string
	tr       *http.Transport
	// done counts the requests each worker finished.
	done []atomic.Int64
}

func startLoad(t *testing.T, url string, workers int) *load {
	l := &load{stop: make(chan struct{}), tr: &http.Transport{MaxIdleConnsPerHost: workers}, done: make([]atomic.Int64, workers)}
	client := &http.Client{Transport: l.tr, Timeout: hangGuard}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.done[w].Add(1) // unblocks waitEach after stop
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url)
				l.done[w].Add(1)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
					}
				}
				if err != nil {
					l.failures.Add(1)
					l.mu.Lock()
					l.lastErr = err.Error()
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.tr.CloseIdleConnections()
}

// waitEach waits until every worker finished the request it had in flight
// when waitEach was called.
func (l *load) waitEach(t *testing.T) {
	t.Helper()
	start := make([]int64, len(l.done))
	for i := range l.done {
		start[i] = l.done[i].Load()
	}
	deadline := time.Now().Add(hangGuard)
	for i := range l.done {
		for l.done[i].Load() == start[i] {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d stalled", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// waitOK waits until at least n more requests succeeded.
func (l *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(hangGuard)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d ok, %d failures", l.ok.Load(), l.failures.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControllerGoneKeepsTraffic(t *testing.T) {
	m := startMesh(t, 0)
	l := startLoad(t, "http://"+m.out["api"]+"/who", 4)
	l.waitOK(t, 50)
	m.ctl.Stop()
	l.waitOK(t, 300)
	// Endpoints stay known and the proxies stay ready.
	m.client.waitDestination(t, "api.default", 1, 1)
	if code, body := m.client.adminGet(t, "/ready"); code != 200 {
		t.Errorf("client not ready after the controller went away: %s", body)
	}
	l.end()
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d requests failed while the controller was gone (last: %s)", f, l.lastErr)
	}
	// A restarted controller with a new snapshot is applied.
	m.ctl.SetDestination("api", dest("api", "api.default", 2, 0, endpoints(apiID, m.inHTTP, m.inHTTP2)))
	if _, err := m.ctl.Start(); err != nil {
		t.Fatal(err)
	}
	m.client.waitDestination(t, "api.default", 2, 2)
}

func TestRemovedEndpointGetsNoRequests(t *testing.T) {
	m := startMesh(t, 0)
	m.ctl.SetDestination("api", dest("api", "api.default", 2, 0, endpoints(apiID, m.inHTTP, m.inHTTP2)))
	m.client.waitDestination(t, "api.default", 2, 2)
	l := startLoad(t, "http://"+m.out["api"]+"/who", 4)
	// Both endpoints serve.
	deadline := time.Now().Add(hangGuard)
	for m.app.hits.Load() == 0 || m.app2.hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not both endpoints got traffic: %d, %d", m.app.hits.Load(), m.app2.hits.Load())
		}
		l.waitOK(t, 10)
	}
	m.ctl.SetDestination("api", dest("api", "api.default", 3, 0, endpoints(apiID, m.inHTTP)))
	m.client.waitDestination(t, "api.default", 3, 1)
	// Requests routed before the update finish on the old endpoint.
	l.waitEach(t)
	before := m.app2.hits.Load()
	l.waitOK(t, 300)
	l.end()
	if got := m.app2.hits.Load(); got != before {
		t.Errorf("removed endpoint got %d more requests", got-before)
	}
	if f := l.failures.Load(); f != 0 {
		t.Errorf("%d requests failed across the update (last: %s)", f, l.lastErr)
	}
}

func TestDrainFinishesInFlight(t *testing.T) {
	tests := []struct {
		name string
		flag string
	}{
		{"HTTP/1.1", "--http1.1"},
		{"HTTP/2", "--http2-prior-knowledge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startMesh(t, hangGuard)
			type result struct{ code, body string }
			done := make(chan result, 1)
			go func() {
				out, _ := exec.Command("/usr/bin/curl", "-sS", "--max-time", "60", tt.flag, "-w", " %{http_code}",
					"http://"+m.out["api"]+"/slow").CombinedOutput()
				s := string(out)
				i := strings.LastIndexByte(s, ' ')
				done <- result{s[i+1:], s[:max(i, 0)]}
			}()
			<-m.app.started
			// Both proxies drain while the request is in flight.
			m.client.cancel()
			m.server.cancel()
			waitNotReady(t, m.client)
			close(m.app.release)
			r := <-done
			if r.code != "200" || r.body != "slow done" {
				t.Fatalf("in-flight request got %s %q, want 200 \"slow done\"", r.code, r.body)
			}
			for _, p := range []*proxy{m.client, m.server} {
				if err := <-p.done; err != nil {
					t.Errorf("Run after drain: %v", err)
				}
				p.done <- nil
			}
		})
	}
}

// waitNotReady waits until the proxy stopped accepting: its listeners are
// closed once the drain started.
func waitNotReady(t *testing.T, p *proxy) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		c, err := net.Dial("tcp", p.OutboundAddrs()[0])
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("proxy still accepts connections after cancel")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTLSAndServerFirst covers connections the proxy must not parse: TLS
// the application started itself (forwarded opaque, end to end), and a
// server-first protocol whose client stays silent until greeted.
func TestTLSAndServerFirst(t *testing.T) {
	ctl, ctlAddr := startController(t, 0)

	tlsApp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "over tls")
	}))
	t.Cleanup(tlsApp.Close)

	// greeter speaks first, then echoes one line.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gwg sync.WaitGroup
	gwg.Add(1)
	go func() {
		defer gwg.Done()
		for {
			c, err := gl.Accept()
			if err != nil {
				return
			}
			gwg.Add(1)
			go func() {
				defer gwg.Done()
				defer c.Close()
				io.WriteString(c, "220 greeter ready\r\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "250 "+line)
			}()
		}
	}()
	t.Cleanup(func() { gl.Close(); gwg.Wait() })

	// The inbound side serves only once it has its policy.
	ctl.SetInbound("mail-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "mail.default"})
	server := startProxy(t, sidecar.Config{ID: "mail-0", Service: "mail", Controller: ctlAddr,
		Inbound: []sidecar.InboundSpec{{Listen: "127.0.0.1:0", App: gl.Addr().String()}}})
	tlsAddr := strings.TrimPrefix(tlsApp.URL, "https://")
	ctl.SetDestination("secure", dest("secure", "secure.default", 1, 0, endpoints("", tlsAddr)))
	ctl.SetDestination("mail", dest("mail", "mail.default", 1, 0, endpoints(identitytest.ID("mail"), server.InboundAddrs()[0])))
	client := startProxy(t, sidecar.Config{ID: "web-0", Service: "web", Controller: ctlAddr,
		Outbound: []sidecar.OutboundSpec{{Listen: "127.0.0.1:0", Authority: "secure"}, {Listen: "127.0.0.1:0", Authority: "mail"}}})
	client.waitDestination(t, "secure.default", 1, 1)
	client.waitDestination(t, "mail.default", 1, 1)
	outs := client.OutboundAddrs()

	t.Run("TLS from the application", func(t *testing.T) {
		tr := tlsApp.Client().Transport.(*http.Transport).Clone()
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", outs[0])
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: hangGuard}).Get(tlsApp.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "over tls" {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("server speaks first", func(t *testing.T) {
		c, err := net.Dial("tcp", outs[1])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangGuard))
		br := bufio.NewReader(c)
		greeting, err := br.ReadString('\n')
		if err != nil || greeting != "220 greeter ready\r\n" {
			t.Fatalf("greeting %q, %v", greeting, err)
		}
		io.WriteString(c, "HELO weft\r\n")
		reply, err := br.ReadString('\n')
		if err != nil || reply != "250 HELO weft\r\n" {
			t.Fatalf("reply %q, %v", reply, err)
		}
	})
}

// TestInboundProtocols: clients that are not proxies reach the inbound
// side directly (health probes, unmeshed callers); a port the controller
// declares opaque is forwarded as TCP even though its traffic looks like
// HTTP, other ports are detected.
func TestInboundProtocols(t *testing.T) {
	ctl, ctlAddr := startController(t, 0)
	app := startHTTPApp(t, "app")
	_, portStr, _ := net.SplitHostPort(app.addr)
	var port uint32
	fmt.Sscan(portStr, &port)
	ctl.SetInbound("db-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "db.default",
		Ports: []*meshv1.InboundPort{{Port: port, Protocol: meshv1.Protocol_TCP}}})
	app2 := startHTTPApp(t, "app2")
	p := startProxy(t, sidecar.Config{ID: "db-0", Service: "db", Controller: ctlAddr,
		Inbound: []sidecar.InboundSpec{{Listen: "127.0.0.1:0", App: app.addr}, {Listen: "127.0.0.1:0", App: app2.addr}}})
	p.waitReady(t)
	tests := []struct {
		name     string
		flag     string
		inbound  int
		wantBody string
	}{
		{"declared opaque", "--http1.1", 0, "app"},
		{"detected HTTP/1.1", "--http1.1", 1, "app2"},
		{"detected HTTP/2", "--http2-prior-knowledge", 1, "app2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := curl(t, tt.flag, "http://"+p.InboundAddrs()[tt.inbound]+"/who")
			if code != "200" || body != tt.wantBody {
				t.Fatalf("got %s %q, want 200 %q", code, body, tt.wantBody)
			}
		})
	}
	_, metrics := p.adminGet(t, "/metrics")
	for _, want := range []string{
		// Every connection counts: the opaque one and the two HTTP ones.
		`weft_tcp_open_total{direction="inbound",service="db.default",tls="false"} 3`,
		// The opaque port was not parsed as HTTP; the others were.
		`weft_requests_total{direction="inbound",service="db.default",tls="false"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "db.default"))
		}
	}
}
