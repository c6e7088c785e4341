// Package discovery is the proxy's client of the controller's discovery
// API (api/meshv1): Inbound.Watch for the proxy's own workload and one
// Destinations.Watch per authority the proxy sends traffic to, created on
// first use.
//
// Each watch keeps the newest snapshot in an atomic pointer: readers on the
// request path never lock. When a stream breaks (the controller restarts,
// the network fails), the last snapshot stays in force and the watch
// reconnects with jittered exponential backoff; the proxy never drops good
// configuration because the controller went away.
//
// Any proxy package may import discovery. All methods are safe for
// concurrent use.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// Config of a Client. Zero values take the defaults noted.
type Config struct {
	// Conn is the connection to the controller; required.
	Conn grpc.ClientConnInterface
	// Proxy identifies this proxy in every request.
	Proxy *meshv1.ProxyInfo
	// Logger; nil discards logs.
	Logger *slog.Logger
	// BackoffMin is the first reconnect delay; default 100ms.
	BackoffMin time.Duration
	// BackoffMax caps the reconnect delay; default 5s.
	BackoffMax time.Duration
}

// Client watches the controller. Create it with New, start it with Run.
type Client struct {
	cfg      Config
	log      *slog.Logger
	dests    destsAPI
	inbound  *Watch[meshv1.InboundSnapshot]
	inbounds meshv1.InboundClient

	// mu guards watches, runCtx and stopped: destination watches by
	// authority, the context of Run once it started, and whether Run
	// returned.
	mu      sync.Mutex
	watches map[string]*Watch[meshv1.DestinationSnapshot]
	// uses counts Acquire's holders per authority; pinned authorities
	// (asked for with Destination) are never released; cancels stops the
	// stream of a started watch.
	uses    map[string]int
	pinned  map[string]bool
	cancels map[string]context.CancelFunc
	runCtx  context.Context
	stopped bool
	wg      sync.WaitGroup
}

type destsAPI = meshv1.DestinationsClient

// New returns a Client; it does no I/O.
func New(cfg Config) *Client {
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:      cfg,
		log:      log.With("component", "discovery"),
		dests:    meshv1.NewDestinationsClient(cfg.Conn),
		inbounds: meshv1.NewInboundClient(cfg.Conn),
		inbound:  newWatch[meshv1.InboundSnapshot]("inbound"),
		watches:  map[string]*Watch[meshv1.DestinationSnapshot]{},
		uses:     map[string]int{},
		pinned:   map[string]bool{},
		cancels:  map[string]context.CancelFunc{},
	}
}

// Run watches the proxy's inbound configuration and every destination
// asked for, until ctx ends. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.runCtx != nil || c.stopped {
		c.mu.Unlock()
		return errors.New("discovery: Run called twice")
	}
	c.runCtx = ctx
	for _, w := range c.watches {
		c.startDestination(ctx, w)
	}
	c.mu.Unlock()

	runWatch(ctx, c, c.inbound, func(ctx context.Context) (func() (*meshv1.InboundSnapshot, error), error) {
		s, err := c.inbounds.Watch(ctx, &meshv1.InboundRequest{Proxy: c.cfg.Proxy})
		if err != nil {
			return nil, err
		}
		return s.Recv, nil
	})

	c.mu.Lock()
	c.stopped = true // later Destination calls start nothing
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Inbound returns the watch of the proxy's own workload.
func (c *Client) Inbound() *Watch[meshv1.InboundSnapshot] { return c.inbound }

// Destination returns the watch of authority, starting it on first use.
// Its snapshot is nil until the controller first answers.
func (c *Client) Destination(authority string) *Watch[meshv1.DestinationSnapshot] {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinned[authority] = true
	return c.destinationLocked(authority)
}

// Acquire returns the watch of authority like Destination, and a function
// to call when it is no longer needed: when the last holder releases it
// (and Destination never asked for it), its stream stops and it is
// forgotten. For destinations used for a while only, such as the original
// destinations of captured connections.
func (c *Client) Acquire(authority string) (*Watch[meshv1.DestinationSnapshot], func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uses[authority]++
	w := c.destinationLocked(authority)
	var once sync.Once
	return w, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.uses[authority]--
			if c.uses[authority] > 0 || c.pinned[authority] {
				return
			}
			delete(c.uses, authority)
			delete(c.watches, authority)
			if cancel := c.cancels[authority]; cancel != nil {
				cancel()
				delete(c.cancels, authority)
			}
		})
	}
}

// destinationLocked is Destination; c.mu must be held.
func (c *Client) destinationLocked(authority string) *Watch[meshv1.DestinationSnapshot] {
	if w, ok := c.watches[authority]; ok {
		return w
	}
	w := newWatch[meshv1.DestinationSnapshot](authority)
	c.watches[authority] = w
	if c.runCtx != nil && !c.stopped {
		c.startDestination(c.runCtx, w)
	}
	return w
}

