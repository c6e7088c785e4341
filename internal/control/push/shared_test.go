package push

import (
	"testing"
)

// TestKickAllPastBlockedPumps: pumps blocked on proxies that stopped
// reading do not stop a round from reaching every other stream.
func TestKickAllPastBlockedPumps(t *testing.T) {
	f := &feed{done: make(chan struct{}), pumpDone: make(chan struct{}, 1)}
	f.pumps.Store(maxPumps) // as many pumps as a round lets run, all blocked
	streams := make([]*meshStream, 3*maxPumps)
	for i := range streams {
		// A pump runs already: a kick only marks the stream dirty.
		streams[i] = &meshStream{running: true}
	}
	f.kickAll(streams, make(chan struct{}))
	for i, m := range streams {
		if !m.dirty {
			t.Fatalf("stream %d of %d was not kicked", i, len(streams))
		}
	}
}

// TestKickAllStops: a round being kicked ends when the feed stops.
func TestKickAllStops(t *testing.T) {
	f := &feed{done: make(chan struct{}), pumpDone: make(chan struct{}, 1)}
	f.pumps.Store(maxPumps)
	stop := make(chan struct{})
	close(stop)
	m := &meshStream{running: true}
	f.kickAll([]*meshStream{m}, stop)
	if m.dirty {
		t.Error("a stream was kicked after the feed stopped")
	}
}
