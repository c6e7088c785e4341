package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/proxyservices"
	"weft.dev/weft/bench/internal/role"
)

// TestQuickProxyServices runs the proxy-in-a-mesh scenario small: a real weft-proxy in a network
// namespace of its own, 20 services reached through transparent capture by cluster IP, each
// called once. It checks that every request was answered with its own bytes, that every
// service's endpoint received its one request and the proxy counted it for that service, and
// that the proxy's memory was read; no memory threshold and no timing.
func TestQuickProxyServices(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts weft-proxy in a network namespace; skipped with -short")
	}
	if err := proxyservices.Check(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := peer.WeftProxyBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peer.RemoveBuilds)
	const services = 20
	got, err := proxyservices.Run(ctx, proxyservices.Config{Self: self, EnvRole: role.EnvRole, Services: services,
		Proxy: bin, Settle: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("proxyservices.Run: %v", err)
	}
	if got.Errors != 0 || got.Requests != services {
		t.Errorf("got %d errors in %d requests (first: %s), want none in %d", got.Errors, got.Requests, got.FirstError, services)
	}
	if got.Reached != services || got.Counted != services {
		t.Errorf("got %d services reached at their endpoint and %d counted by the proxy, want %d and %d", got.Reached, got.Counted, services, services)
	}
	if len(got.Phases) != 3 || got.Final().Called != services {
		t.Fatalf("got phases %+v, want idle, after 2 and after %d services", got.Phases, services)
	}
	for _, p := range got.Phases {
		if p.RSS == 0 || p.HWM < p.RSS || p.GoHeap == 0 || p.Goroutines == 0 {
			t.Errorf("phase %s: VmRSS %d, VmHWM %d, Go heap %d, goroutines %d; want them read", p.Name, p.RSS, p.HWM, p.GoHeap, p.Goroutines)
		}
	}
}
