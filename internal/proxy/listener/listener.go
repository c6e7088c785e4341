// Package listener runs an accept loop with graceful drain: it hands every
// accepted connection to a handler, and when its context ends it stops
// accepting, tells handlers to drain, waits for them up to a drain timeout
// and then closes every connection still open.
//
// The proxy's inbound and outbound servers import listener. Serve may be
// called concurrently for different listeners.
package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// DefaultDrainTimeout bounds a drain when Config.DrainTimeout is zero.
const DefaultDrainTimeout = 10 * time.Second

// Config of Serve.
type Config struct {
	// DrainTimeout bounds the drain; default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// OnDrain, if not nil, runs when the drain starts, with a context that
	// ends at the drain deadline (for example an HTTP/2 server's GOAWAY
	// and wait). Serve waits for it to return.
	OnDrain func(ctx context.Context)
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Handler serves one connection. ctx ends when a drain starts: HTTP
// handlers finish the request in flight and close; handlers that cannot
// drain (opaque TCP) ignore it and are closed at the drain deadline.
// Handlers close c when they are done. At the drain deadline Serve closes
// c; Aborted(ctx) ends then too, and handlers close on it whatever else
// they opened for c (their upstream connections), so that a request the
// application never answers cannot hold the drain past its deadline.
type Handler func(ctx context.Context, c net.Conn)

// Serve accepts connections on ln until ctx ends, then drains. It closes
// ln. It returns nil after a drain, or the accept error that stopped it.
func Serve(ctx context.Context, ln net.Listener, cfg Config, handle Handler) error {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		// mu guards conns: the connections being handled.
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	abortCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	drainCtx, startDrain := context.WithCancel(context.WithValue(abortCtx, abortKey{}, abortCtx))
	defer startDrain()
	stopAccept := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccept()

	var acceptErr error
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if retryable(err) {
				// Out of file descriptors and the like: back off, retry.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Warn("accept failed; retrying", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			acceptErr = err
			break
		}
		delay = 0
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			handle(drainCtx, c)
		}()
	}
	ln.Close()

	// Drain: handlers learn it from drainCtx; the deadline closes the rest.
	deadline, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	startDrain()
	var hook sync.WaitGroup
	if cfg.OnDrain != nil {
		hook.Add(1)
		go func() {
			defer hook.Done()
			cfg.OnDrain(deadline)
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-deadline.Done():
		mu.Lock()
		n := len(conns)
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		abort()
		log.Warn("drain deadline passed; closed connections still open", "addr", ln.Addr().String(), "connections", n)
		<-done
	}
	cancel()
	hook.Wait()
	return acceptErr
}

type abortKey struct{}

// Aborted returns the context, carried by a Handler's ctx, that ends at the
// drain deadline, when Serve closes the connections still open (and when
// Serve returns). For a ctx that does not come from Serve it returns a
// context that never ends.
func Aborted(ctx context.Context) context.Context {
	if a, ok := ctx.Value(abortKey{}).(context.Context); ok {
		return a
	}
	return context.Background()
}

// retryable reports whether an accept error is passing: out of file
// descriptors or buffers, or a connection aborted before it was accepted.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
