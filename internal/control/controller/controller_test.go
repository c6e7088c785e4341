package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const hangGuard = 30 * time.Second

const canary = `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: mon-service-canary}
spec:
  service: mon-service
  backends:
  - service: mon-service-v1
    weight: 95
  - service: mon-service-v2
    weight: 5
`

// run starts a controller on free ports and stops it at cleanup, checking
// that Run returns nil.
func run(t *testing.T, store *memory.Store) *Controller {
	t.Helper()
	c, err := New(Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: "tok", Store: store, ScrapeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(hangGuard):
		t.Fatal("controller never became ready")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(hangGuard):
			t.Error("Run did not return after cancel")
		}
	})
	return c
}

func TestApplyReachesWatchingProxy(t *testing.T) {
	store := memory.New("")
	for _, n := range []string{"mon-service", "mon-service-v1", "mon-service-v2"} {
		store.SetService(config.Service{Name: n, Protocol: config.ProtocolHTTP1})
	}
	store.UpsertEndpoint(config.Key("mon-service", "default"), config.Endpoint{Address: "127.0.0.1:9000", Ready: true})
	store.UpsertEndpoint(config.Key("mon-service-v1", "default"), config.Endpoint{Address: "127.0.0.1:9001", Ready: true})
	store.UpsertEndpoint(config.Key("mon-service-v2", "default"), config.Endpoint{Address: "127.0.0.1:9002", Ready: true})
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web"})
	c := run(t, store)

	conn := proxyConn(t, c, "web")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := meshv1.NewDestinationsClient(conn).Watch(ctx, &meshv1.DestinationRequest{
		Authority: "mon-service:80", Proxy: &meshv1.ProxyInfo{Id: "web-0", Workload: "web", Namespace: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if b := first.GetBackends(); len(b) != 1 || b[0].GetService() != "mon-service.default" {
		t.Fatalf("before apply: got %v, want mon-service itself", b)
	}

	req, err := http.NewRequest(http.MethodPost, "http://"+c.HTTPAddr()+"/api/v1/apply", strings.NewReader(canary))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("apply: %d %s", resp.StatusCode, body)
	}

	got, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, b := range got.GetBackends() {
		desc = append(desc, fmt.Sprintf("%s=%d@%s", b.GetService(), b.GetWeight(), b.GetEndpoints()[0].GetAddress()))
	}
	if got, want := strings.Join(desc, " "), "mon-service-v1.default=95@127.0.0.1:9001 mon-service-v2.default=5@127.0.0.1:9002"; got != want {
		t.Fatalf("backends after apply: got %s, want %s", got, want)
	}
	if got.GetProtocol() != meshv1.Protocol_HTTP1 {
		t.Fatalf("protocol: got %v, want HTTP1", got.GetProtocol())
	}

	// The status API reports what the proxy was sent.
	req, _ = http.NewRequest(http.MethodGet, "http://"+c.HTTPAddr()+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"connected": true`) || !strings.Contains(string(body), `"mon-service.default": `) {
		t.Fatalf("status: %s", body)
	}
}

func TestBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name       string
		grpc, http string
		want       string
	}{
		{"grpc", busy.Addr().String(), "127.0.0.1:0", "listen " + busy.Addr().String() + " (--grpc-addr): address already in use; stop the other program or choose another address"},
		{"http", "127.0.0.1:0", busy.Addr().String(), "listen " + busy.Addr().String() + " (--http-addr): address already in use; stop the other program or choose another address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{GRPCAddr: tt.grpc, HTTPAddr: tt.http, Token: "tok", Store: memory.New("")})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			err = c.Run(ctx)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			select {
			case <-c.Ready():
				t.Fatal("Ready closed although Run failed")
			default:
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Token: "t"}, "a configuration store is required"},
		{"no token", Config{Store: memory.New("")}, "a bearer token for the HTTP API is required"},
		{"bad address", Config{Token: "t", Store: memory.New(""), GRPCAddr: "8086"}, `--grpc-addr "8086"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	c, err := New(Config{Token: "t", Store: memory.New("")})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.GRPCAddr != DefaultGRPCAddr || c.cfg.HTTPAddr != DefaultHTTPAddr {
		t.Fatalf("defaults: got %s %s", c.cfg.GRPCAddr, c.cfg.HTTPAddr)
	}
}

func TestRunTwice(t *testing.T) {
	c := run(t, memory.New(""))
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Fatalf("second Run: got %v", err)
	}
}

func TestStopEndsWatches(t *testing.T) {
	store := memory.New("")
	c, err := New(Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: "tok", Store: store, ScrapeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	conn := proxyConn(t, c, "x")
	wctx, wcancel := context.WithTimeout(context.Background(), hangGuard)
	defer wcancel()
	st, err := meshv1.NewInboundClient(conn).Watch(wctx, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "x", Workload: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	ms, err := meshv1.NewMeshClient(conn).Stream(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Send(&meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Hello{Hello: &meshv1.ProxyInfo{Id: "x", Workload: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if err := ms.Send(&meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: &meshv1.Subscription{Inbound: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("watch after stop: got %v, want io.EOF", err)
	}
	// A Mesh stream is told goodbye; the proxy ends it (here: CloseSend).
	if m, err := ms.Recv(); err != nil || m.GetGoodbye() == nil {
		t.Fatalf("mesh stream after stop: got %v, %v, want goodbye", m, err)
	}
	if err := ms.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("mesh stream after goodbye: got %v, want io.EOF", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Run did not return")
	}
}
