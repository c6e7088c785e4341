// Package sidecar assembles weft-proxy: the inbound servers in front of the
// workload, the outbound servers for the destinations it calls, the
// identity manager that keeps the workload's certificate, the discovery
// client of the controller (mutual TLS once certified), metrics and the
// admin server. The proxy is not ready, and refuses inbound connections,
// until it holds a certificate. New
// builds it from a typed Config without I/O; Run binds, serves, and on
// cancellation drains gracefully.
//
// Only cmd/weft-proxy (and tests) import sidecar. The methods of Sidecar
// are safe for concurrent use; Run is called once.
package sidecar

import (
	"context"

	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/discovery"
	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/proxy/inbound"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/outbound"
	"weft.dev/weft/internal/proxy/transport"
)

// Sidecar is one weft-proxy.
type Sidecar struct {
	cfg     Config
	log     *slog.Logger
	service string // canonical, "web.default"
	metrics *metrics.Registry
	admin   *admin.Server
	tr      transport.Transport
	id      *identity.Manager

	bound    chan struct{} // closed once every listener is bound
	draining atomic.Bool
	disc     atomic.Pointer[discovery.Client]

	// mu guards the bound addresses and the outbound servers below.
	mu            sync.Mutex
	adminAddr     string
	inboundAddrs  []string
	outboundAddrs []string
	outbounds     []*outbound.Server
}

// New checks cfg and returns a Sidecar; it does no I/O.
func New(cfg Config) (*Sidecar, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bundle, err := mtls.ParseBundlePEM(cfg.TrustAnchors)
	if err != nil {
		return nil, fmt.Errorf("--trust-anchors: %w; give the mesh's trust anchor PEM file", err)
	}
	log = log.With("proxy", cfg.ID)
	mgr, err := identity.New(identity.Config{
		ControllerAddr: cfg.Controller,
		TrustDomain:    cfg.TrustDomain,
		Bundle:         bundle,
		Token:          cfg.Token,
		TokenFile:      cfg.TokenFile,
		ProxyID:        cfg.ID,
		ExpectedID:     config.SpiffeID(cfg.TrustDomain, cfg.Namespace, cfg.ServiceAccount),
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	s := &Sidecar{
		cfg:     cfg,
		log:     log,
		service: string(config.ParseAuthority(cfg.Service, cfg.Namespace)),
		metrics: metrics.New(),
		tr:      cfg.Transport,
		id:      mgr,
		bound:   make(chan struct{}),
	}
	if s.tr == nil {
		s.tr = transport.NewMTLS(mgr, mgr.Bundle())
	}
	s.metrics.RegisterIdentity(mgr)
	s.admin = admin.New(admin.Config{
		Metrics: s.metrics.Handler(),
		Ready:   s.Ready,
		Status:  s.Status,
		Logger:  s.log,
	})
	return s, nil
}

// Bound is closed once every listener is bound; the addresses are known
// from then on.
func (s *Sidecar) Bound() <-chan struct{} { return s.bound }

// AdminAddr returns the admin server's bound address.
func (s *Sidecar) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}

// InboundAddrs returns the inbound listeners' bound addresses, in the
// order of Config.Inbound.
func (s *Sidecar) InboundAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.inboundAddrs...)
}

// OutboundAddrs returns the outbound listeners' bound addresses, in the
// order of Config.Outbound.
func (s *Sidecar) OutboundAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.outboundAddrs...)
}

// Ready reports whether the proxy serves: its listeners are bound, it has
// its inbound configuration, and it is not draining; else why not.
func (s *Sidecar) Ready() (bool, string) {
	select {
	case <-s.bound:
	default:
		return false, "listeners not bound yet"
	}
	if s.draining.Load() {
		return false, "draining"
	}
	select {
	case <-s.id.Ready():
	default:
		reason := "no certificate yet from the controller " + s.cfg.Controller
		if n := s.id.Failures(); n > 0 {
			reason += fmt.Sprintf(" (%d failed requests; see the proxy's log)", n)
		}
		return false, reason
	}
	d := s.disc.Load()
	if d == nil {
		return false, "not connected to the controller yet"
	}
	in := d.Inbound().Load()
	if in == nil {
		reason := "no inbound configuration from the controller " + s.cfg.Controller + " yet"
		if err := d.Inbound().Err(); err != nil {
			reason += ": " + err.Error()
		}
		return false, reason
	}
	// A proxy with no inbound port (an ingress, a client-only workload)
	// needs the answer, not a workload the controller knows.
	if !in.GetKnown() && (len(s.cfg.Inbound) > 0 || s.cfg.InboundCapture != "") {
		return false, fmt.Sprintf("the controller does not know workload %s (proxy %s); check --service and --namespace", s.service, s.cfg.ID)
	}
	return true, ""
}

