// Package controller assembles the control plane: the proxy API (gRPC,
// package push) and the Identity API (package identity, the mesh's
// certificate authority) on one gRPC server over TLS, the CLI's HTTP API
// (package httpapi) and the metrics scraper (package viz), all fed by one
// configuration store. Proxies use the mesh API only with the certificate
// they got from the Identity API, and watch only their own workload's
// inbound configuration. `weft up`
// embeds it and cmd/weft-controller runs it.
//
// New does no I/O; Run binds both listeners, serves until its context ends
// and stops gracefully. Ready, GRPCAddr and HTTPAddr are safe to call from
// any goroutine.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/control/viz"
	"weft.dev/weft/internal/proxy/authz"
)

// Default listen addresses.
const (
	DefaultGRPCAddr = "127.0.0.1:8086"
	DefaultHTTPAddr = "127.0.0.1:8085"
)

// shutdownGrace bounds how long in-flight HTTP requests and gRPC calls may
// take to finish once Run's context ends.
const shutdownGrace = 5 * time.Second

// Config configures a Controller.
type Config struct {
	// GRPCAddr is the proxy API listen address; "" means DefaultGRPCAddr.
	// Port 0 picks a free port (see GRPCAddr after Ready).
	GRPCAddr string
	// HTTPAddr is the CLI API listen address; "" means DefaultHTTPAddr.
	HTTPAddr string
	// Token is the bearer token the HTTP API requires; required.
	Token string
	// Store is the configuration source and the target of apply (local
	// mode); required unless Source is set.
	Store *memory.Store
	// Source is a read-only configuration source (Kubernetes mode), used
	// when Store is nil: the HTTP API then refuses apply and delete and
	// points the user to kubectl.
	Source config.Source
	// Authenticator turns a proxy's proof of identity into its identity
	// (Kubernetes mode: TokenReview); nil means the join tokens (Tokens).
	Authenticator identity.Authenticator
	// Logger; nil discards logs.
	Logger *slog.Logger
	// ScrapeInterval between scrapes of the proxies' metrics; zero means 2s.
	ScrapeInterval time.Duration
	// DefaultInboundPolicy is the mesh's default inbound policy
	// (all-unauthenticated, all-authenticated, deny or audit) where no
	// InboundPolicyDefault or Server decides; "" is all-unauthenticated.
	DefaultInboundPolicy string
	// Issuer signs workload certificates (identity.LoadIssuer). Nil
	// generates a trust anchor and an issuer in memory at New, valid for
	// a year, which proxies then need from TrustAnchorsPEM.
	Issuer *identity.Issuer
	// TrustDomain of the mesh's SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// CertLifetime of workload certificates; zero means 24h.
	CertLifetime time.Duration
	// Tokens are the join tokens proxies prove their identity with; nil
	// starts with none (add them with IssueToken or Tokens().Register).
	Tokens *identity.JoinTokens
	// ServingDNS are DNS names for the controller's serving certificate
	// besides its SPIFFE ID; nil means localhost.
	ServingDNS []string
}

// Controller is the running control plane.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	push    *push.Server
	scraper *viz.Scraper
	api     *httpapi.Handler
	ready   chan struct{}
	ca      *identity.CA
	tokens  *identity.JoinTokens
	leaves  *leafLog

	// mu guards grpcAddr, httpAddr and started.
	mu                 sync.Mutex
	grpcAddr, httpAddr string
	started            bool
}

