package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/controlplane"
	"weft.dev/weft/bench/internal/role"
)

// TestQuickControlPlane runs the control-plane scenario small: a controller process with a few
// services, a few simulated proxies over mutual TLS, a few route changes. It checks that every
// proxy received every change with no stream error, and that the controller's memory and CPU
// were read; no timing.
func TestQuickControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller process; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.Config{Self: self, EnvRole: role.EnvRole, Services: 10, Proxies: 20, Changes: 3}
	got, err := controlplane.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("controlplane.Run: %v", err)
	}
	if got.Errors != 0 {
		t.Errorf("got %d stream errors (first: %s), want none", got.Errors, got.FirstError)
	}
	if got.Changes != cfg.Changes || len(got.Everyone) != cfg.Changes {
		t.Errorf("got %d changes measured, want %d", got.Changes, cfg.Changes)
	}
	if got.Streams != cfg.Proxies {
		t.Errorf("got %d streams, want %d", got.Streams, cfg.Proxies)
	}
	if got.IdleRSS == 0 || got.RSS == 0 || got.HWM < got.RSS || got.ConnectCPU <= 0 {
		t.Errorf("got idle RSS %d, RSS %d, HWM %d, connect CPU %.3fs; want RSS read and CPU above zero",
			got.IdleRSS, got.RSS, got.HWM, got.ConnectCPU)
	}
}
