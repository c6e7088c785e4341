// Package inbound is the proxy's server side: a listener in front of the
// local application. A connection from another proxy is mutual TLS
// terminated by the transport, which gives its protocol (ALPN) and the
// caller's verified identity; any other connection is refused on a strict
// port (tls_mode STRICT) and otherwise classified by the declared protocol
// of the port, else by detection, with no identity. HTTP/1.1 goes
// through the http1 server to a pool of connections to the application,
// HTTP/2 and gRPC through h2 (h2c to the application), anything else is
// forwarded as opaque TCP.
//
// The port's authorization policy (package authz) judges every HTTP
// request, on its path normalised once (package pathnorm) and forwarded
// in that form, and every opaque connection; see authz.go.
//
// Only the proxy's assembly (internal/proxy/sidecar) imports inbound. A
// Server is safe for concurrent use; Serve is called once.
package inbound

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/detect"
	"weft.dev/weft/internal/proxy/h2"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/listener"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/tcp"
	"weft.dev/weft/internal/proxy/transport"
	"weft.dev/weft/internal/proxy/upstream"
)

// Config of a Server.
type Config struct {
	// App is the application's host:port; required.
	App string
	// Protocol the application speaks on this port; zero asks Declared,
	// then detects it per connection. Connections from proxies announce
	// theirs.
	Protocol config.Protocol
	// Declared, if not nil, returns the protocol the controller declares
	// for the port (zero when it declares none). It is called per
	// connection and must not block.
	Declared func() config.Protocol
	// Service is the workload's canonical service name, "web.default";
	// the metrics label of inbound traffic.
	Service string
	// Transport recognises connections from other proxies; required
	// (there is no plaintext default: the sidecar passes mutual TLS).
	Transport transport.Transport
	// Strict, if not nil, reports whether the port refuses connections
	// that are not mutual TLS from another proxy (the controller's
	// tls_mode STRICT); nil or false is permissive: plaintext clients are
	// served, without an identity. It is called per plaintext connection
	// and must not block.
	Strict func() bool
	// Authz, if not nil, returns the port's authorization policy from the
	// newest inbound snapshot (see authz.Table); nil allows everything.
	// It is called per request and per opaque connection and must not
	// block.
	Authz func() *authz.Policy
	// RateLimit, if not nil, returns the port's rate limit from the newest
	// inbound snapshot (nil: none). It is called per request and must not
	// block.
	RateLimit func() *meshv1.RateLimit
	// Metrics records traffic; required.
	Metrics *metrics.Registry
	// DetectTimeout bounds protocol detection; default 500ms.
	DetectTimeout time.Duration
	// DrainTimeout bounds the graceful drain; default 10s.
	DrainTimeout time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Server forwards connections to the local application.
type Server struct {
	cfg     Config
	log     *slog.Logger
	app     *upstream.Upstream
	metrics *metrics.Service
	http1   *http1.Server
	h2      *h2.Server
	// limit is the compiled rate limit in force (ratelimit.go).
	limit atomic.Pointer[limiterBox]
	// conns holds the connInfo of every connection served by h2, by its
	// remote address (unique among live connections), for RouteHTTP2.
	conns sync.Map
}

// connInfo is what the transport established about a connection.
type connInfo struct {
	// peer is the verified identity of the calling proxy; empty for a
	// plaintext client.
	peer string
	// tls is true for mutual TLS from another proxy.
	tls bool
}

// New returns a Server; it does no I/O.
func New(cfg Config) *Server {
	if cfg.DetectTimeout <= 0 {
		cfg.DetectTimeout = detect.DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "inbound", "app", cfg.App)
	s := &Server{
		cfg:     cfg,
		log:     log,
		app:     upstream.New(cfg.App, "", false, nil, nil),
		metrics: cfg.Metrics.Service(metrics.Inbound, cfg.Service),
	}
	// Both tls values from the start, at zero until used: an inbound
	// server serves meshed and plain clients alike, and there are few.
	s.metrics.WithTLS(true)
	s.http1 = &http1.Server{Router: s, Logger: log}
	s.h2 = h2.NewServer(h2.Config{Router: h2Router{s}, Logger: log})
	return s
}

// Serve forwards connections accepted on ln until ctx ends, then drains.
// It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Transport == nil {
		ln.Close()
		return errors.New("inbound: no proxy-to-proxy transport configured")
	}
	err := listener.Serve(ctx, ln, listener.Config{
		DrainTimeout: s.cfg.DrainTimeout,
		Logger:       s.log,
		OnDrain:      func(ctx context.Context) { s.h2.Shutdown(ctx) },
	}, s.handle)
	s.app.Close()
	return err
}

// Route implements http1.Router for a plaintext connection served
// without a router of its own (connections get one in serveHTTP1).
func (s *Server) Route(req *http1.RequestHead) (http1.Route, error) {
	return newConnRouter(s, connInfo{}).Route(req)
}

// connRouter routes the HTTP/1.1 requests of one connection. The
// connection serves one request at a time (Route, the exchange, then the
// route's Done, in http1's serveOne), so the request in flight lives here
// and every request's Done is the same func, made once per connection:
// no allocation per request.
type connRouter struct {
	s  *Server
	ci connInfo
	// Of the request in flight.
	m     *metrics.Service
	start time.Time
	done  func(status int, err error) // r.finish, bound once
}

func newConnRouter(s *Server, ci connInfo) *connRouter {
	r := &connRouter{s: s, ci: ci}
	r.done = r.finish
	return r
}

