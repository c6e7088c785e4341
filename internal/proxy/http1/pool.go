package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// Pool defaults, see PoolConfig.
const (
	defaultMaxIdle        = 64
	defaultPoolIdle       = 90 * time.Second
	defaultConnectTimeout = 3 * time.Second
	bufSize               = 4 << 10
)

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

func getReader(r net.Conn) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func getWriter(w net.Conn) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// Pool keeps connections to one upstream endpoint warm and reuses them,
// most recently used first (LIFO keeps few connections hot and lets the
// rest expire). Connections are dialed on demand with PoolConfig.Dial; idle
// ones are closed after IdleTimeout. A Pool is safe for concurrent use; its
// constructor does no I/O.
type Pool struct {
	cfg PoolConfig

	mu sync.Mutex
	// guarded by mu: the idle connections (most recent last), whether
	// Close was called, and the timer that expires idle connections.
	idle   []*upstreamConn
	closed bool
	reaper *time.Timer
}

// NewPool returns a Pool for cfg.Addr. cfg.Dial is required.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = defaultMaxIdle
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultPoolIdle
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return &Pool{cfg: cfg}
}

// SetIdleTimeout changes IdleTimeout (d <= 0 restores the default) for
// connections handed back from now on.
func (p *Pool) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		d = defaultPoolIdle
	}
	p.mu.Lock()
	p.cfg.IdleTimeout = d
	p.mu.Unlock()
}

// Addr returns the endpoint's address as configured.
func (p *Pool) Addr() string { return p.cfg.Addr }

// Idle returns the number of idle connections held.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close closes the idle connections and makes the Pool close every
// connection handed back to it. Exchanges in flight finish.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

// upstreamConn is one connection to the upstream with its buffers, which
// it holds only while in use (nil while idle in the pool).
type upstreamConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	pool   *Pool
	idleAt time.Time
	reused bool // taken from the idle list: may have been closed by the peer
}

func (uc *upstreamConn) close() {
	_ = uc.conn.Close()
	if uc.br != nil {
		putReader(uc.br)
		putWriter(uc.bw)
		uc.br, uc.bw = nil, nil
	}
}

// get returns an idle connection or dials a new one.
func (p *Pool) get(ctx context.Context) (*upstreamConn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		uc := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(uc.idleAt) > p.cfg.IdleTimeout {
			p.mu.Unlock()
			uc.close()
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		uc.reused = true
		if uc.br == nil {
			uc.br, uc.bw = getReader(uc.conn), getWriter(uc.conn)
		}
		return uc, nil
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, proxyerr.New(http.StatusServiceUnavailable, "connection pool for %s is closed (endpoint removed)", p.cfg.Addr)
	}
	return p.dial(ctx)
}

// dial opens a fresh connection under ConnectTimeout. Its errors are
// *proxyerr.Error: 504 on a timeout, 502 otherwise.
func (p *Pool) dial(ctx context.Context) (*upstreamConn, error) {
	if p.cfg.Dial == nil {
		return nil, proxyerr.New(http.StatusBadGateway, "connect to %s: no dialer configured", p.cfg.Addr)
	}
	dctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	c, err := p.cfg.Dial(dctx)
	cancel()
	if err != nil {
		var pe *proxyerr.Error
		if errors.As(err, &pe) {
			return nil, pe // the dialer's own answer (a connection limit)
		}
		return nil, dialError(p.cfg.Addr, p.cfg.ConnectTimeout, err)
	}
	return &upstreamConn{conn: c, br: getReader(c), bw: getWriter(c), pool: p}, nil
}

func dialError(addr string, timeout time.Duration, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: refused (is the application listening on that port?)", addr)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return proxyerr.Wrap(http.StatusGatewayTimeout, err, "connect to %s: timed out after %s", addr, timeout)
	case errors.Is(err, syscall.ECONNRESET):
		return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: reset by peer", addr)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: unreachable", addr)
	}
	return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: %s", addr, innermost(err))
}

func innermost(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// put hands a connection back after a complete exchange that left it
// reusable.
func (p *Pool) put(uc *upstreamConn) {
	uc.idleAt = time.Now()
	uc.reused = false
	// An idle connection keeps no buffers: they go back to the pools
	// shared by every connection and come back with the next exchange, so
	// a proxy calling many destinations does not hold 8 KiB per idle
	// connection (docs/performance.md, "Proxy memory in a 1,000-service
	// mesh"). A reader still holding bytes keeps them.
	if uc.br != nil && uc.br.Buffered() == 0 && uc.bw.Buffered() == 0 {
		putReader(uc.br)
		putWriter(uc.bw)
		uc.br, uc.bw = nil, nil
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.cfg.MaxIdle {
		p.mu.Unlock()
		uc.close()
		return
	}
	p.idle = append(p.idle, uc)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(p.cfg.IdleTimeout, p.reap)
	}
	p.mu.Unlock()
}

// reap closes connections idle for longer than IdleTimeout and re-arms
// itself while idle connections remain.
func (p *Pool) reap() {
	now := time.Now()
	var expired []*upstreamConn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleAt) >= p.cfg.IdleTimeout {
		n++
	}
	expired = append(expired, p.idle[:n]...)
	rest := copy(p.idle, p.idle[n:])
	clear(p.idle[rest:])
	p.idle = p.idle[:rest]
	p.reaper = nil
	if len(p.idle) > 0 {
		next := p.cfg.IdleTimeout - now.Sub(p.idle[0].idleAt)
		p.reaper = time.AfterFunc(next, p.reap)
	}
	p.mu.Unlock()
	for _, uc := range expired {
		uc.close()
	}
}

// String describes the pool for logs.
func (p *Pool) String() string { return fmt.Sprintf("pool(%s)", p.cfg.Addr) }
