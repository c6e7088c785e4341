// Package outbound is the proxy's client side for one destination: a
// listener the workload connects to (in local mode one local port per
// service it calls), whose connections are classified (declared protocol,
// else detection) and forwarded to the destination's endpoints: HTTP/1.1
// through the http1 server, HTTP/2 and gRPC through h2, both balanced per
// request; TLS from the application and opaque TCP forwarded per
// connection, balanced per connection.
//
// The destination's endpoints come from discovery and are applied as they
// change; an endpoint that leaves stops receiving requests at once and its
// pooled connections are closed.
//
// Only the proxy's assembly (internal/proxy/sidecar) imports outbound. A
// Server is safe for concurrent use; Serve is called once.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/detect"
	"weft.dev/weft/internal/proxy/discovery"
	"weft.dev/weft/internal/proxy/h2"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/listener"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/tcp"
	"weft.dev/weft/internal/proxy/transport"
	"weft.dev/weft/internal/proxy/upstream"
)

// Config of a Server.
type Config struct {
	// Authority names the destination as the workload does: "api",
	// "api.demo", "api.demo.svc.cluster.local:8080". Required.
	Authority string
	// Namespace of the workload, to resolve a bare name; default "default".
	Namespace string
	// Protocol forces how connections are handled; zero uses the
	// destination's declared protocol, else detection.
	Protocol config.Protocol
	// Discovery supplies the destination's snapshots; required.
	Discovery *discovery.Client
	// Transport dials meshed endpoints; required. There is no default:
	// a forgotten transport must not silently mean plaintext between
	// proxies (the sidecar passes mutual TLS).
	Transport transport.Transport
	// Metrics records traffic; required.
	Metrics *metrics.Registry
	// DetectTimeout bounds protocol detection; default 500ms.
	DetectTimeout time.Duration
	// DrainTimeout bounds the graceful drain; default 10s.
	DrainTimeout time.Duration
	// ConfigWait is how long a request waits for the destination's first
	// snapshot before failing; default 5s.
	ConfigWait time.Duration
	// Balance tunes the balancer; zero values take its defaults.
	Balance balance.Config
	// Passthrough, when set, is the original destination ("IP:port") of
	// captured connections: when the controller knows no such destination
	// (exists false), or gives no answer within ConfigWait, a connection
	// is forwarded unchanged to it as opaque TCP, counted under service
	// metrics.Passthrough, never refused.
	Passthrough string
	// Transient releases the destination's discovery watch when Serve
	// returns (see discovery.Client.Acquire); for the short-lived servers
	// of captured destinations.
	Transient bool
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Server forwards the workload's connections to one destination.
type Server struct {
	cfg   Config
	log   *slog.Logger
	bal   *balance.P2C
	http1 *http1.Server
	h2    *h2.Server
	watch *discovery.Watch[meshv1.DestinationSnapshot]

	state atomic.Pointer[state] // nil until the first snapshot is applied
	ready chan struct{}         // closed when state is first set

	// mirror sends route mirror copies; made once by mirrors().
	mirror     *mirrorer
	mirrorOnce sync.Once

	// mu guards applying snapshots (apply runs on one goroutine, but
	// Close may race with it).
	mu sync.Mutex

	// following guards the snapshot follower (see follow): stopFollow
	// cancels the pending call, stopped forbids new ones.
	following  sync.Mutex
	stopFollow func() bool
	stopped    bool
}

// state is one applied snapshot: immutable.
type state struct {
	snap      *meshv1.DestinationSnapshot
	service   string // canonical name, for metrics and errors
	metrics   *metrics.Service
	protocol  config.Protocol
	upstreams map[string]*upstream.Upstream // by address
	pol       *policy                       // resilience (resilience.go)
	// routes of the destination; nil when it has none (routes.go).
	routes *routes
}

// New returns a Server; it does no I/O.
func New(cfg Config) *Server {
	if cfg.Namespace == "" {
		cfg.Namespace = config.DefaultNamespace
	}
	if cfg.ConfigWait <= 0 {
		cfg.ConfigWait = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "outbound", "authority", cfg.Authority)
	s := &Server{cfg: cfg, log: log, ready: make(chan struct{})}
	cfg.Balance.OnEject = s.onEject(cfg.Balance.OnEject)
	s.bal = balance.New(cfg.Balance)
	s.http1 = &http1.Server{Router: s, Logger: log, IdleTimeoutFunc: s.idleTimeout}
	s.h2 = h2.NewServer(h2.Config{Router: h2Router{s}, Logger: log})
	return s
}

// Service returns the canonical name the authority resolves to.
func (s *Server) Service() string {
	if st := s.state.Load(); st != nil {
		return st.service
	}
	return string(config.ParseAuthority(s.cfg.Authority, s.cfg.Namespace))
}

// Status returns the destination's canonical name and the version and
// number of endpoints of the snapshot in force (0, 0 before the first).
func (s *Server) Status() (service string, version uint64, endpoints int) {
	st := s.state.Load()
	if st == nil {
		return s.Service(), 0, 0
	}
	return st.service, st.snap.GetVersion(), s.bal.Len()
}

// Serve forwards connections accepted on ln until ctx ends, then drains.
// It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Transport == nil {
		ln.Close()
		return errors.New("outbound: no proxy-to-proxy transport configured")
	}
	if s.cfg.Transient {
		var release func()
		s.watch, release = s.cfg.Discovery.Acquire(s.cfg.Authority)
		defer release()
	} else {
		s.watch = s.cfg.Discovery.Destination(s.cfg.Authority)
	}
	s.follow()
	err := listener.Serve(ctx, ln, listener.Config{
		DrainTimeout: s.cfg.DrainTimeout,
		Logger:       s.log,
		OnDrain:      func(ctx context.Context) { s.h2.Shutdown(ctx) },
	}, s.handle)
	s.unfollow()
	s.stopMirrors()
	if st := s.state.Load(); st != nil {
		for _, u := range st.upstreams {
			u.Remove()
		}
	}
	return err
}

