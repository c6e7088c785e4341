package resilience

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// Gate bounds the requests pending (waiting or in flight) to one
// destination. The zero Gate, or one with limit 0, admits everything.
type Gate struct {
	limit   int64
	service string
	pending atomic.Int64
}

// NewGate returns a Gate admitting at most limit pending requests to
// service; limit 0 is unlimited.
func NewGate(limit uint32, service string) *Gate {
	return &Gate{limit: int64(limit), service: service}
}

// Enter admits a request, or returns the proxy's 503 at once when the
// limit is reached ("circuit open: 100 pending requests to api.default
// (limit 100)"). Every nil return is paired with one Leave.
func (g *Gate) Enter() error {
	if g == nil || g.limit <= 0 {
		return nil
	}
	if n := g.pending.Add(1); n > g.limit {
		g.pending.Add(-1)
		return proxyerr.New(http.StatusServiceUnavailable, "circuit open: %d pending requests to %s (limit %d)", n-1, g.service, g.limit)
	}
	return nil
}

// Leave ends what Enter admitted.
func (g *Gate) Leave() {
	if g == nil || g.limit <= 0 {
		return
	}
	g.pending.Add(-1)
}

// Pending returns the number of pending requests.
func (g *Gate) Pending() int64 { return g.pending.Load() }

// String describes the gate.
func (g *Gate) String() string { return fmt.Sprintf("gate(%s, %d)", g.service, g.limit) }

// ConnGate bounds the connections open to one destination's endpoints.
// A nil ConnGate, or one with limit 0, admits everything.
type ConnGate struct {
	limit   int64
	service string
	open    atomic.Int64
}

// NewConnGate returns a ConnGate admitting at most limit connections to
// service; limit 0 is unlimited.
func NewConnGate(limit uint32, service string) *ConnGate {
	return &ConnGate{limit: int64(limit), service: service}
}

// Open admits a new connection to addr, or returns the proxy's 503 at
// once ("circuit open for 127.0.0.1:9001: 10 connections open to
// api.default (limit 10)"). Every nil return is paired with one Closed.
func (g *ConnGate) Open(addr string) error {
	if g == nil || g.limit <= 0 {
		return nil
	}
	if n := g.open.Add(1); n > g.limit {
		g.open.Add(-1)
		return proxyerr.New(http.StatusServiceUnavailable, "circuit open for %s: %d connections open to %s (limit %d)", addr, n-1, g.service, g.limit)
	}
	return nil
}

// Closed ends what Open admitted.
func (g *ConnGate) Closed() {
	if g == nil || g.limit <= 0 {
		return
	}
	g.open.Add(-1)
}
