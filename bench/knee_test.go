package bench_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
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
	peers := map[string]report.Peer{}
	for _, p := range rep.Peers {
		peers[p.Name] = p
	}
	windows := map[string][]report.Scenario{}
	for _, s := range rep.Windows {
		windows[s.Peer] = append(windows[s.Peer], s)
	}
	rows := map[string]report.KneeRow{}
	for _, r := range rep.Rows {
		rows[r.Peer] = r
	}
	tests := []struct {
		peer      string
		installed error
	}{{peer: report.Baseline}}
	for _, p := range peer.All() {
		tests = append(tests, struct {
			peer      string
			installed error
		}{p.Name(), p.Check()})
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.peer, " ", "_"), func(t *testing.T) {
			if tt.installed != nil {
				t.Skipf("not runnable here: %v", tt.installed)
			}
			p, ok := peers[tt.peer]
			if !ok {
				t.Fatalf("peer %s missing from the report", tt.peer)
			}
			if p.Skipped != "" {
				t.Fatalf("peer %s did not run: %s", tt.peer, p.Skipped)
			}
			got := windows[tt.peer]
			// The sweep stops at the first window past the knee, so a busy machine may end it
			// after the first step; it never runs more steps than the sweep has.
			if len(got) < 1 || len(got) > len(rep.Config.Rates) {
				t.Fatalf("got %d windows for %s, want 1 to %d", len(got), tt.peer, len(rep.Config.Rates))
			}
			for i, s := range got {
				if s.Rate != rep.Config.Rates[i] {
					t.Errorf("window %d: got rate %.0f, want %.0f (the sweep climbs in order)", i, s.Rate, rep.Config.Rates[i])
				}
				if s.Requests == 0 {
					t.Errorf("rate %.0f: got 0 requests, want some", s.Rate)
				}
				if s.Errors != 0 || s.BadBodies != 0 {
					t.Errorf("rate %.0f: got %d errors and %d bad bodies of %d requests (first: %s), want none",
						s.Rate, s.Errors, s.BadBodies, s.Requests, s.FirstError)
				}
				want := s.Requests * int64(rep.Config.PayloadSize)
				if s.BytesSent != want || s.BytesReceived != want {
					t.Errorf("rate %.0f: got %d bytes sent and %d received, want %d each", s.Rate, s.BytesSent, s.BytesReceived, want)
				}
				if tt.peer != report.Baseline && (s.CPUA <= 0 || s.CPUB <= 0 || s.RSSA == 0 || s.RSSB == 0) {
					t.Errorf("rate %.0f: got CPU %.3fs/%.3fs and RSS %d/%d for proxies A/B, want all above zero",
						s.Rate, s.CPUA, s.CPUB, s.RSSA, s.RSSB)
				}
			}
			row, ok := rows[tt.peer]
			if !ok {
				t.Fatalf("no knee row for %s", tt.peer)
			}
			if len(row.Stops) != 1 || row.Errors != 0 {
				t.Errorf("got %d sweep ends (%q) and %d errors in the row, want 1 and 0", len(row.Stops), row.Stops, row.Errors)
			}
		})
	}
}
