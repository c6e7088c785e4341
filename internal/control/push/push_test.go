package push

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/split"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hangGuard bounds every wait of a test; it is not a performance threshold.
const hangGuard = 30 * time.Second

type fixture struct {
	store *memory.Store
	srv   *Server
	conn  *grpc.ClientConn
	evals chan uint64
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: memory.New(""), evals: make(chan uint64, 100)}
	f.srv = New(f.store, Config{Debounce: time.Millisecond})
	f.srv.evaluated = func(v uint64) {
		select {
		case f.evals <- v:
		default:
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	f.srv.Register(g)
	served := make(chan struct{})
	go func() { defer close(served); _ = g.Serve(lis) }()
	f.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.conn.Close()
		f.srv.Shutdown()
		g.GracefulStop()
		<-served
	})
	return f
}

func (f *fixture) watch(t *testing.T, authority, proxyID string) grpc.ServerStreamingClient[meshv1.DestinationSnapshot] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	st, err := meshv1.NewDestinationsClient(f.conn).Watch(ctx, &meshv1.DestinationRequest{
		Authority: authority, Proxy: &meshv1.ProxyInfo{Id: proxyID, Workload: "web", Namespace: "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func recv[M any](t *testing.T, st grpc.ServerStreamingClient[M]) *M {
	t.Helper()
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

func ready(addr string) config.Endpoint {
	return config.Endpoint{Address: addr, Ready: true, Meshed: true, Identity: "spiffe://cluster.local/ns/default/sa/x"}
}

func addresses(b *meshv1.Backend) []string {
	var out []string
	for _, ep := range b.GetEndpoints() {
		out = append(out, ep.GetAddress())
	}
	return out
}

func TestDestinationAppearsAndUpdates(t *testing.T) {
	f := start(t)
	st := f.watch(t, "api:8080", "web-0")
	first := recv(t, st)
	if first.GetExists() || first.GetService() != "api.default" || first.GetAuthority() != "api:8080" {
		t.Fatalf("first snapshot: got %v, want exists=false service=api.default authority=api:8080", first)
	}
	key := config.Key("api", "default")
	f.store.SetService(config.Service{Name: "api", Protocol: config.ProtocolGRPC})
	f.store.UpsertEndpoint(key, ready("127.0.0.1:9001"))
	f.store.UpsertEndpoint(key, config.Endpoint{Address: "127.0.0.1:9002"}) // not ready
	want := f.store.Snapshot().Version
	var got *meshv1.DestinationSnapshot
	for got == nil || got.GetVersion() < want {
		got = recv(t, st)
	}
	if !got.GetExists() || got.GetProtocol() != meshv1.Protocol_GRPC {
		t.Fatalf("got %v, want exists with protocol GRPC", got)
	}
	if len(got.GetBackends()) != 1 || got.GetBackends()[0].GetService() != "api.default" || got.GetBackends()[0].GetWeight() != 1 {
		t.Fatalf("backends: got %v, want the service itself with weight 1", got.GetBackends())
	}
	if a := addresses(got.GetBackends()[0]); len(a) != 1 || a[0] != "127.0.0.1:9001" {
		t.Fatalf("endpoints: got %v, want only the ready 127.0.0.1:9001", a)
	}
	ep := got.GetBackends()[0].GetEndpoints()[0]
	if !ep.GetMeshed() || ep.GetIdentity() != "spiffe://cluster.local/ns/default/sa/x" {
		t.Fatalf("endpoint: got %v, want meshed with identity", ep)
	}
	sent := f.srv.Sent()["web-0"]
	if sent.Streams != 1 || sent.Destinations["api.default"] != got.GetVersion() {
		t.Fatalf("Sent: got %+v, want 1 stream and api.default at version %d", sent, got.GetVersion())
	}
}

func TestUnchangedNotResent(t *testing.T) {
	f := start(t)
	f.store.SetService(config.Service{Name: "api"})
	st := f.watch(t, "api", "web-0")
	first := recv(t, st)
	// A change to another service moves the version but not api's content.
	f.store.SetService(config.Service{Name: "other"})
	unrelated := f.store.Snapshot().Version
	for v := range f.evals {
		if v >= unrelated {
			break
		}
	}
	f.store.UpsertEndpoint(config.Key("api", "default"), ready("127.0.0.1:9001"))
	got := recv(t, st)
	if got.GetVersion() <= unrelated || len(addresses(got.GetBackends()[0])) != 1 {
		t.Fatalf("got %v, want the snapshot with the new endpoint (version > %d): an unchanged snapshot was re-sent", got, unrelated)
	}
	if got, want := f.srv.Sent()["web-0"].Destinations["api.default"], got.GetVersion(); got != want {
		t.Fatalf("sent version: got %d, want %d", got, want)
	}
	_ = first
}

func TestTrafficSplitBackends(t *testing.T) {
	f := start(t)
	for _, n := range []string{"mon-service", "mon-service-v1", "mon-service-v2"} {
		f.store.SetService(config.Service{Name: n})
	}
	f.store.UpsertEndpoint(config.Key("mon-service-v1", "default"), ready("127.0.0.1:9001"))
	f.store.UpsertEndpoint(config.Key("mon-service-v2", "default"), ready("127.0.0.1:9002"))
	st := f.watch(t, "mon-service.default.svc.cluster.local", "web-0")
	if got := recv(t, st); len(got.GetBackends()) != 1 || got.GetBackends()[0].GetService() != "mon-service.default" {
		t.Fatalf("before the split: got %v, want the root service as only backend", got.GetBackends())
	}
	_, err := f.store.Apply([]config.Resource{{
		APIVersion: "split.smi-spec.io/v1alpha1", Kind: split.Kind, Name: "canary", Namespace: "default",
		Spec: &split.TrafficSplit{Service: "mon-service", Backends: []split.Backend{{Service: "mon-service-v1", Weight: 95}, {Service: "mon-service-v2", Weight: 5}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := recv(t, st)
	type b struct {
		svc  string
		w    uint32
		addr string
	}
	var bs []b
	for _, be := range got.GetBackends() {
		bs = append(bs, b{be.GetService(), be.GetWeight(), addresses(be)[0]})
	}
	want := []b{{"mon-service-v1.default", 95, "127.0.0.1:9001"}, {"mon-service-v2.default", 5, "127.0.0.1:9002"}}
	if len(bs) != 2 || bs[0] != want[0] || bs[1] != want[1] {
		t.Fatalf("backends: got %v, want %v", bs, want)
	}
	if err := f.store.Delete("TrafficSplit/default/canary"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, st); len(got.GetBackends()) != 1 || got.GetBackends()[0].GetService() != "mon-service.default" {
		t.Fatalf("after delete: got %v, want the root service again", got.GetBackends())
	}
}

func TestInbound(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := meshv1.NewInboundClient(f.conn).Watch(ctx, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "api-1", Workload: "api", Namespace: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(t, st); got.GetKnown() {
		t.Fatalf("got %v, want known=false for an unregistered proxy", got)
	}
	f.store.SetProxy(config.Proxy{ID: "api-1", Service: "api", Ports: []config.InboundPort{{Port: 9001, Protocol: config.ProtocolHTTP1}}})
	got := recv(t, st)
	if !got.GetKnown() || got.GetService() != "api.default" || len(got.GetPorts()) != 1 || got.GetPorts()[0].GetPort() != 9001 || got.GetPorts()[0].GetProtocol() != meshv1.Protocol_HTTP1 {
		t.Fatalf("got %v, want api.default with port 9001 http1", got)
	}
	if s := f.srv.Sent()["api-1"]; s.Inbound != got.GetVersion() || s.Streams != 1 {
		t.Fatalf("Sent: got %+v, want inbound version %d and 1 stream", s, got.GetVersion())
	}
	cancel()
	deadline := time.Now().Add(hangGuard)
	for {
		if _, ok := f.srv.Sent()["api-1"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy still listed after its only stream ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInboundByWorkload(t *testing.T) {
	snap := &config.Snapshot{Version: 7, Proxies: map[string]*config.Proxy{
		"api-1": {ID: "api-1", Service: "api", Namespace: "default", Ports: []config.InboundPort{{Port: 2}}},
		"api-0": {ID: "api-0", Service: "api", Namespace: "default", Ports: []config.InboundPort{{Port: 1}}},
	}}
	got := Inbound(snap, &meshv1.ProxyInfo{Id: "unregistered", Workload: "api"})
	if !got.GetKnown() || got.GetPorts()[0].GetPort() != 1 {
		t.Fatalf("got %v, want the ports of api-0", got)
	}
	if got := Inbound(snap, &meshv1.ProxyInfo{Id: "x", Workload: "api", Namespace: "demo"}); got.GetKnown() {
		t.Fatalf("got %v, want unknown in another namespace", got)
	}
}

func TestInvalidRequests(t *testing.T) {
	f := start(t)
	st := f.watch(t, "", "web-0")
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty authority: got %v, want InvalidArgument", err)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	f := start(t)
	st := f.watch(t, "api", "web-0")
	recv(t, st)
	f.srv.Shutdown()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Shutdown: got %v, want io.EOF", err)
	}
}

// TestStreamsShareSnapshots checks that streams asking for the same
// destination get one shared message per snapshot version, and that each
// still receives every change.
func TestStreamsShareSnapshots(t *testing.T) {
	f := start(t)
	f.store.SetService(config.Service{Name: "api"})
	a, b := f.watch(t, "api", "web-0"), f.watch(t, "api", "web-1")
	other := f.watch(t, "api:8080", "web-2") // another authority: its own message
	recv(t, a)
	recv(t, b)
	recv(t, other)
	f.store.UpsertEndpoint(config.Key("api", "default"), ready("127.0.0.1:9001"))
	want := f.store.Snapshot().Version
	for _, st := range []grpc.ServerStreamingClient[meshv1.DestinationSnapshot]{a, b, other} {
		var got *meshv1.DestinationSnapshot
		for got == nil || got.GetVersion() < want {
			got = recv(t, st)
		}
		if len(addresses(got.GetBackends()[0])) != 1 {
			t.Fatalf("got %v, want the new endpoint", got)
		}
	}
	g := f.srv.cache.gen(f.store.Snapshot())
	g.mu.Lock()
	n := len(g.entries)
	g.mu.Unlock()
	if n != 2 {
		t.Fatalf("cached messages for version %d: got %d, want 2 (one per authority, shared by the streams)", want, n)
	}
	if e := g.destination(config.Key("api", "default"), "api"); e.prepared == nil {
		t.Fatal("the shared message was not encoded once for the streams (no PreparedMsg)")
	}
}

// TestBackendEndpoints: a backend lists the ready endpoints of the port
// asked for, by address, each address once.
func TestBackendEndpoints(t *testing.T) {
	snap := &config.Snapshot{Services: map[config.ServiceKey]*config.Service{
		config.Key("api", ""): {Name: "api", Namespace: "default", Ports: []config.ServicePort{{Name: "http", Port: 80}, {Name: "admin", Port: 9000}},
			Endpoints: []config.Endpoint{
				{Address: "10.0.0.3:8080", PortName: "http", Ready: true, Identity: "third"},
				{Address: "10.0.0.1:8080", PortName: "http", Ready: true, Identity: "first"},
				{Address: "10.0.0.2:8080", PortName: "http", Ready: false},
				{Address: "10.0.0.1:8080", PortName: "http", Ready: true, Identity: "duplicate"},
				{Address: "10.0.0.1:9000", PortName: "admin", Ready: true},
			}},
	}}
	for _, tc := range []struct {
		port uint32
		want []string
	}{
		{80, []string{"10.0.0.1:8080 first", "10.0.0.3:8080 third"}},
		{0, []string{"10.0.0.1:8080 first", "10.0.0.1:9000 ", "10.0.0.3:8080 third"}},
	} {
		var got []string
		for _, ep := range backend(snap, config.Key("api", ""), tc.port, 1).GetEndpoints() {
			got = append(got, ep.GetAddress()+" "+ep.GetIdentity())
		}
		if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
			t.Errorf("port %d: endpoints %q, want %q", tc.port, got, tc.want)
		}
	}
}
