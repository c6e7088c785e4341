package bench_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/balance"
	"weft.dev/weft/bench/internal/peer"
)

// TestQuickBalance runs the slow-endpoint scenario small through Weft's client proxy and the
// round-robin baseline, and checks that every request was answered with its own bytes and that
// every endpoint was used; no timing.
func TestQuickBalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real proxies; skipped with -short")
	}
	if err := (peer.Weft{}).Check(); err != nil {
		t.Skipf("weft-proxy not buildable here: %v", err)
	}
	t.Cleanup(peer.RemoveBuilds)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ws, err := balance.Run(ctx, balance.Quick(balance.Config{
		Self:   self,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}))
	if err != nil {
		t.Fatalf("balance.Run: %v", err)
	}
	if got, want := len(ws), 2; got != want {
		t.Fatalf("got %d windows, want %d", got, want)
	}
	for _, w := range ws {
		t.Run(w.Balancer, func(t *testing.T) {
			if w.Requests == 0 || w.Errors != 0 || w.BadBodies != 0 {
				t.Errorf("got %d requests, %d errors, %d bad bodies (first: %s); want requests and no failure", w.Requests, w.Errors, w.BadBodies, w.FirstError)
			}
			if want := w.Requests * 1024; w.BytesSent != want || w.BytesReceived != want {
				t.Errorf("got %d bytes sent and %d received, want %d each", w.BytesSent, w.BytesReceived, want)
			}
			for i, s := range w.Share {
				if s == 0 && w.Balancer == balance.RoundRobin {
					t.Errorf("endpoint %d got no request from round robin, want a third", i)
				}
			}
			if w.Share[1]+w.Share[2] == 0 {
				t.Errorf("the fast endpoints got no request: %v", w.Share)
			}
		})
	}
}
