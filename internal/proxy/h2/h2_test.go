package h2

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"weft.dev/weft/internal/proxy/proxyerr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// h2cBackend serves handler over h2c on loopback.
func h2cBackend(t *testing.T, handler http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// staticRouter sends everything to one address, or fails with err.
type staticRouter struct {
	tr   *http.Transport
	addr string
	err  error

	mu      sync.Mutex
	results []Result
}

func (r *staticRouter) RouteHTTP2(*http.Request) (Target, error) {
	if r.err != nil {
		return Target{}, r.err
	}
	return Target{Transport: r.tr, Addr: r.addr, Done: func(res Result) {
		r.mu.Lock()
		r.results = append(r.results, res)
		r.mu.Unlock()
	}}, nil
}

func (r *staticRouter) last() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return Result{}
	}
	return r.results[len(r.results)-1]
}

func newRouter(t *testing.T, addr string) *staticRouter {
	tr := NewTransport(addr, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	t.Cleanup(tr.CloseIdleConnections)
	return &staticRouter{tr: tr, addr: addr}
}

// startProxy serves s on loopback and returns its address.
func startProxy(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.ServeConn(context.Background(), c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func h2cClient(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

func TestPlainHTTP2Bodies(t *testing.T) {
	backend := h2cBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Len", strconv.FormatInt(n, 10))
		w.Header().Set("X-Authority", r.Host)
		w.WriteHeader(http.StatusCreated)
		// Echo a body of the same size back: the proxy must stream both ways.
		io.CopyN(w, zeros{}, n)
		w.Header().Set("X-Sum", hex.EncodeToString(h.Sum(nil)))
	}))
	router := newRouter(t, backend)
	proxy := startProxy(t, NewServer(Config{Router: router}))
	client := h2cClient(t)

	tests := []struct {
		name string
		size int
	}{
		{"0 B", 0},
		{"1 KiB", 1 << 10},
		{"10 MiB", 10 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := make([]byte, tt.size)
			rand.Read(body)
			want := sha256.Sum256(body)
			req, _ := http.NewRequest("POST", "http://"+proxy+"/upload?x=1", bytes.NewReader(body))
			req.Host = "api.default"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{strconv.Itoa(resp.StatusCode), resp.Header.Get("X-Len"), strconv.FormatInt(n, 10), resp.Trailer.Get("X-Sum"), resp.Header.Get("X-Authority")}
			wantS := []string{"201", strconv.Itoa(tt.size), strconv.Itoa(tt.size), hex.EncodeToString(want[:]), "api.default"}
			if !equal(got, wantS) {
				t.Errorf("got %v, want %v", got, wantS)
			}
			if res := router.last(); res.Status != 201 || res.Failure() {
				t.Errorf("Done got %+v", res)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// grpcBackend serves the standard health service; service "down" is
// NOT_SERVING, unknown services are NOT_FOUND.
func grpcBackend(t *testing.T) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

func grpcClient(t *testing.T, addr string) healthpb.HealthClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func TestGRPC(t *testing.T) {
	backend, hs := grpcBackend(t)
	router := newRouter(t, backend)
	proxy := startProxy(t, NewServer(Config{Router: router}))
	client := grpcClient(t, proxy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("got %v", resp.GetStatus())
		}
		if res := router.last(); res.GRPCStatus != 0 || res.Failure() {
			t.Fatalf("Done got %+v", res)
		}
	})
	t.Run("status passes through", func(t *testing.T) {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		if got := status.Code(err); got != codes.NotFound {
			t.Fatalf("got %v, want NotFound", err)
		}
		if res := router.last(); res.GRPCStatus != int(codes.NotFound) || !res.Failure() {
			t.Fatalf("Done got %+v", res)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := client.Watch(sctx, &healthpb.HealthCheckRequest{Service: "api"})
		if err != nil {
			t.Fatal(err)
		}
		want := []healthpb.HealthCheckResponse_ServingStatus{
			healthpb.HealthCheckResponse_SERVING,
			healthpb.HealthCheckResponse_NOT_SERVING,
			healthpb.HealthCheckResponse_SERVING,
		}
		for i, w := range want {
			got, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if got.GetStatus() != w {
				t.Fatalf("message %d: got %v, want %v", i, got.GetStatus(), w)
			}
			// Each message arrives before the next change is made: the
			// proxy streams instead of buffering.
			if i == 0 {
				hs.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
			} else if i == 1 {
				hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
			}
		}
	})
}

func TestProxyErrors(t *testing.T) {
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()
	tests := []struct {
		name       string
		routeErr   error
		wantStatus int
		wantReason string
	}{
		{"no endpoints", proxyerr.New(503, "no endpoints for api.default"), 503, "no endpoints for api.default"},
		{"unknown service", proxyerr.New(503, "unknown service api.default"), 503, "unknown service api.default"},
		{"refused", nil, 502, "connect to " + refused + ": refused"},
		{"plain error", errors.New("boom"), 502, "proxy error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			router := newRouter(t, refused)
			router.err = tt.routeErr
			proxy := startProxy(t, NewServer(Config{Router: router}))

			resp, err := h2cClient(t).Get("http://" + proxy + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !bytes.HasPrefix([]byte(resp.Header.Get(proxyerr.Header)), []byte(tt.wantReason)) ||
				!bytes.HasPrefix(body, []byte(tt.wantReason)) {
				t.Errorf("got %d %q body %q, want %d %q", resp.StatusCode, resp.Header.Get(proxyerr.Header), body, tt.wantStatus, tt.wantReason)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = grpcClient(t, proxy).Check(ctx, &healthpb.HealthCheckRequest{})
			st := status.Convert(err)
			if st.Code() != codes.Unavailable || !bytes.HasPrefix([]byte(st.Message()), []byte(tt.wantReason)) {
				t.Errorf("gRPC got %v %q, want Unavailable %q", st.Code(), st.Message(), tt.wantReason)
			}
		})
	}
}

func TestShutdownLetsInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	backend := h2cBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	}))
	s := NewServer(Config{Router: newRouter(t, backend)})
	proxy := startProxy(t, s)
	client := h2cClient(t)
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Get("http://" + proxy + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := <-done
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if r.err != nil || r.body != "finished" {
		t.Fatalf("got %q, %v; want the in-flight request to finish", r.body, r.err)
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"no endpoints for api.default", "no endpoints for api.default"},
		{"100% down", "100%25 down"},
		{"é\n", "%C3%A9%0A"},
	}
	for _, tt := range tests {
		if got := encodeGRPCMessage(tt.in); got != tt.want {
			t.Errorf("encodeGRPCMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