// Destinations returns the watched authorities and their newest snapshots
// (nil when none arrived yet), for status pages.
func (c *Client) Destinations() map[string]*meshv1.DestinationSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*meshv1.DestinationSnapshot, len(c.watches))
	for a, w := range c.watches {
		out[a] = w.Load()
	}
	return out
}

// startDestination runs the watch of w; c.mu must be held.
func (c *Client) startDestination(ctx context.Context, w *Watch[meshv1.DestinationSnapshot]) {
	ctx, cancel := context.WithCancel(ctx)
	c.cancels[w.name] = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		runWatch(ctx, c, w, func(ctx context.Context) (func() (*meshv1.DestinationSnapshot, error), error) {
			s, err := c.dests.Watch(ctx, &meshv1.DestinationRequest{Authority: w.name, Proxy: c.cfg.Proxy})
			if err != nil {
				return nil, err
			}
			return s.Recv, nil
		})
	}()
}

// runWatch keeps one stream open until ctx ends, storing every snapshot
// in w, and reconnects with jittered exponential backoff when it breaks.
func runWatch[T any](ctx context.Context, c *Client, w *Watch[T], open func(context.Context) (func() (*T, error), error)) {
	backoff := c.cfg.BackoffMin
	for ctx.Err() == nil {
		got, err := stream(ctx, w, open)
		if ctx.Err() != nil {
			return
		}
		if got {
			// The stream worked for a while: start over from the minimum.
			backoff = c.cfg.BackoffMin
		}
		w.setErr(err)
		// Jitter in [backoff/2, backoff]: proxies that lost the same
		// controller do not reconnect in lockstep.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		c.log.Warn("controller watch broke; keeping the last snapshot and reconnecting",
			"watch", w.name, "err", err, "retry_in", d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
}

// stream runs one stream until it fails; got reports whether it delivered
// at least one snapshot.
func stream[T any](ctx context.Context, w *Watch[T], open func(context.Context) (func() (*T, error), error)) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := open(ctx)
	if err != nil {
		return false, fmt.Errorf("open watch %s: %w", w.name, err)
	}
	for {
		snap, err := recv()
		if err != nil {
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return got, ctx.Err()
			}
			return got, fmt.Errorf("watch %s: %w", w.name, err)
		}
		got = true
		w.store(snap)
	}
}

// Watch holds the newest snapshot of one watched resource.
type Watch[T any] struct {
	name  string
	state atomic.Pointer[watchState[T]]
	err   atomic.Pointer[error]
}

type watchState[T any] struct {
	snap    *T
	changed chan struct{} // closed when a newer state is stored
}

func newWatch[T any](name string) *Watch[T] {
	w := &Watch[T]{name: name}
	w.state.Store(&watchState[T]{changed: make(chan struct{})})
	return w
}

// Name is the watched authority ("inbound" for the inbound watch).
func (w *Watch[T]) Name() string { return w.name }

// Load returns the newest snapshot, nil until the first arrives. Callers
// must not modify it.
func (w *Watch[T]) Load() *T { return w.state.Load().snap }

// Changed returns a channel closed when a snapshot newer than the one Load
// returned before the call is stored.
func (w *Watch[T]) Changed() <-chan struct{} { return w.state.Load().changed }

// Wait returns the snapshot once there is one, or nil when ctx ends first.
func (w *Watch[T]) Wait(ctx context.Context) *T {
	for {
		st := w.state.Load()
		if st.snap != nil {
			return st.snap
		}
		select {
		case <-ctx.Done():
			return nil
		case <-st.changed:
		}
	}
}

// Err returns why the stream last broke, nil while it never did.
func (w *Watch[T]) Err() error {
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (w *Watch[T]) setErr(err error) { w.err.Store(&err) }

// store publishes snap. Only the watch's own goroutine calls it.
func (w *Watch[T]) store(snap *T) {
	old := w.state.Load()
	w.state.Store(&watchState[T]{snap: snap, changed: make(chan struct{})})
	close(old.changed)
}

// Protocol maps the API's protocol to the configuration model's.
func Protocol(p meshv1.Protocol) config.Protocol {
	switch p {
	case meshv1.Protocol_HTTP1:
		return config.ProtocolHTTP1
	case meshv1.Protocol_HTTP2:
		return config.ProtocolHTTP2
	case meshv1.Protocol_GRPC:
		return config.ProtocolGRPC
	case meshv1.Protocol_TCP:
		return config.ProtocolTCP
	}
	return config.ProtocolDetect
}
