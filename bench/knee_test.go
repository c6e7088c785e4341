package bench_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/harness"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/report"
)

// TestQuickKnee runs the knee sweep's quick mode (two 1 s steps) through every pair that can
// run here and checks that every sweep completed, every window without an error and with every
// byte echoed back, and that the report has a knee row per pair. It checks no timing and not
// where the knees are: the machines are shared.
func TestQuickKnee(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real proxy pairs; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, k := harness.QuickKnee(harness.Config{
		Peers:  peer.All(),
		Self:   self,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, harness.Knee{})
	rep, err := harness.RunKnee(ctx, cfg, k)
	if err != nil {
		t.Fatalf("harness.RunKnee: %v", err)
	}
	if got, want := len(rep.Config.Rates), 2; got != want {
		t.Fatalf("got %d rates in the quick sweep (%v), want %d", got, rep.Config.Rates, want)
	}
	rows := map[string]report.KneeRow{}
	for _, r := range rep.Rows {
		rows[r.Peer] = r
	}
	eachPeer(t, rep.Peers, rep.Windows, func(t *testing.T, name string, got []report.Scenario) {
		// The sweep stops at the first window past the knee, so a busy machine may end it
		// after the first step; it never runs more steps than the sweep has.
		if len(got) < 1 || len(got) > len(rep.Config.Rates) {
			t.Fatalf("got %d windows for %s, want 1 to %d", len(got), name, len(rep.Config.Rates))
		}
		for i, s := range got {
			if s.Rate != rep.Config.Rates[i] {
				t.Errorf("window %d: got rate %.0f, want %.0f (the sweep climbs in order)", i, s.Rate, rep.Config.Rates[i])
			}
			checkWindow(t, name, s, rep.Config.PayloadSize)
		}
		row, ok := rows[name]
		if !ok {
			t.Fatalf("no knee row for %s", name)
		}
		if len(row.Stops) != 1 || row.Errors != 0 {
			t.Errorf("got %d sweep ends (%q) and %d errors in the row, want 1 and 0", len(row.Stops), row.Stops, row.Errors)
		}
	})
}
