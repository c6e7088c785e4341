// Package upstream holds what the proxy keeps per endpoint it forwards to:
// an HTTP/1.1 connection pool, an HTTP/2 transport, and the dialing of
// opaque TCP connections, each opened through the proxy-to-proxy transport
// for a meshed endpoint and plainly otherwise. Every connect attempt is
// reported to the endpoint's balancing state (failure accrual).
//
// The proxy's inbound and outbound servers import upstream. An Upstream is
// safe for concurrent use.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/h2"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/transport"
)

// Upstream is one endpoint's connections.
type Upstream struct {
	// users counts exchanges holding the upstream (Acquire), with
	// removedBit set once Remove was called.
	users atomic.Int64

	addr      string
	identity  string
	meshed    bool
	transport transport.Transport
	ep        *balance.Endpoint // nil when not balanced (the local app)
	// gate, if set, bounds the connections of the destination (see
	// SetConnGate).
	gate atomic.Pointer[ConnGate]

	// HTTP1 is the endpoint's HTTP/1.1 pool.
	HTTP1 *http1.Pool
	// h2 is the endpoint's HTTP/2 transport, made on first use (see
	// HTTP2).
	h2 atomic.Pointer[http.Transport]
}

// New returns the Upstream of addr; it does no I/O. A meshed endpoint is
// dialed through tr and must prove identity. ep, if not nil, receives
// connect outcomes.
func New(addr, identity string, meshed bool, tr transport.Transport, ep *balance.Endpoint) *Upstream {
	u := &Upstream{addr: addr, identity: identity, meshed: meshed, transport: tr, ep: ep}
	u.HTTP1 = http1.NewPool(http1.PoolConfig{
		Addr: addr,
		Dial: func(ctx context.Context) (net.Conn, error) { return u.Dial(ctx, transport.HTTP1) },
	})
	return u
}

// HTTP2 returns the endpoint's HTTP/2 transport (prior knowledge), made on
// first use: an endpoint only ever reached over HTTP/1.1 or TCP, as most
// are, does not carry one (docs/performance.md, "Proxy memory in a
// 1,000-service mesh").
func (u *Upstream) HTTP2() *http.Transport {
	if t := u.h2.Load(); t != nil {
		return t
	}
	// Two callers racing both make one; the one not kept has no
	// connection yet.
	t := h2.NewTransport(u.addr, func(ctx context.Context) (net.Conn, error) { return u.Dial(ctx, transport.HTTP2) })
	if u.h2.CompareAndSwap(nil, t) {
		return t
	}
	return u.h2.Load()
}

// Addr returns the endpoint's address.
func (u *Upstream) Addr() string { return u.addr }

// Meshed reports whether the endpoint is reached through the transport.
func (u *Upstream) Meshed() bool { return u.meshed }

// Identity returns the identity a meshed endpoint must prove.
func (u *Upstream) Identity() string { return u.identity }

// Endpoint returns the balancing state, nil for an unbalanced upstream.
func (u *Upstream) Endpoint() *balance.Endpoint { return u.ep }

// ConnGate bounds a destination's open connections (circuit breaking):
// Open admits one or returns the error to answer, Closed releases it.
type ConnGate interface {
	Open(addr string) error
	Closed()
}

// SetConnGate makes every connection dialed from now on pass g (nil: no
// bound). A refusal is not a connect failure of the endpoint.
func (u *Upstream) SetConnGate(g ConnGate) {
	if g == nil {
		u.gate.Store(nil)
		return
	}
	u.gate.Store(&g)
}

// Dial opens a connection that carries proto.
func (u *Upstream) Dial(ctx context.Context, proto transport.Proto) (net.Conn, error) {
	var c net.Conn
	var err error
	if gp := u.gate.Load(); gp != nil {
		g := *gp
		if err := g.Open(u.addr); err != nil {
			return nil, err
		}
		defer func() {
			if c == nil {
				g.Closed()
			}
		}()
		c, err = u.dial(ctx, proto)
		if err != nil {
			c = nil
			return nil, err
		}
		return &gatedConn{Conn: c, gate: g}, nil
	}
	return u.dial(ctx, proto)
}

// gatedConn releases its place in a ConnGate once closed.
type gatedConn struct {
	net.Conn
	gate ConnGate
	once sync.Once
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.gate.Closed)
	return err
}

func (u *Upstream) dial(ctx context.Context, proto transport.Proto) (net.Conn, error) {
	var c net.Conn
	var err error
	if u.meshed {
		c, err = u.transport.Dial(ctx, u.addr, u.identity, proto)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", u.addr)
	}
	if u.ep != nil {
		if err != nil {
			u.ep.ConnectFailed()
		} else {
			u.ep.ConnectSucceeded()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.addr, err)
	}
	return c, nil
}

const removedBit = int64(1) << 62

// Acquire marks an exchange about to use the upstream. It fails once
// Remove was called: the caller picks another endpoint. Every successful
// Acquire is paired with one Release.
func (u *Upstream) Acquire() bool {
	for {
		v := u.users.Load()
		if v&removedBit != 0 {
			return false
		}
		if u.users.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// Release ends what Acquire began; the last exchange of a removed
// upstream closes it.
func (u *Upstream) Release() {
	if u.users.Add(-1) == removedBit {
		u.Close()
	}
}

// Remove stops new exchanges and closes the upstream once the exchanges
// in flight released it; requests already routed to it are served.
func (u *Upstream) Remove() {
	if u.users.Or(removedBit) == 0 {
		u.Close()
	}
}

// Close closes idle connections at once; exchanges in flight finish.
func (u *Upstream) Close() {
	u.HTTP1.Close()
	if t := u.h2.Load(); t != nil {
		t.CloseIdleConnections()
	}
}

// CloseWrite half-closes the connection when the wrapped one can.
func (c *gatedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
