// Package capture serves the proxy's transparent capture listeners: the
// connections iptables redirected to the proxy (see `weft-proxy init` and
// package capture/iptables). For each accepted connection it reads the
// original destination (SO_ORIGINAL_DST), refuses connections that were
// not redirected (a client that dialled the capture port itself would
// loop), and hands the connection to the server of its destination,
// made on first use: for inbound capture one per application port, for
// outbound capture one per original destination address. Those servers
// are the proxy's ordinary inbound and outbound servers, each reading
// connections from a listener of its own, so capture reuses detection,
// routing, balancing, mutual TLS, authorization and metrics unchanged. A
// server without connections for Config.IdleTimeout is stopped, and made
// again when its destination is next used.
//
// Only the proxy's assembly (internal/proxy/sidecar) imports capture.
// Serve may be called concurrently for different listeners.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Server serves the connections of one destination, from ln, until ctx
// ends (then it drains) or ln is closed with no connection open.
type Server interface {
	Serve(ctx context.Context, ln net.Listener) error
}

// Config of Serve.
type Config struct {
	// Name of the listener in logs ("inbound capture").
	Name string
	// Key returns the destination of a redirected connection: the key of
	// its server. An error refuses the connection (it is closed).
	Key func(dst netip.AddrPort) (string, error)
	// New makes the server of a key; required.
	New func(key string) Server
	// IdleTimeout stops a server that had no connection open for that
	// long; zero means 5 minutes.
	IdleTimeout time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// ErrNotRedirected refuses a connection whose original destination is the
// capture listener itself.
var ErrNotRedirected = errors.New("connection was not redirected by iptables (it was sent to the capture port itself); refusing it to avoid a loop")

// Serve accepts connections on ln until ctx ends, dispatching them by
// original destination; then it waits for every server to drain. It
// closes ln.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &dispatcher{cfg: cfg, log: log.With("component", cfg.Name), ctx: ctx, entries: map[string]*entry{}}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	evictCtx, stopEvict := context.WithCancel(ctx)
	evictDone := make(chan struct{})
	go func() {
		defer close(evictDone)
		d.evictLoop(evictCtx)
	}()
	var conns sync.WaitGroup
	var acceptErr error
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if retryable(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				d.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			acceptErr = fmt.Errorf("%s: %w", cfg.Name, err)
			break
		}
		delay = 0
		conns.Add(1)
		go func() {
			defer conns.Done()
			d.dispatch(c)
		}()
	}
	ln.Close()
	conns.Wait()
	stopEvict()
	<-evictDone
	// Servers drain on ctx; when Serve stops for an accept error, close
	// their listeners so that they stop as well.
	d.mu.Lock()
	d.closed = true
	var all []*entry
	for _, e := range d.entries {
		all = append(all, e)
	}
	all = append(all, d.stopping...)
	d.mu.Unlock()
	for _, e := range all {
		if acceptErr != nil {
			e.ln.Close()
		}
		<-e.done
	}
	return acceptErr
}

type dispatcher struct {
	cfg Config
	log *slog.Logger
	ctx context.Context

	// mu guards entries, stopping and closed.
	mu       sync.Mutex
	entries  map[string]*entry
	stopping []*entry // evicted, their Serve maybe still returning
	closed   bool
}

// entry is the server of one destination.
type entry struct {
	key    string
	ln     *chanListener
	done   chan struct{} // closed when the server's Serve returned
	active int           // connections open; guarded by dispatcher.mu
	idle   time.Time     // when active last fell to 0
}

func (d *dispatcher) dispatch(c net.Conn) {
	dst, err := OriginalDst(c)
	if err == nil && c.LocalAddr() != nil {
		if local, ok := c.LocalAddr().(*net.TCPAddr); ok && local.AddrPort().Addr().Unmap() == dst.Addr() && local.AddrPort().Port() == dst.Port() {
			err = ErrNotRedirected
		}
	}
	var key string
	if err == nil {
		key, err = d.cfg.Key(dst)
	}
	if err != nil {
		d.log.Info("refusing connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	d.mu.Lock()
	if d.closed || d.ctx.Err() != nil {
		d.mu.Unlock()
		c.Close()
		return
	}
	e := d.entries[key]
	if e == nil {
		e = &entry{key: key, ln: newChanListener(c.LocalAddr()), done: make(chan struct{})}
		d.entries[key] = e
		srv := d.cfg.New(key)
		go func() {
			defer close(e.done)
			if err := srv.Serve(d.ctx, e.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				d.log.Warn("server stopped", "destination", key, "err", err)
			}
		}()
	}
	e.active++
	d.mu.Unlock()
	tc := track(c, func() {
		d.mu.Lock()
		e.active--
		if e.active == 0 {
			e.idle = time.Now()
		}
		d.mu.Unlock()
	})
	select {
	case e.ln.ch <- tc:
	case <-e.done:
		tc.Close()
	}
}

// evictLoop stops servers idle for IdleTimeout.
func (d *dispatcher) evictLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			for k, e := range d.entries {
				if e.active == 0 && !e.idle.IsZero() && now.Sub(e.idle) >= d.cfg.IdleTimeout {
					delete(d.entries, k)
					e.ln.Close()
					d.stopping = append(d.stopping, e)
					d.log.Debug("stopped idle server", "destination", k)
				}
			}
			// Forget the servers that have returned.
			kept := d.stopping[:0]
			for _, e := range d.stopping {
				select {
				case <-e.done:
				default:
					kept = append(kept, e)
				}
			}
			d.stopping = kept
			d.mu.Unlock()
		}
	}
}

// chanListener is a net.Listener whose connections the dispatcher sends.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{ch: make(chan net.Conn), closed: make(chan struct{}), addr: addr}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// track returns c, calling closed once when it is first closed. A TCP
// connection keeps its methods (CloseWrite, ReadFrom, SyscallConn), so
// forwarding may still splice.
func track(c net.Conn, closed func()) net.Conn {
	t := &tracker{closed: closed}
	if tc, ok := c.(*net.TCPConn); ok {
		return &trackedTCP{TCPConn: tc, t: t}
	}
	return &trackedConn{Conn: c, t: t}
}

type tracker struct {
	once   sync.Once
	closed func()
}

type trackedTCP struct {
	*net.TCPConn
	t *tracker
}

func (c *trackedTCP) Close() error {
	err := c.TCPConn.Close()
	c.t.once.Do(c.t.closed)
	return err
}

type trackedConn struct {
	net.Conn
	t *tracker
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.t.once.Do(c.t.closed)
	return err
}

// retryable reports whether an accept error is passing.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
