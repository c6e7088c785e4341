package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/protocols"
)

// TestQuickProtocols runs the HTTP/2, gRPC and TCP scenarios small, directly, through every
// peer pair that carries them and is installed, and through both Weft pairs, and checks that
// every window completed without an error and with every byte echoed back; no timing. Every
// protocol runs through at least one peer (the Go pair needs nothing installed); a peer that is
// not installed is skipped with its reason, one that cannot carry a protocol is listed as such,
// and one that fails to start or to pass its mutual TLS checks fails the test.
func TestQuickProtocols(t *testing.T) {
	cfg, res := runQuickProtocols(t, protocols.Config{}, 1)
	checkProtocolWindows(t, cfg, res, []string{protocols.HTTP2, protocols.GRPCUnary, protocols.GRPCStream, protocols.TCPBulk})
}

// TestQuickProtocolsRepetitions runs TCP bulk twice through the Go relay and both Weft pairs
// and checks the order of the windows (direct first, the pairs rotated in the second
// repetition), every byte, and that each row summarises both repetitions; no timing.
func TestQuickProtocolsRepetitions(t *testing.T) {
	cfg, res := runQuickProtocols(t, protocols.Config{Kinds: []string{protocols.TCPBulk}, Peers: []string{"go-reverseproxy"}}, 2)
	checkProtocolWindows(t, cfg, res, []string{protocols.TCPBulk})
	var got []string
	for _, w := range res.Windows {
		got = append(got, fmt.Sprintf("%d %s", w.Rep, w.Peer))
	}
	want := []string{
		"1 direct", "1 go relay", "1 " + protocols.WeftMTLS, "1 " + protocols.WeftPlaintext,
		"2 direct", "2 " + protocols.WeftMTLS, "2 " + protocols.WeftPlaintext, "2 go relay",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got windows in the order %q, want %q", got, want)
	}
	for _, row := range res.Rows {
		if row.Windows != 2 || row.MBps.N != 2 || row.Errors != 0 {
			t.Errorf("row %s: got %d windows, %d MB/s figures, %d errors; want 2, 2, 0", row.Peer, row.Windows, row.MBps.N, row.Errors)
		}
	}
}

// runQuickProtocols runs the quick mode of cfg's scenarios reps times, its log in the test's;
// it skips with -short and when weft-proxy cannot be built here.
func runQuickProtocols(t *testing.T, cfg protocols.Config, reps int) (protocols.Config, *protocols.Result) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real proxy pairs; skipped with -short")
	}
	if err := (peer.Weft{}).Check(); err != nil {
		t.Skipf("weft-proxy not buildable here: %v", err)
	}
	t.Cleanup(peer.RemoveBuilds)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Self = self
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg = protocols.Quick(cfg)
	cfg.Reps = reps
	res, err := protocols.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("protocols.Run: %v", err)
	}
	return cfg, res
}

// checkProtocolWindows checks that every kind ran cfg.Reps times directly, through both Weft
// pairs and through at least one peer, every window without an error and with every byte back.
func checkProtocolWindows(t *testing.T, cfg protocols.Config, res *protocols.Result, kinds []string) {
	t.Helper()
	for _, s := range res.Skipped {
		switch s.Why {
		case protocols.SkipFailed:
			t.Errorf("%s through %s failed: %s", s.Protocol, s.Peer, s.Reason)
		default:
			t.Logf("%s through %s not run (%s): %s", s.Protocol, s.Peer, s.Why, s.Reason)
		}
	}
	count := map[string]map[string]int{} // protocol -> peer -> windows
	for _, w := range res.Windows {
		if count[w.Protocol] == nil {
			count[w.Protocol] = map[string]int{}
		}
		count[w.Protocol][w.Peer]++
	}
	for _, kind := range kinds {
		peers := 0
		for name, n := range count[kind] {
			if n != cfg.Reps {
				t.Errorf("%s: got %d windows through %s, want %d", kind, n, name, cfg.Reps)
			}
			if name != protocols.Direct && name != protocols.WeftMTLS && name != protocols.WeftPlaintext {
				peers++
			}
		}
		for _, name := range []string{protocols.Direct, protocols.WeftMTLS, protocols.WeftPlaintext} {
			if count[kind][name] == 0 {
				t.Errorf("%s: no window through %s", kind, name)
			}
		}
		if peers == 0 {
			t.Errorf("%s: no peer pair ran beside Weft", kind)
		}
	}
	for _, w := range res.Windows {
		t.Run(fmt.Sprintf("%s/%s/%d", w.Protocol, w.Peer, w.Rep), func(t *testing.T) {
			if w.Rep < 1 || w.Rep > cfg.Reps {
				t.Errorf("got repetition %d, want 1 to %d", w.Rep, cfg.Reps)
			}
			if w.Requests == 0 {
				t.Errorf("got 0 requests, want some")
			}
			if w.Errors != 0 || w.BadBodies != 0 {
				t.Errorf("got %d errors and %d bad answers of %d (first: %s), want none", w.Errors, w.BadBodies, w.Requests, w.FirstError)
			}
			want := w.Requests * protocols.PayloadSize
			if w.Protocol == protocols.TCPBulk {
				want = cfg.BulkBytes
			}
			if w.BytesSent != want || w.BytesReceived != want {
				t.Errorf("got %d bytes sent and %d received, want %d each", w.BytesSent, w.BytesReceived, want)
			}
			if w.Peer != protocols.Direct && (w.RSSA == 0 || w.RSSB == 0) {
				t.Errorf("got RSS %d/%d for proxies A/B, want both read", w.RSSA, w.RSSB)
			}
			// The quick transfer can take less than one clock tick of CPU.
			if w.Peer != protocols.Direct && w.Protocol != protocols.TCPBulk && w.CPUA+w.CPUB <= 0 {
				t.Errorf("got CPU %.3fs / %.3fs for proxies A / B, want above zero", w.CPUA, w.CPUB)
			}
		})
	}
	if len(res.Rows) == 0 {
		t.Error("got no summary rows")
	}
}
