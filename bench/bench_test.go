package bench_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/bench/internal/harness"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/report"
	"weft.dev/weft/bench/internal/role"
)

func TestMain(m *testing.M) {
	role.Main() // the harness re-executes this test binary as its echo server and Go proxy
	goleak.VerifyTestMain(m)
}

// TestQuickHarness runs the benchmark's quick mode through every pair that can run here and
// checks that every window completed without an error and with every byte echoed back. It
// checks no timing: the machines are shared.
func TestQuickHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real proxy pairs; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.Quick(harness.Config{
		// One open-loop window at 1,000 rps and one closed-loop window per pair.
		Peers:  peer.All(),
		Self:   self,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("harness.Run: %v", err)
	}
	eachPeer(t, rep.Peers, rep.Scenarios, func(t *testing.T, name string, got []report.Scenario) {
		if want := (len(cfg.Rates) + 1) * cfg.Reps; len(got) != want {
			t.Fatalf("got %d windows for %s, want %d (every rate and one closed loop)", len(got), name, want)
		}
		for _, s := range got {
			checkWindow(t, name, s, rep.Config.PayloadSize)
		}
	})
}

// eachPeer runs check as a subtest for the baseline and every peer, with the windows the report
// holds for it, once it has checked that the report lists the peer as run; a peer that cannot
// run on this machine is skipped with the reason.
func eachPeer(t *testing.T, ran []report.Peer, windows []report.Scenario, check func(t *testing.T, name string, got []report.Scenario)) {
	t.Helper()
	peers := map[string]report.Peer{}
	for _, p := range ran {
		peers[p.Name] = p
	}
	byPeer := map[string][]report.Scenario{}
	for _, s := range windows {
		byPeer[s.Peer] = append(byPeer[s.Peer], s)
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
			check(t, tt.peer, byPeer[tt.peer])
		})
	}
}

// checkWindow checks that a window of peer sent requests, got no error, had every byte of its
// payload-sized requests echoed back, and, for a pair, measured both proxies' CPU and RSS.
func checkWindow(t *testing.T, peer string, s report.Scenario, payload int) {
	t.Helper()
	if s.Requests == 0 {
		t.Errorf("rate %.0f: got 0 requests, want some", s.Rate)
	}
	if s.Errors != 0 || s.BadBodies != 0 {
		t.Errorf("rate %.0f: got %d errors and %d bad bodies of %d requests (first: %s), want none",
			s.Rate, s.Errors, s.BadBodies, s.Requests, s.FirstError)
	}
	want := s.Requests * int64(payload)
	if s.BytesSent != want || s.BytesReceived != want {
		t.Errorf("rate %.0f: got %d bytes sent and %d received, want %d each", s.Rate, s.BytesSent, s.BytesReceived, want)
	}
	if peer != report.Baseline && (s.CPUA <= 0 || s.CPUB <= 0 || s.RSSA == 0 || s.RSSB == 0) {
		t.Errorf("rate %.0f: got CPU %.3fs/%.3fs and RSS %d/%d for proxies A/B, want all above zero",
			s.Rate, s.CPUA, s.CPUB, s.RSSA, s.RSSB)
	}
}

// testWriter sends the harness's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
