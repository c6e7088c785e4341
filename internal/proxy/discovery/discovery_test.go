package discovery_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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

func TestReconnectResubscribesEverything(t *testing.T) {
	ctl, c := start(t)
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 5, Exists: true})
	ctl.SetDestination("db", &meshv1.DestinationSnapshot{Authority: "db", Version: 5, Exists: true})
	ctl.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 5, Known: true})
	api, db := c.Destination("api"), c.Destination("db")
	waitFor(t, api, version(5))
	waitFor(t, db, version(5))
	waitFor(t, c.Inbound(), func(s *meshv1.InboundSnapshot) bool { return s.GetVersion() == 5 })
	if n := ctl.Streams(); n != 1 {
		t.Fatalf("got %d streams, want one for every watch", n)
	}

	ctl.Stop()
	poll(t, func() bool { return api.Err() != nil && db.Err() != nil && c.Inbound().Err() != nil })
	if api.Load().GetVersion() != 5 || db.Load().GetVersion() != 5 || c.Inbound().Load().GetVersion() != 5 {
		t.Fatal("a watch lost its last snapshot when the controller went away")
	}
	// Subscribed while the controller is away: sent once it is back.
	cache := c.Destination("cache")

	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 1, Exists: true})
	ctl.SetDestination("db", &meshv1.DestinationSnapshot{Authority: "db", Version: 1, Exists: true})
	ctl.SetDestination("cache", &meshv1.DestinationSnapshot{Authority: "cache", Version: 1, Exists: true})
	ctl.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 1, Known: true})
	if _, err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, api, version(1))
	waitFor(t, db, version(1))
	waitFor(t, cache, version(1))
	waitFor(t, c.Inbound(), func(s *meshv1.InboundSnapshot) bool { return s.GetVersion() == 1 })
	for _, a := range []string{"api", "db", "cache"} {
		if n := ctl.Watchers(a); n != 1 {
			t.Fatalf("after reconnecting: %d subscriptions of %s, want 1", n, a)
		}
	}
}

func TestAcquireUnsubscribes(t *testing.T) {
	ctl, c := start(t)
	w, release := c.Acquire("10.0.0.1:80")
	w2, release2 := c.Acquire("10.0.0.1:80")
	if w != w2 {
		t.Fatal("two Acquire calls made two watches")
	}
	waitFor(t, w, func(*meshv1.DestinationSnapshot) bool { return true })
	release()
	release() // a second call of the same release changes nothing
	if n := ctl.Watchers("10.0.0.1:80"); n != 1 {
		t.Fatalf("one holder left: %d subscriptions, want 1", n)
	}
	release2()
	poll(t, func() bool { return ctl.Watchers("10.0.0.1:80") == 0 })
	if _, ok := c.Destinations()["10.0.0.1:80"]; ok {
		t.Fatal("a released destination is still listed")
	}
}

func TestInboundRefused(t *testing.T) {
	ctl, c := start(t)
	ctl.RefuseInbound("proxy web-0 may only watch its own workload")
	ctl.SetInbound("web-0", &meshv1.InboundSnapshot{Version: 1, Known: true})
	poll(t, func() bool { return c.Inbound().Err() != nil })
	if err := c.Inbound().Err(); !strings.Contains(err.Error(), "its own workload") || status.Code(errors.Unwrap(err)) != codes.PermissionDenied {
		t.Fatalf("got %v, want the controller's refusal", err)
	}
	if c.Inbound().Load() != nil {
		t.Fatal("a refused subscription got a snapshot")
	}
	// The stream and its destinations go on.
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 2, Exists: true})
	waitFor(t, c.Destination("api"), version(2))
	ctl.RefuseInbound("")
	waitFor(t, c.Inbound(), func(s *meshv1.InboundSnapshot) bool { return s.GetKnown() })
}

// poll waits until cond holds, within hangGuard.
func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
