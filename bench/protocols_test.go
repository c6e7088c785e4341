package bench_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/protocols"
)

// TestQuickProtocols runs the HTTP/2, gRPC and TCP scenarios small, directly and through both
// Weft pairs, and checks that every window completed without an error and with every byte
// echoed back; no timing.
func TestQuickProtocols(t *testing.T) {
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
	cfg := protocols.Quick(protocols.Config{
		Self:   self,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	ws, err := protocols.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("protocols.Run: %v", err)
	}
	if got, want := len(ws), 4*3; got != want {
		t.Fatalf("got %d windows, want %d (four protocols, direct and two pairs)", got, want)
	}
	for _, w := range ws {
		t.Run(w.Protocol+"/"+w.Peer, func(t *testing.T) {
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
			if w.Peer != protocols.Direct && w.Protocol != protocols.TCPBulk && w.CPUA <= 0 {
				t.Errorf("got CPU %.3fs for proxy A, want above zero", w.CPUA)
			}
		})
	}
}