// Route implements http1.Router: every request the policy allows goes to
// the application.
func (r *connRouter) Route(req *http1.RequestHead) (http1.Route, error) {
	m := r.s.metrics.WithTLS(r.ci.tls)
	start := time.Now()
	m.Request()
	if err := r.s.authorizeHTTP1(req, r.ci.peer, m); err != nil {
		return http1.Route{}, err
	}
	if err := r.s.rateLimit(r.ci.peer, m); err != nil {
		return http1.Route{}, err
	}
	r.m, r.start = m, start
	return http1.Route{Upstream: r.s.app.HTTP1, Done: r.done}, nil
}

// finish is the Done of the request in flight.
func (r *connRouter) finish(status int, err error) {
	r.m.Response(status, err != nil || status == 0 || status >= 500, time.Since(r.start))
}

type h2Router struct{ s *Server }

// RouteHTTP2 implements h2.Router.
func (r h2Router) RouteHTTP2(req *http.Request) (h2.Target, error) {
	s := r.s
	var ci connInfo
	if v, ok := s.conns.Load(req.RemoteAddr); ok {
		ci = v.(connInfo)
	}
	m := s.metrics.WithTLS(ci.tls)
	start := time.Now()
	m.Request()
	if err := s.authorizeHTTP2(req, ci.peer, m); err != nil {
		return h2.Target{}, err
	}
	if err := s.rateLimit(ci.peer, m); err != nil {
		return h2.Target{}, err
	}
	return h2.Target{Transport: s.app.HTTP2(), Addr: s.cfg.App, Done: func(res h2.Result) {
		m.Response(res.Status, res.Failure(), time.Since(start))
	}}, nil
}

// handle serves one connection.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	deadline := time.Now().Add(s.cfg.DetectTimeout)
	acc, err := s.cfg.Transport.Accept(c, deadline)
	if err != nil {
		s.log.Info("refusing connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	pc := acc.Conn
	ci := connInfo{peer: acc.Peer, tls: acc.TLS}
	switch acc.Proto {
	case transport.HTTP1:
		s.serveHTTP1(ctx, pc, ci)
		return
	case transport.HTTP2:
		s.serveH2(ctx, pc, ci)
		return
	case transport.TCP:
		s.forwardTCP(ctx, pc, ci)
		return
	}
	if s.cfg.Strict != nil && s.cfg.Strict() {
		// STRICT: only mutual TLS from a proxy. A plaintext client gets
		// no byte back: it could be anything, and only an mTLS peer has
		// an identity to authorize.
		s.log.Info("refusing plaintext connection on a strict port (tls_mode STRICT): the client must be a meshed proxy",
			"remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	proto := s.cfg.Protocol
	if proto == config.ProtocolDetect && s.cfg.Declared != nil {
		proto = s.cfg.Declared()
	}
	switch proto {
	case config.ProtocolHTTP1:
		s.serveHTTP1(ctx, pc, ci)
		return
	case config.ProtocolHTTP2, config.ProtocolGRPC:
		s.serveH2(ctx, pc, ci)
		return
	case config.ProtocolTCP:
		s.forwardTCP(ctx, pc, ci)
		return
	}
	res, err := detect.DetectUntil(detect.NewConn(pc), deadline)
	if err != nil {
		s.log.Debug("connection closed before detection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	switch res.Protocol {
	case detect.HTTP1:
		s.serveHTTP1(ctx, res.Conn, ci)
	case detect.HTTP2:
		s.serveH2(ctx, res.Conn, ci)
	default:
		s.forwardTCP(ctx, res.Conn, ci)
	}
}

// serveHTTP1 serves an HTTP/1.1 connection with a router that knows the
// connection's peer.
func (s *Server) serveHTTP1(ctx context.Context, c net.Conn, ci connInfo) {
	cc, m := s.countConn(c, ci)
	defer closeCounted(m, cc)
	c = cc
	srv := *s.http1
	srv.Router = newConnRouter(s, ci)
	srv.ServeConnAbort(ctx, listener.Aborted(ctx), c)
}

func (s *Server) serveH2(ctx context.Context, c net.Conn, ci connInfo) {
	cc, m := s.countConn(c, ci)
	defer closeCounted(m, cc)
	c = cc
	defer c.Close()
	key := c.RemoteAddr().String()
	s.conns.Store(key, ci)
	defer s.conns.Delete(key)
	s.h2.ServeConn(ctx, c)
}

// forwardTCP forwards an opaque connection to the application; if the
// application refuses, the connection is closed.
func (s *Server) forwardTCP(ctx context.Context, c net.Conn, ci connInfo) {
	defer c.Close()
	// Counted by tcp.Forward rather than conncount: c stays unwrapped so
	// the kernel can splice it.
	m := s.metrics.WithTLS(ci.tls)
	m.TCPOpen()
	if !s.authorizeTCP(c, ci.peer) {
		m.TCPClose(0, 0)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	up, err := s.app.Dial(dctx, transport.TCP)
	cancel()
	if err != nil {
		s.log.Info("closing opaque connection: application unreachable", "remote", c.RemoteAddr().String(), "err", err)
		m.TCPClose(0, 0)
		return
	}
	from, to, ferr := tcp.Forward(listener.Aborted(ctx), c, up)
	m.TCPClose(from, to)
	s.log.Debug("opaque connection closed", "bytes_in", from, "bytes_out", to, "err", ferr)
}