// Status reports the proxy's state for /status.
func (s *Sidecar) Status() admin.Status {
	ready, _ := s.Ready()
	st := admin.Status{ID: s.cfg.ID, Service: s.service, Ready: ready, Destinations: map[string]admin.DestinationStatus{},
		Identity: s.id.ID()}
	if na := s.id.NotAfter(); !na.IsZero() {
		st.CertNotAfter = &na
	}
	d := s.disc.Load()
	if d == nil {
		return st
	}
	st.InboundVersion = d.Inbound().Load().GetVersion()
	s.mu.Lock()
	outs := s.outbounds
	s.mu.Unlock()
	for _, o := range outs {
		name, version, n := o.Status()
		st.Destinations[name] = admin.DestinationStatus{Version: version, Endpoints: n}
	}
	return st
}

// Run binds every listener, connects to the controller and serves until
// ctx ends; then it drains: listeners stop accepting, /ready turns 503,
// requests in flight finish (bounded by the drain timeout), and everything
// closes. It returns nil after a clean drain.
func (s *Sidecar) Run(ctx context.Context) error {
	adminLn, inLns, outLns, err := s.bind()
	if err != nil {
		return err
	}
	capLns, err := s.bindCapture()
	if err != nil {
		closeAll(adminLn, inLns, outLns)
		return err
	}
	// Mutual TLS: the controller is verified against the trust anchors;
	// discovery starts once the proxy holds its certificate, which every
	// connection then presents.
	conn, err := grpc.NewClient(s.cfg.Controller,
		append(discovery.DialOptions(), grpc.WithTransportCredentials(s.id.ControlCredentials()))...)
	if err != nil {
		closeAll(adminLn, inLns, outLns)
		for _, c := range capLns {
			c.ln.Close()
		}
		return fmt.Errorf("controller %s: %w", s.cfg.Controller, err)
	}
	defer conn.Close()
	disc := discovery.New(discovery.Config{
		Conn:   conn,
		Proxy:  &meshv1.ProxyInfo{Id: s.cfg.ID, Workload: s.cfg.Service, Namespace: s.cfg.Namespace},
		Logger: s.log,
	})
	s.disc.Store(disc)
	close(s.bound)

	// Discovery and admin outlive the drain: /ready says "draining", and
	// outbound requests still resolve endpoints.
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	var bg, servers sync.WaitGroup
	errc := make(chan error, 3+len(inLns)+len(outLns)+len(capLns))
	bg.Add(3)
	go func() {
		defer bg.Done()
		if err := s.id.Run(bgCtx); err != nil {
			errc <- fmt.Errorf("identity: %w", err)
		}
	}()
	go func() {
		defer bg.Done()
		select {
		case <-s.id.Ready():
			disc.Run(bgCtx)
		case <-bgCtx.Done():
		}
	}()
	go func() {
		defer bg.Done()
		if err := s.admin.Serve(bgCtx, adminLn); err != nil {
			errc <- fmt.Errorf("admin server: %w", err)
		}
	}()
	for _, c := range capLns {
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := s.serveCapture(ctx, disc, c); err != nil {
				errc <- err
			}
		}()
	}
	for i, ln := range inLns {
		spec := s.cfg.Inbound[i]
		srv := inbound.New(inbound.Config{
			App: spec.App, Protocol: spec.Protocol, Declared: declared(disc, spec.App), Strict: strict(disc, spec.App),
			Service: s.service, Transport: s.tr, Metrics: s.metrics,
			DetectTimeout: s.cfg.DetectTimeout, DrainTimeout: s.cfg.DrainTimeout, Logger: s.log,
			Authz:     s.authzPolicy(disc, spec.App),
			RateLimit: rateLimit(disc, spec.App),
		})
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := srv.Serve(ctx, ln); err != nil {
				errc <- fmt.Errorf("inbound %s: %w", spec, err)
			}
		}()
	}
	for i, ln := range outLns {
		spec := s.cfg.Outbound[i]
		srv := outbound.New(outbound.Config{
			Authority: spec.Authority, Namespace: s.cfg.Namespace, Protocol: spec.Protocol, Discovery: disc,
			Transport: s.tr, Metrics: s.metrics, DetectTimeout: s.cfg.DetectTimeout, DrainTimeout: s.cfg.DrainTimeout,
			ConfigWait: s.cfg.ConfigWait, Logger: s.log,
		})
		s.mu.Lock()
		s.outbounds = append(s.outbounds, srv)
		s.mu.Unlock()
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := srv.Serve(ctx, ln); err != nil {
				errc <- fmt.Errorf("outbound %s: %w", spec, err)
			}
		}()
	}
	s.log.Info("weft-proxy started", "service", s.service, "version", s.cfg.Version, "admin", adminLn.Addr().String(),
		"inbound", len(inLns), "outbound", len(outLns), "inbound_capture", s.cfg.InboundCapture,
		"outbound_capture", s.cfg.OutboundCapture, "controller", s.cfg.Controller)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		// A listener failed for good: drain the rest and report it.
		s.log.Error("stopping", "err", runErr)
	}
	s.draining.Store(true)
	s.log.Info("draining", "timeout", s.cfg.DrainTimeout)
	if runErr != nil {
		// Servers watch ctx; make them drain as well.
		closeAll(nil, inLns, outLns)
		for _, c := range capLns {
			c.ln.Close()
		}
	}
	servers.Wait()
	stopBg()
	bg.Wait()
	close(errc)
	if runErr == nil {
		for err := range errc {
			runErr = err
			break
		}
	}
	s.log.Info("stopped")
	return runErr
}

