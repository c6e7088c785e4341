// Package discovery is the proxy's client of the controller's discovery
// API (api/meshv1): one Mesh.Stream per proxy, carrying the watch of the
// proxy's own workload (its inbound configuration) and one watch per
// authority the proxy sends traffic to, subscribed on first use.
//
// Each watch keeps the newest snapshot in an atomic pointer: readers on the
// request path never lock. When the stream breaks (the controller restarts,
// the network fails), every last snapshot stays in force and the client
// reconnects with jittered exponential backoff and subscribes again to
// everything it watches; the proxy never drops good configuration because
// the controller went away.
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
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// Config of a Client. Zero values take the defaults noted.
type Config struct {
	// Conn is the connection to the controller; required.
	Conn grpc.ClientConnInterface
	// Proxy identifies this proxy (the stream's hello).
	Proxy *meshv1.ProxyInfo
	// Logger; nil discards logs.
	Logger *slog.Logger
	// BackoffMin is the first reconnect delay; default 100ms.
	BackoffMin time.Duration
	// BackoffMax caps the reconnect delay; default 5s.
	BackoffMax time.Duration
}

// DialOptions are the options of a proxy's connection to the controller,
// besides its credentials:
//   - keepalive pings notice a controller that vanished without closing
//     its connections; gRPC servers refuse pings more frequent than every
//     5 minutes by default, hence the long interval;
//   - static flow-control windows of 1 MiB: the controller's snapshots are
//     usually a few KiB (a larger one still arrives, a window at a time),
//     so the bandwidth-delay estimator that widens windows had little to
//     gain, while its ping after every message the controller sent cost
//     the controller a ping to read and an acknowledgement to write per
//     proxy and change.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}),
		grpc.WithStaticStreamWindowSize(controlWindow),
		grpc.WithStaticConnWindowSize(controlWindow),
	}
}

// controlWindow is the flow-control window of DialOptions.
const controlWindow = 1 << 20

// Client watches the controller. Create it with New, start it with Run.
type Client struct {
	cfg     Config
	log     *slog.Logger
	mesh    meshv1.MeshClient
	inbound *Watch[meshv1.InboundSnapshot]

	// mu guards everything below.
	mu sync.Mutex
	// watches are the destination watches by authority: what the stream
	// subscribes to.
	watches map[string]*Watch[meshv1.DestinationSnapshot]
	// uses counts Acquire's holders per authority; pinned authorities
	// (asked for with Destination) are never released.
	uses   map[string]int
	pinned map[string]bool
	// changed is closed (and replaced) when watches changes, for the
	// stream's sender.
	changed chan struct{}
	started bool
}

// New returns a Client; it does no I/O.
func New(cfg Config) *Client {
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	if cfg.Proxy == nil {
		cfg.Proxy = &meshv1.ProxyInfo{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:     cfg,
		log:     log.With("component", "discovery"),
		mesh:    meshv1.NewMeshClient(cfg.Conn),
		inbound: newWatch[meshv1.InboundSnapshot]("inbound"),
		watches: map[string]*Watch[meshv1.DestinationSnapshot]{},
		uses:    map[string]int{},
		pinned:  map[string]bool{},
		changed: make(chan struct{}),
	}
}

// Run keeps the stream to the controller open until ctx ends, watching the
// proxy's inbound configuration and every destination asked for. It
// returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("discovery: Run called twice")
	}
	c.started = true
	c.mu.Unlock()

	backoff := c.cfg.BackoffMin
	for ctx.Err() == nil {
		got, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			// The stream worked for a while: start over from the minimum.
			backoff = c.cfg.BackoffMin
		}
		c.setErr(err)
		// Jitter in [backoff/2, backoff]: proxies that lost the same
		// controller do not reconnect in lockstep.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		c.log.Warn("controller stream broke; keeping the last snapshots and reconnecting",
			"err", err, "retry_in", d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
	return nil
}