// follow applies the destination's newest snapshot if it is not applied
// yet, and arranges to run again when a newer one arrives: every snapshot
// is applied as it arrives, in order, with no goroutine waiting between
// changes (a proxy holds a destination per service it calls;
// docs/performance.md, "Proxy memory in a 1,000-service mesh").
func (s *Server) follow() {
	s.following.Lock()
	defer s.following.Unlock()
	if s.stopped {
		return
	}
	// Registered before Load: a snapshot stored after Load runs follow again.
	s.stopFollow = s.watch.OnChange(s.follow)
	if snap := s.watch.Load(); snap != nil && (s.state.Load() == nil || s.state.Load().snap != snap) {
		s.apply(snap)
	}
}

// unfollow stops follow; once it returns no snapshot is applied any more.
func (s *Server) unfollow() {
	s.following.Lock()
	defer s.following.Unlock()
	s.stopped = true
	if s.stopFollow != nil {
		s.stopFollow()
	}
}

// apply installs snap: new endpoints get upstreams before the balancer can
// pick them; endpoints that left are never picked again, then closed.
func (s *Server) apply(snap *meshv1.DestinationSnapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Load()
	service := snap.GetService()
	if service == "" {
		service = string(config.ParseAuthority(s.cfg.Authority, s.cfg.Namespace))
	}
	next := &state{
		snap:      snap,
		service:   service,
		metrics:   s.cfg.Metrics.Service(metrics.Outbound, service),
		protocol:  discovery.Protocol(snap.GetProtocol()),
		upstreams: map[string]*upstream.Upstream{},
	}
	var oldPol *policy
	if old != nil {
		oldPol = old.pol
	}
	next.pol = s.compilePolicy(oldPol, snap, service)
	var backends []balance.Backend
	if snap.GetExists() {
		for _, b := range snap.GetBackends() {
			bb := balance.Backend{Service: b.GetService(), Weight: b.GetWeight()}
			for _, e := range b.GetEndpoints() {
				bb.Targets = append(bb.Targets, balance.Target{
					Address: e.GetAddress(), Weight: e.GetWeight(), Meshed: e.GetMeshed(), Identity: e.GetIdentity(),
				})
			}
			backends = append(backends, bb)
		}
	}
	next.routes, backends = s.buildRoutes(snap, backends)
	// Keep upstreams whose address, meshing and identity stay; make the
	// others.
	for _, be := range backends {
		for _, t := range be.Targets {
			if _, ok := next.upstreams[t.Address]; ok || t.Address == "" {
				continue
			}
			if old != nil {
				if u, ok := old.upstreams[t.Address]; ok && u.Meshed() == t.Meshed && u.Identity() == t.Identity {
					next.upstreams[t.Address] = u
					continue
				}
			}
			next.upstreams[t.Address] = upstream.New(t.Address, t.Identity, t.Meshed, s.cfg.Transport, s.bal.Endpoint(t.Address))
		}
	}
	// A destination reached over mutual TLS has its tls="true" series
	// from now on, at zero until its first request, as its plaintext ones
	// (rates over a first scrape then count the first requests); one never
	// reached over mutual TLS has none (metrics.Service.WithTLS).
	if transport.Encrypted(s.cfg.Transport) {
		for _, u := range next.upstreams {
			if u.Meshed() {
				next.metrics.WithTLS(true)
				break
			}
		}
	}
	next.pol.applyLimits(next.upstreams)
	var stale []*upstream.Upstream
	if old != nil {
		for addr, u := range old.upstreams {
			if next.upstreams[addr] != u {
				stale = append(stale, u)
			}
		}
	}
	// Order matters for requests racing with the update: first publish
	// old and new upstreams together, then switch the balancer, then drop
	// the upstreams it can no longer pick.
	if old != nil && len(stale) > 0 {
		union := *next
		union.upstreams = make(map[string]*upstream.Upstream, len(next.upstreams)+len(stale))
		for a, u := range old.upstreams {
			union.upstreams[a] = u
		}
		for a, u := range next.upstreams {
			union.upstreams[a] = u
		}
		s.state.Store(&union)
	} else {
		s.state.Store(next)
	}
	s.bal.Update(backends)
	s.state.Store(next)
	if old == nil {
		close(s.ready)
	}
	for _, u := range stale {
		u.Remove()
	}
	s.log.Info("destination updated", "service", service, "version", snap.GetVersion(),
		"exists", snap.GetExists(), "endpoints", s.bal.Len(), "removed", len(stale))
}