// declared returns the protocol the controller declares for the
// application port of app, from the newest inbound snapshot.
func declared(disc *discovery.Client, app string) func() config.Protocol {
	_, portStr, _ := net.SplitHostPort(app)
	port, _ := strconv.ParseUint(portStr, 10, 32)
	return func() config.Protocol {
		for _, p := range disc.Inbound().Load().GetPorts() {
			if uint64(p.GetPort()) == port {
				return discovery.Protocol(p.GetProtocol())
			}
		}
		return config.ProtocolDetect
	}
}

// strict reports whether the controller sets tls_mode STRICT on the
// application port of app, from the newest inbound snapshot.
func strict(disc *discovery.Client, app string) func() bool {
	_, portStr, _ := net.SplitHostPort(app)
	port, _ := strconv.ParseUint(portStr, 10, 32)
	return func() bool {
		for _, p := range disc.Inbound().Load().GetPorts() {
			if uint64(p.GetPort()) == port {
				return p.GetPolicy().GetTlsMode() == meshv1.InboundPolicy_STRICT
			}
		}
		return false
	}
}

// rateLimit returns the controller's rate limit of the application port
// of app, from the newest inbound snapshot; nil when it sets none.
func rateLimit(disc *discovery.Client, app string) func() *meshv1.RateLimit {
	_, portStr, _ := net.SplitHostPort(app)
	port, _ := strconv.ParseUint(portStr, 10, 32)
	return func() *meshv1.RateLimit {
		for _, p := range disc.Inbound().Load().GetPorts() {
			if uint64(p.GetPort()) == port {
				return p.GetRateLimit()
			}
		}
		return nil
	}
}

// bind opens every listener, or none.
func (s *Sidecar) bind() (adminLn net.Listener, in, out []net.Listener, err error) {
	var lc net.ListenConfig
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: listen on %s: %w (is another process using it? choose another address)", what, addr, err)
		}
		return ln, nil
	}
	adminLn, err = listen("--admin", s.cfg.Admin)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, spec := range s.cfg.Inbound {
		ln, err := listen("--inbound "+spec.String(), spec.Listen)
		if err != nil {
			closeAll(adminLn, in, out)
			return nil, nil, nil, err
		}
		in = append(in, ln)
	}
	for _, spec := range s.cfg.Outbound {
		ln, err := listen("--outbound "+spec.String(), spec.Listen)
		if err != nil {
			closeAll(adminLn, in, out)
			return nil, nil, nil, err
		}
		out = append(out, ln)
	}
	s.mu.Lock()
	s.adminAddr = adminLn.Addr().String()
	for _, ln := range in {
		s.inboundAddrs = append(s.inboundAddrs, ln.Addr().String())
	}
	for _, ln := range out {
		s.outboundAddrs = append(s.outboundAddrs, ln.Addr().String())
	}
	s.mu.Unlock()
	return adminLn, in, out, nil
}

func closeAll(adminLn net.Listener, in, out []net.Listener) {
	if adminLn != nil {
		adminLn.Close()
	}
	for _, ln := range append(in, out...) {
		ln.Close()
	}
}
