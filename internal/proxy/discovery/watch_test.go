package discovery

import (
	"testing"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
)

// TestWatchOnChange checks that OnChange runs its function once a newer
// snapshot is stored, not before, and not at all once stopped.
func TestWatchOnChange(t *testing.T) {
	w := newWatch[meshv1.DestinationSnapshot]("api")
	fired := make(chan *meshv1.DestinationSnapshot, 1)
	w.OnChange(func() { fired <- w.Load() })
	stopped := make(chan struct{}, 1)
	stop := w.OnChange(func() { stopped <- struct{}{} })
	if !stop() {
		t.Fatal("stop before any change did not cancel")
	}
	select {
	case <-fired:
		t.Fatal("OnChange ran before a snapshot was stored")
	case <-time.After(20 * time.Millisecond):
	}
	first := &meshv1.DestinationSnapshot{Version: 1}
	w.store(first)
	select {
	case got := <-fired:
		if got != first {
			t.Errorf("OnChange saw %v, want the stored snapshot", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnChange did not run after a snapshot was stored")
	}
	select {
	case <-stopped:
		t.Error("a stopped OnChange ran")
	case <-time.After(20 * time.Millisecond):
	}
	// Registered after the store: waits for the next one.
	w.OnChange(func() { fired <- w.Load() })
	select {
	case <-fired:
		t.Fatal("OnChange ran for a snapshot stored before it was registered")
	case <-time.After(20 * time.Millisecond):
	}
	second := &meshv1.DestinationSnapshot{Version: 2}
	w.store(second)
	select {
	case got := <-fired:
		if got != second {
			t.Errorf("OnChange saw %v, want the second snapshot", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnChange did not run after the second snapshot was stored")
	}
}
