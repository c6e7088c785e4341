package listener

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDrain(t *testing.T) {
	tests := []struct {
		name string
		// finishOnDrain: the handler answers and returns when the drain
		// starts; else it ignores the drain and is closed at the deadline.
		finishOnDrain bool
	}{
		{"handler finishes on drain", true},
		{"handler ignores drain, closed at deadline", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			accepted := make(chan struct{})
			hookRan := make(chan struct{})
			done := make(chan error, 1)
			timeout := 100 * time.Millisecond
			if tt.finishOnDrain {
				timeout = time.Minute // only a hang guard
			}
			go func() {
				done <- Serve(ctx, ln, Config{DrainTimeout: timeout, OnDrain: func(context.Context) { close(hookRan) }},
					func(dctx context.Context, c net.Conn) {
						defer c.Close()
						close(accepted)
						if tt.finishOnDrain {
							<-dctx.Done()
							c.Write([]byte("bye"))
							return
						}
						io.Copy(io.Discard, c) // ends only when closed
					})
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			<-accepted
			cancel()
			got, _ := io.ReadAll(c)
			if err := <-done; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			<-hookRan
			if tt.finishOnDrain && string(got) != "bye" {
				t.Fatalf("got %q, want the handler's goodbye", got)
			}
			if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				t.Fatal("listener still accepts after the drain")
			}
		})
	}
}

// TestAbortedEndsAtDeadline: a handler blocked on something other than its
// connection (an upstream that never answers) learns the drain deadline
// from Aborted(ctx), so Serve returns.
func TestAbortedEndsAtDeadline(t *testing.T) {
	if Aborted(context.Background()).Done() != nil {
		t.Fatal("Aborted of a context not from Serve can end, want never")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	accepted := make(chan struct{})
	drainSeen := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Config{DrainTimeout: 300 * time.Millisecond}, func(hctx context.Context, c net.Conn) {
			defer c.Close()
			abort := Aborted(hctx)
			close(accepted)
			<-hctx.Done()
			drainSeen <- abort.Err() == nil // the drain starts before the abort
			<-abort.Done()                  // the only way out
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("Serve did not return: Aborted(ctx) did not end at the drain deadline")
	}
	if got := <-drainSeen; !got {
		t.Error("Aborted(ctx) ended when the drain started, want at its deadline")
	}
}