// current returns the applied state, waiting for the first snapshot up to
// ConfigWait; nil if none came.
func (s *Server) current(ctx context.Context) *state {
	if st := s.state.Load(); st != nil {
		return st
	}
	t := time.NewTimer(s.cfg.ConfigWait)
	defer t.Stop()
	select {
	case <-s.ready:
		return s.state.Load()
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// pick chooses an endpoint and acquires its upstream (the caller releases
// it), or fails with the proxy's answer. It counts an HTTP request when
// countRequest is set. It never blocks: connections wait for the first snapshot
// in handle, before their first request.
func (s *Server) pick(countRequest bool) (*state, *upstream.Upstream, error) {
	return s.pickWith(countRequest, s.bal)
}

// pickWith is pick among the endpoints pk picks from (a route rule's).
func (s *Server) pickWith(countRequest bool, pk picker) (*state, *upstream.Upstream, error) {
	st := s.state.Load()
	if st == nil {
		service := s.Service()
		if countRequest {
			s.cfg.Metrics.Service(metrics.Outbound, service).Request()
		}
		return nil, nil, proxyerr.New(http.StatusServiceUnavailable,
			"no configuration for %s from the controller yet (is weft-controller reachable?)", service)
	}
	if !st.snap.GetExists() {
		if countRequest {
			st.metrics.Request()
		}
		return st, nil, proxyerr.New(http.StatusServiceUnavailable, "unknown service %s", st.service)
	}
	// A pick that raced with an update may name an endpoint whose
	// upstream is gone or leaving: pick again.
	for range 3 {
		ep, err := pk.Pick()
		if errors.Is(err, balance.ErrNoEndpoints) {
			break
		}
		if u := s.state.Load().upstreams[ep.Address()]; u != nil && u.Acquire() {
			if countRequest {
				s.metricsOf(st, u).Request()
			}
			return st, u, nil
		}
	}
	if countRequest {
		st.metrics.Request()
	}
	return st, nil, proxyerr.New(http.StatusServiceUnavailable, "no endpoints for %s", st.service)
}

// metricsOf returns the metrics of traffic to u: tls="true" when u is
// reached over mutual TLS.
func (s *Server) metricsOf(st *state, u *upstream.Upstream) *metrics.Service {
	return st.metrics.WithTLS(u.Meshed() && transport.Encrypted(s.cfg.Transport))
}

// Route implements http1.Router.
func (s *Server) Route(req *http1.RequestHead) (http1.Route, error) {
	if rule := s.matchHTTP1(req); rule != nil {
		return s.routeRuleHTTP1(req, rule)
	}
	start := time.Now()
	st, u, err := s.pick(true)
	if err == nil {
		err = s.admit(st, u, nil, req.Path())
	}
	if err != nil {
		s.countRefused(st, err)
		return http1.Route{}, err
	}
	return s.routeHTTP1(st, u, nil, http1.Route{}, completion{m: s.metricsOf(st, u), start: start}), nil
}

// h2Router adapts Server to h2.Router.
type h2Router struct{ s *Server }

// RouteHTTP2 implements h2.Router.
func (r h2Router) RouteHTTP2(req *http.Request) (h2.Target, error) {
	s := r.s
	if rule := s.matchHTTP2(req); rule != nil {
		return s.routeRuleHTTP2(req, rule)
	}
	st, u, err := s.pick(true)
	if err == nil {
		err = s.admit(st, u, nil, req.URL.Path)
	}
	if err != nil {
		s.countRefused(st, err)
		return h2.Target{}, err
	}
	start := time.Now()
	m := s.metricsOf(st, u)
	return s.targetH2(st, u, nil, nil, func(res h2.Result) {
		m.Response(res.Status, res.Failure(), time.Since(start))
	}), nil
}

// countRefused records a request the proxy answered itself before
// choosing an endpoint (in next to no time: its latency is counted as 0).
func (s *Server) countRefused(st *state, err error) {
	m := s.cfg.Metrics.Service(metrics.Outbound, s.Service())
	if st != nil {
		m = st.metrics
	}
	m.Response(proxyerr.From(err).Status, true, 0)
}

// finish ends a balanced exchange and returns its duration. It feeds the
// latency average, unless the request failed before the endpoint answered
// (a refused connect says nothing of latency, and failure accrual counted
// it); timeouts do count, as they are slow.
func finish(ep *balance.Endpoint, start time.Time, err error) time.Duration {
	if pe, ok := errors.AsType[*proxyerr.Error](err); ok && pe.Status != http.StatusGatewayTimeout {
		return ep.Abandon(start)
	}
	return ep.Finish(start)
}

// handle serves one connection of the workload. Right after start it
// waits (up to ConfigWait) for the destination's first snapshot, which
// may declare the protocol; requests then fail fast if none came.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	proto := s.cfg.Protocol
	st := s.current(ctx)
	if s.cfg.Passthrough != "" && (st == nil || !st.snap.GetExists()) {
		s.passthrough(ctx, c, st == nil)
		return
	}
	if proto == config.ProtocolDetect && st != nil {
		proto = st.protocol
	}
	var pc net.Conn = c
	switch proto {
	case config.ProtocolHTTP1:
		s.serveHTTP1(ctx, st, c)
		return
	case config.ProtocolHTTP2, config.ProtocolGRPC:
		s.serveH2(ctx, st, c)
		return
	case config.ProtocolTCP:
	default:
		res, err := detect.Detect(ctx, c, s.cfg.DetectTimeout)
		if err != nil {
			s.log.Debug("connection closed before detection", "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		pc = res.Conn
		switch res.Protocol {
		case detect.HTTP1:
			s.serveHTTP1(ctx, st, pc)
			return
		case detect.HTTP2:
			s.serveH2(ctx, st, pc)
			return
		}
	}
	s.forwardTCP(ctx, pc)
}

func (s *Server) serveHTTP1(ctx context.Context, st *state, c net.Conn) {
	cc, m := s.countConn(st, c)
	defer closeCounted(m, cc)
	s.http1.ServeConnAbort(ctx, listener.Aborted(ctx), cc)
}

func (s *Server) serveH2(ctx context.Context, st *state, c net.Conn) {
	cc, m := s.countConn(st, c)
	defer closeCounted(m, cc)
	defer cc.Close()
	s.h2.ServeConn(ctx, cc)
}

// forwardTCP forwards an opaque connection (or TLS from the workload) to
// one endpoint, trying up to three when connects fail. With no endpoint
// the connection is closed: opaque protocols have no way to say why.
func (s *Server) forwardTCP(ctx context.Context, c net.Conn) {
	defer c.Close()
	start := time.Now()
	var up net.Conn
	var st *state
	var m *metrics.Service
	var ep *balance.Endpoint
	var epStart time.Time
	var err error
	for range 3 {
		var u *upstream.Upstream
		st, u, err = s.pick(false)
		if err != nil {
			break
		}
		ep = u.Endpoint()
		epStart = ep.Start()
		m = s.metricsOf(st, u)
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		up, err = u.Dial(dctx, transport.TCP)
		cancel()
		u.Release()
		if err == nil {
			// The connect time is the latency sample; the connection
			// stays pending until it closes.
			ep.Observe(epStart)
			break
		}
		ep.Abandon(epStart)
		err = fmt.Errorf("connect to %s: %w", u.Addr(), err)
	}
	if err != nil {
		s.log.Info("closing opaque connection", "remote", c.RemoteAddr().String(), "reason", err)
		if st != nil {
			if m == nil {
				m = st.metrics
			}
			m.TCPOpen()
			m.TCPClose(0, 0)
		}
		return
	}
	m.TCPOpen()
	from, to, ferr := tcp.Forward(listener.Aborted(ctx), c, up)
	ep.Abandon(epStart)
	m.TCPClose(from, to)
	s.log.Debug("opaque connection closed", "upstream", up.RemoteAddr().String(),
		"bytes_up", from, "bytes_down", to, "duration", time.Since(start), "err", ferr)
}

// passthrough forwards a captured connection the mesh does not know to
// its original destination, unchanged. The proxy's own connection is not
// captured again (iptables exempts the proxy's uid).
func (s *Server) passthrough(ctx context.Context, c net.Conn, noConfig bool) {
	defer c.Close()
	m := s.cfg.Metrics.Service(metrics.Outbound, metrics.Passthrough)
	m.TCPOpen()
	if noConfig {
		s.log.Warn("no answer from the controller for this destination; forwarding the connection unchanged", "destination", s.cfg.Passthrough)
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	up, err := d.DialContext(dctx, "tcp", s.cfg.Passthrough)
	cancel()
	if err != nil {
		s.log.Info("closing passthrough connection", "remote", c.RemoteAddr().String(), "destination", s.cfg.Passthrough, "err", err)
		m.TCPClose(0, 0)
		return
	}
	from, to, ferr := tcp.Forward(listener.Aborted(ctx), c, up)
	m.TCPClose(from, to)
	s.log.Debug("passthrough connection closed", "destination", s.cfg.Passthrough, "bytes_up", from, "bytes_down", to, "err", ferr)
}
