package outbound

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/discovery"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// idleDiscovery is a discovery client that never runs: no snapshot ever
// arrives.
func idleDiscovery(t *testing.T) *discovery.Client {
	t.Helper()
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return discovery.New(discovery.Config{Conn: conn})
}

func TestNoConfigurationYet(t *testing.T) {
	s := New(Config{Authority: "api", Transport: &transport.Preamble{}, Discovery: idleDiscovery(t), Metrics: metrics.New(), ConfigWait: 10 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "no configuration for api.default from the controller yet (is weft-controller reachable?)"
	if resp.StatusCode != 503 || resp.Header.Get(proxyerr.Header) != want {
		t.Fatalf("got %d %q %q, want 503 %q", resp.StatusCode, resp.Header.Get(proxyerr.Header), body, want)
	}
}

func snapshot(version uint64, eps ...*meshv1.Endpoint) *meshv1.DestinationSnapshot {
	return &meshv1.DestinationSnapshot{Authority: "api", Version: version, Exists: true, Service: "api.demo",
		Backends: []*meshv1.Backend{{Service: "api.demo", Weight: 1, Endpoints: eps}}}
}

func TestApplyKeepsAndReplacesUpstreams(t *testing.T) {
	s := New(Config{Authority: "api", Transport: &transport.Preamble{}, Namespace: "demo", Discovery: idleDiscovery(t), Metrics: metrics.New()})
	s.apply(snapshot(1, &meshv1.Endpoint{Address: "127.0.0.1:1", Meshed: true}, &meshv1.Endpoint{Address: "127.0.0.1:2", Meshed: true}))
	first := s.state.Load().upstreams
	s.apply(snapshot(2, &meshv1.Endpoint{Address: "127.0.0.1:1", Meshed: true}, &meshv1.Endpoint{Address: "127.0.0.1:3", Meshed: false}))
	second := s.state.Load().upstreams
	s.apply(snapshot(3, &meshv1.Endpoint{Address: "127.0.0.1:1", Meshed: false}))
	third := s.state.Load().upstreams

	tests := []struct {
		name string
		got  bool
	}{
		{"kept endpoint keeps its upstream", second["127.0.0.1:1"] == first["127.0.0.1:1"]},
		{"removed endpoint is gone", second["127.0.0.1:2"] == nil},
		{"new endpoint has an upstream", second["127.0.0.1:3"] != nil && !second["127.0.0.1:3"].Meshed()},
		{"meshing change makes a new upstream", third["127.0.0.1:1"] != first["127.0.0.1:1"] && !third["127.0.0.1:1"].Meshed()},
		{"only current endpoints remain", len(third) == 1},
		{"balancer follows", s.bal.Len() == 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.got {
				t.Error("does not hold")
			}
		})
	}
	if name, version, n := s.Status(); name != "api.demo" || version != 3 || n != 1 {
		t.Errorf("Status() = %s, %d, %d", name, version, n)
	}
	for range 100 {
		_, u, err := s.pick(true)
		if err != nil || u.Addr() != "127.0.0.1:1" {
			t.Fatalf("pick = %v, %v", u, err)
		}
	}
}

func TestUnknownAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		snap *meshv1.DestinationSnapshot
		want string
	}{
		{"unknown", &meshv1.DestinationSnapshot{Authority: "api", Version: 1}, "unknown service api.default"},
		{"no endpoints", snapshot(1), "no endpoints for api.demo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Authority: "api", Transport: &transport.Preamble{}, Discovery: idleDiscovery(t), Metrics: metrics.New()})
			s.apply(tt.snap)
			_, _, err := s.pick(true)
			if pe := proxyerr.From(err); pe.Status != 503 || pe.Reason != tt.want {
				t.Fatalf("got %v, want 503 %q", err, tt.want)
			}
		})
	}
}

// TestTLSSeriesOnlyWhenMeshed: a destination with an endpoint reached over
// mutual TLS has its tls="true" series, at zero, from the snapshot on; one
// reached only in plaintext has none.
func TestTLSSeriesOnlyWhenMeshed(t *testing.T) {
	for _, meshed := range []bool{false, true} {
		t.Run(fmt.Sprintf("meshed=%v", meshed), func(t *testing.T) {
			reg := metrics.New()
			s := New(Config{Authority: "api", Transport: transport.NewMTLS(nil, nil), Namespace: "demo", Discovery: idleDiscovery(t), Metrics: reg})
			s.apply(snapshot(1, &meshv1.Endpoint{Address: "127.0.0.1:1", Meshed: meshed}))
			mfs, err := metricstest.Gather(reg)
			if err != nil {
				t.Fatal(err)
			}
			tlsValues := map[string]bool{}
			for _, mf := range mfs {
				if mf.GetName() != "weft_requests_total" {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "tls" {
							tlsValues[l.GetValue()] = true
						}
					}
				}
			}
			if !tlsValues["false"] || tlsValues["true"] != meshed {
				t.Errorf("weft_requests_total has tls values %v, want false and, when meshed, true", tlsValues)
			}
		})
	}
}