// setErr records why the stream broke on every watch.
func (c *Client) setErr(err error) {
	c.inbound.setErr(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watches {
		w.setErr(err)
	}
}

// session runs one stream until it fails; got reports whether it
// delivered at least one message.
func (c *Client) session(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	s, err := c.mesh.Stream(ctx)
	if err != nil {
		cancel()
		return false, fmt.Errorf("open stream: %w", err)
	}
	sendErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.send(ctx, s); err != nil {
			sendErr <- err
			cancel() // ends Recv below
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	for {
		msg, err := s.Recv()
		if err != nil {
			select {
			case err := <-sendErr:
				return got, fmt.Errorf("stream: send: %w", err)
			default:
			}
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return got, ctx.Err()
			}
			return got, fmt.Errorf("stream: %w", err)
		}
		got = true
		switch k := msg.GetKind().(type) {
		case *meshv1.ControllerMessage_Destination:
			c.mu.Lock()
			w := c.watches[k.Destination.GetAuthority()]
			c.mu.Unlock()
			if w != nil { // else unsubscribed meanwhile
				w.store(k.Destination)
			}
		case *meshv1.ControllerMessage_Inbound:
			c.inbound.store(k.Inbound)
		case *meshv1.ControllerMessage_Error:
			e := k.Error
			err := status.Error(codes.Code(e.GetCode()), e.GetMessage())
			if e.GetSubscription().GetInbound() {
				c.inbound.setErr(fmt.Errorf("controller refused the inbound subscription: %w", err))
				c.log.Warn("controller refused the inbound subscription", "err", err)
				continue
			}
			c.mu.Lock()
			w := c.watches[e.GetSubscription().GetAuthority()]
			c.mu.Unlock()
			if w != nil {
				w.setErr(fmt.Errorf("controller refused the subscription: %w", err))
			}
			c.log.Warn("controller refused a subscription", "authority", e.GetSubscription().GetAuthority(), "err", err)
		case *meshv1.ControllerMessage_Goodbye:
			return got, errors.New("the controller is shutting down")
		}
	}
}

// send identifies the proxy, then keeps the stream's subscriptions equal
// to the watches until ctx ends.
func (c *Client) send(ctx context.Context, s meshv1.Mesh_StreamClient) error {
	if err := s.Send(&meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Hello{Hello: c.cfg.Proxy}}); err != nil {
		return err
	}
	if c.cfg.Proxy.GetId() != "" || c.cfg.Proxy.GetWorkload() != "" {
		if err := s.Send(subscribe(&meshv1.Subscription{Inbound: true})); err != nil {
			return err
		}
	}
	subscribed := map[string]bool{}
	for {
		var add, drop []string
		c.mu.Lock()
		changed := c.changed
		for a := range c.watches {
			if !subscribed[a] {
				add = append(add, a)
			}
		}
		for a := range subscribed {
			if c.watches[a] == nil {
				drop = append(drop, a)
			}
		}
		c.mu.Unlock()
		for _, a := range add {
			if err := s.Send(subscribe(&meshv1.Subscription{Authority: a})); err != nil {
				return err
			}
			subscribed[a] = true
		}
		for _, a := range drop {
			msg := &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Unsubscribe{Unsubscribe: &meshv1.Subscription{Authority: a}}}
			if err := s.Send(msg); err != nil {
				return err
			}
			delete(subscribed, a)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func subscribe(sub *meshv1.Subscription) *meshv1.ProxyMessage {
	return &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: sub}}
}

// notifyLocked wakes the sender; c.mu is held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Inbound returns the watch of the proxy's own workload.
func (c *Client) Inbound() *Watch[meshv1.InboundSnapshot] { return c.inbound }

// Destination returns the watch of authority, subscribing on first use.
// Its snapshot is nil until the controller first answers.
func (c *Client) Destination(authority string) *Watch[meshv1.DestinationSnapshot] {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinned[authority] = true
	return c.destinationLocked(authority)
}

// Acquire returns the watch of authority like Destination, and a function
// to call when it is no longer needed: when the last holder releases it
// (and Destination never asked for it), the client unsubscribes and
// forgets it. For destinations used for a while only, such as the
// original destinations of captured connections.
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
			c.notifyLocked()
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
	c.notifyLocked()
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

// Watch holds the newest snapshot of one watched resource.
type Watch[T any] struct {
	name  string
	state atomic.Pointer[watchState[T]]
	err   atomic.Pointer[error]
}

type watchState[T any] struct {
	snap *T
	at   time.Time // when snap arrived
	// changed ends when a newer state is stored (cancel): a context, so
	// that OnChange can wait for it without a goroutine.
	changed context.Context
	cancel  context.CancelFunc
}

func newWatchState[T any](snap *T, at time.Time) *watchState[T] {
	ctx, cancel := context.WithCancel(context.Background())
	return &watchState[T]{snap: snap, at: at, changed: ctx, cancel: cancel}
}

func newWatch[T any](name string) *Watch[T] {
	w := &Watch[T]{name: name}
	w.state.Store(newWatchState[T](nil, time.Time{}))
	return w
}

// Name is the watched authority ("inbound" for the inbound watch).
func (w *Watch[T]) Name() string { return w.name }

// Load returns the newest snapshot, nil until the first arrives. Callers
// must not modify it.
func (w *Watch[T]) Load() *T { return w.state.Load().snap }

// Received returns the newest snapshot, as Load, and when it arrived.
func (w *Watch[T]) Received() (*T, time.Time) {
	st := w.state.Load()
	return st.snap, st.at
}

// Changed returns a channel closed when a snapshot newer than the one Load
// returned before the call is stored.
func (w *Watch[T]) Changed() <-chan struct{} { return w.state.Load().changed.Done() }

// OnChange runs fn on a goroutine of its own once a snapshot newer than
// the one Load returned before the call is stored, like a receive from
// Changed but with no goroutine waiting meanwhile (a proxy watches a
// destination per service it calls). stop, as context.AfterFunc's, cancels
// it and reports whether it did so before fn started.
func (w *Watch[T]) OnChange(fn func()) (stop func() bool) {
	return context.AfterFunc(w.state.Load().changed, fn)
}

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
		case <-st.changed.Done():
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

// store publishes snap. Only the stream's receiving goroutine calls it.
func (w *Watch[T]) store(snap *T) {
	old := w.state.Load()
	w.state.Store(newWatchState(snap, time.Now()))
	old.cancel()
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
