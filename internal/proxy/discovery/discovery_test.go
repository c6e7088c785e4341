package discovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/discovery"
	"weft.dev/weft/internal/proxy/discovery/discoverytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hangGuard bounds a test that would otherwise hang on a broken feature.
const hangGuard = 30 * time.Second

func start(t *testing.T) (*discoverytest.Controller, *discovery.Client) {
	t.Helper()
	ctl := discoverytest.New()
	addr, err := ctl.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Stop)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := discovery.New(discovery.Config{
		Conn:       conn,
		Proxy:      &meshv1.ProxyInfo{Id: "web-0", Workload: "web", Namespace: "default"},
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ctl, c
}

// waitFor returns the first snapshot of w for which ok holds.
func waitFor[T any](t *testing.T, w *discovery.Watch[T], ok func(*T) bool) *T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for {
		ch := w.Changed()
		if s := w.Load(); s != nil && ok(s) {
			return s
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("watch %s: no matching snapshot, last %v, err %v", w.Name(), w.Load(), w.Err())
		}
	}
}

func version(v uint64) func(*meshv1.DestinationSnapshot) bool {
	return func(s *meshv1.DestinationSnapshot) bool { return s.GetVersion() == v }
}

func TestInboundAndDestinations(t *testing.T) {
	ctl, c := start(t)
	api := c.Destination("api") // lazily starts a watch while running
	got := waitFor(t, api, func(s *meshv1.DestinationSnapshot) bool { return true })
	if got.GetExists() {
		t.Fatalf("got exists=true for a service the controller does not know")
	}
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 2, Exists: true, Service: "api.default",
		Backends: []*meshv1.Backend{{Service: "api.default", Weight: 1, Endpoints: []*meshv1.Endpoint{{Address: "127.0.0.1:1"}}}}})
	got = waitFor(t, api, version(2))
	if got.GetService() != "api.default" || len(got.GetBackends()[0].GetEndpoints()) != 1 {
		t.Fatalf("got %v", got)
	}
	if c.Destination("api") != api {
		t.Fatal("second Destination call started a second watch")
	}
	ctl.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 3, Known: true, Service: "web.default"})
	in := waitFor(t, c.Inbound(), func(s *meshv1.InboundSnapshot) bool { return s.GetKnown() })
	if in.GetService() != "web.default" {
		t.Fatalf("got inbound %v", in)
	}
	if n := ctl.Watchers("api"); n != 1 {
		t.Fatalf("got %d watchers of api, want 1", n)
	}
	if ds := c.Destinations(); ds["api"].GetVersion() != 2 {
		t.Fatalf("Destinations() = %v", ds)
	}
}

func TestControllerGoneKeepsSnapshotAndReconnects(t *testing.T) {
	ctl, c := start(t)
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 5, Exists: true, Service: "api.default"})
	api := c.Destination("api")
	waitFor(t, api, version(5))

	ctl.Stop()
	// The stream breaks; the watch records why and keeps its snapshot.
	deadline := time.Now().Add(hangGuard)
	for api.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if api.Err() == nil {
		t.Fatal("watch did not notice the controller going away")
	}
	if got := api.Load().GetVersion(); got != 5 {
		t.Fatalf("got version %d after the controller went away, want the last good 5", got)
	}
	// A restarted controller (with fresh versions) is applied.
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 1, Exists: true, Service: "api.default"})
	if _, err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, api, version(1))
}

func TestDestinationBeforeRun(t *testing.T) {
	ctl := discoverytest.New()
	addr, err := ctl.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Stop()
	ctl.SetDestination("db", &meshv1.DestinationSnapshot{Authority: "db", Version: 9, Exists: true})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := discovery.New(discovery.Config{Conn: conn})
	db := c.Destination("db")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, db, version(9))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	// Wait returns nil for a context that ends before any snapshot.
	quick, stop := context.WithCancel(context.Background())
	stop()
	if got := c.Destination("other").Wait(quick); got != nil {
		t.Fatalf("Wait = %v, want nil", got)
	}
}