// New validates cfg and builds the parts. It does no I/O.
func New(cfg Config) (*Controller, error) {
	if cfg.Store != nil {
		cfg.Source = cfg.Store
	}
	if cfg.Source == nil {
		return nil, errors.New("controller: a configuration store is required (Store, or Source in Kubernetes mode)")
	}
	if cfg.Token == "" {
		return nil, errors.New("controller: a bearer token for the HTTP API is required")
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = DefaultGRPCAddr
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = 2 * time.Second
	}
	for _, a := range []struct{ flag, addr string }{{"--grpc-addr", cfg.GRPCAddr}, {"--http-addr", cfg.HTTPAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return nil, fmt.Errorf("%s %q: %w; give host:port, e.g. 127.0.0.1:8085", a.flag, a.addr, err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var defaultPolicy meshv1.InboundPolicy_Default
	if cfg.DefaultInboundPolicy != "" {
		d, err := authz.ParseDefault(cfg.DefaultInboundPolicy)
		if err != nil {
			return nil, fmt.Errorf("--default-inbound-policy: %w", err)
		}
		defaultPolicy = d
	}
	ca, err := newCA(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Tokens == nil {
		cfg.Tokens = identity.NewJoinTokens()
	}
	c := &Controller{
		cfg:    cfg,
		log:    log.With("component", "controller"),
		ready:  make(chan struct{}),
		ca:     ca,
		tokens: cfg.Tokens,
		leaves: &leafLog{},
	}
	c.push = push.New(cfg.Source, push.Config{Logger: log, DefaultInboundPolicy: defaultPolicy, AuthorizeInbound: c.authorizeInbound})
	c.scraper = viz.New(cfg.Source, viz.Config{Interval: cfg.ScrapeInterval, Logger: log})
	api, err := httpapi.New(httpapi.Config{Token: cfg.Token, Store: cfg.Store, Source: cfg.Source, Sent: c.push, Stats: c.scraper,
		Identity: identityStatus{c}, Logger: log})
	if err != nil {
		return nil, err
	}
	c.api = api
	return c, nil
}

// Ready is closed once both listeners are bound.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// GRPCAddr is the bound proxy API address; valid after Ready.
func (c *Controller) GRPCAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grpcAddr
}

// HTTPAddr is the bound HTTP API address; valid after Ready.
func (c *Controller) HTTPAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.httpAddr
}

// Push returns the proxy API server, e.g. to read what proxies were sent.
func (c *Controller) Push() *push.Server { return c.push }

// Stats returns the metrics scraper.
func (c *Controller) Stats() *viz.Scraper { return c.scraper }

// listen binds addr and explains the common failure to the user.
func listen(ctx context.Context, addr, flag string) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err == nil {
		return l, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen %s (%s): address already in use; stop the other program or choose another address", addr, flag)
	}
	return nil, fmt.Errorf("listen %s (%s): %w", addr, flag, err)
}

// Run binds both listeners, serves until ctx ends, then stops gracefully:
// proxy watches end (proxies reconnect to the next controller), in-flight
// HTTP requests finish within a grace period. It returns nil after a
// clean stop, or the error that stopped it. Run may be called once.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("controller: Run called twice")
	}
	c.started = true
	c.mu.Unlock()

	grpcLis, err := listen(ctx, c.cfg.GRPCAddr, "--grpc-addr")
	if err != nil {
		return err
	}
	httpLis, err := listen(ctx, c.cfg.HTTPAddr, "--http-addr")
	if err != nil {
		grpcLis.Close()
		return err
	}
	c.mu.Lock()
	c.grpcAddr, c.httpAddr = grpcLis.Addr().String(), httpLis.Addr().String()
	c.mu.Unlock()

	g := grpc.NewServer(c.serverOptions()...)
	c.push.Register(g)
	c.registerIdentity(g)
	hs := &http.Server{
		Handler:           c.api,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3) // one per goroutine below, so none blocks
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		// ErrServerStopped: the stop came before Serve started.
		if err := g.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs <- fmt.Errorf("serve proxy API on %s: %w", c.GRPCAddr(), err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve HTTP API on %s: %w", c.HTTPAddr(), err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := c.scraper.Run(ctx); err != nil {
			errs <- fmt.Errorf("scrape metrics: %w", err)
			cancel()
		}
	}()
	c.log.Info("controller serving", "grpc_addr", c.GRPCAddr(), "http_addr", c.HTTPAddr())
	close(c.ready)

	<-ctx.Done()
	c.log.Info("controller stopping")
	c.push.Shutdown()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer done()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		hs.Close()
	}
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		g.Stop()
		<-stopped
	}
	wg.Wait()
	close(errs)
	return errors.Join(drain(errs)...)
}

func drain(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}
