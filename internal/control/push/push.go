// Package push serves the proxy API of api/meshv1 (Mesh.Stream, and the
// single watches Destinations.Watch and Inbound.Watch) from a config.Source: every stream gets a complete
// snapshot at once and a new one whenever the configuration it depends on
// changes, debounced and compared by content so that proxies only hear
// about real changes. Streams asking for the same thing share one
// computed and encoded message per configuration version. It also records what each proxy was last sent, for
// `weft check` and the status API.
//
// The controller imports push. A Server is safe for concurrent use; its
// streams end when their clients cancel or when Shutdown is called.
package push

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/split"
)

// Config tunes a Server.
type Config struct {
	// Debounce is how long the server waits after a change before its
	// streams read the newest snapshot, so a burst of changes yields one
	// message. One timer serves all streams.
	// Zero means 50ms.
	Debounce time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
	// DefaultInboundPolicy is the mesh's default inbound policy where no
	// InboundPolicyDefault or Server decides; zero is all-unauthenticated.
	DefaultInboundPolicy meshv1.InboundPolicy_Default
	// AuthorizeInbound, when set, decides whether the caller of a Mesh
	// stream (its context carries the peer) may receive the inbound
	// configuration of the proxy its hello describes; a refused
	// subscription gets the error (a gRPC status) and is checked again on
	// every configuration change. Inbound.Watch is authorized by the
	// caller's interceptor instead.
	AuthorizeInbound func(ctx context.Context, proxy *meshv1.ProxyInfo) error
}

// ProxySent is what one connected proxy was last sent.
type ProxySent struct {
	// Streams is the number of open streams of the proxy: watch streams
	// and Mesh streams (whose subscriptions are not counted).
	Streams int
	// Inbound is the version of the last inbound snapshot sent; 0 if none.
	Inbound uint64
	// Destinations maps a watched service ("api.default") to the version
	// of the last snapshot sent for it.
	Destinations map[string]uint64
}

// Server implements meshv1.DestinationsServer; Inbound returns its
// meshv1.InboundServer.
type Server struct {
	meshv1.UnimplementedDestinationsServer

	src config.Source
	// defaultPolicy is Config.DefaultInboundPolicy.
	defaultPolicy meshv1.InboundPolicy_Default
	debounce      time.Duration
	// authorizeInbound is Config.AuthorizeInbound.
	authorizeInbound func(context.Context, *meshv1.ProxyInfo) error
	log              *slog.Logger
	done             chan struct{}
	stopOnce         sync.Once

	// evaluated, when set (by tests), is called after a stream compared
	// the snapshot of the given version with what it sent last.
	evaluated func(version uint64)

	feed  feed
	cache cache

	// mu guards proxies, the records of the single watches (a Mesh
	// stream keeps its own, see meshStream.addSent).
	mu      sync.Mutex
	proxies map[string]*proxyState
}

type proxyState struct {
	streams int
	inbound uint64
	// dests counts open streams and holds the last version sent per
	// watched service.
	dests map[string]*destState
}

type destState struct {
	streams int
	version uint64
}

// New returns a server reading configuration from src. It does no I/O.
func New(src config.Source, cfg Config) *Server {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		src:              src,
		debounce:         cfg.Debounce,
		defaultPolicy:    cfg.DefaultInboundPolicy,
		authorizeInbound: cfg.AuthorizeInbound,
		log:              log.With("component", "push"),
		done:             make(chan struct{}),
		proxies:          map[string]*proxyState{},
	}
	s.feed = feed{src: src, debounce: cfg.Debounce, done: s.done, pumpDone: make(chan struct{}, 1)}
	return s
}

// Register adds the three services to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	meshv1.RegisterDestinationsServer(g, s)
	meshv1.RegisterInboundServer(g, s.Inbound())
	meshv1.RegisterMeshServer(g, s.Mesh())
}

// Shutdown ends all open watch streams (clients see a clean end of stream
// and reconnect), sends every Mesh stream a goodbye (its proxy ends the
// stream and reconnects) and refuses new streams; call it before
// grpc.Server.GracefulStop, which would otherwise wait for streams that
// never end by themselves.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() {
		close(s.done)
		s.feed.shutdown()
	})
}

// Sent returns, per connected proxy ID, what the proxy was last sent over
// its open streams. A proxy without open streams is absent. The result is
// a copy.
func (s *Server) Sent() map[string]ProxySent {
	s.mu.Lock()
	out := make(map[string]ProxySent, len(s.proxies))
	for id, p := range s.proxies {
		ps := ProxySent{Streams: p.streams, Inbound: p.inbound, Destinations: map[string]uint64{}}
		for svc, d := range p.dests {
			if d.version > 0 {
				ps.Destinations[svc] = d.version
			}
		}
		out[id] = ps
	}
	s.mu.Unlock()
	// Mesh streams keep their own record (see meshStream.addSent).
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	for m := range s.feed.streams {
		m.addSent(out)
	}
	return out
}

// track registers an open watch stream of proxy id (watching service
// svc, or the inbound configuration when svc is "") and returns a
// function to record a sent version and a function to call when the
// stream ends.
func (s *Server) track(id, svc string) (sent func(uint64), end func()) {
	detach := s.attach(id)
	sent, unwatch := s.watching(id, svc)
	return sent, func() { unwatch(); detach() }
}

// attach registers an open stream of proxy id and returns the function
// to call when it ends.
func (s *Server) attach(id string) (detach func()) {
	if id == "" {
		return func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[id]
	if p == nil {
		p = &proxyState{dests: map[string]*destState{}}
		s.proxies[id] = p
	}
	p.streams++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		p.streams--
		// Forget disconnected proxies, so that churning proxy IDs (pod
		// names) do not accumulate.
		if p.streams == 0 && s.proxies[id] == p {
			delete(s.proxies, id)
		}
	}
}

// watching registers a watch of service svc (the inbound configuration
// when "") by proxy id, which has a stream attached, and returns a
// function to record a sent version and one to call when the watch ends.
func (s *Server) watching(id, svc string) (sent func(uint64), end func()) {
	if id == "" {
		return func(uint64) {}, func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[id]
	if p == nil { // not attached: nothing to record
		return func(uint64) {}, func() {}
	}
	var d *destState
	if svc != "" {
		d = p.dests[svc]
		if d == nil {
			d = &destState{}
			p.dests[svc] = d
		}
		d.streams++
	}
	sent = func(v uint64) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if d != nil {
			d.version = v
		} else {
			p.inbound = v
		}
	}
	end = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if d != nil {
			d.streams--
			if d.streams == 0 {
				delete(p.dests, svc)
			}
		}
	}
	return sent, end
}

// watch sends the entry get returns for the current snapshot, then the
// one of every newer round of the feed whose content differs from the
// last sent, until ctx ends or the server shuts down. Rounds are shared
// by all streams (one debounce for all), and so are entries: streams that
// ask for the same thing share its computation and its encoding.
func watch(ctx context.Context, s *Server, get func(*generation) *entry, send func(*entry, uint64) error) error {
	r := s.feed.join()
	defer s.feed.leave()
	// The first message reflects the source as it is now, even while the
	// feed is debouncing a change; later rounds not newer are skipped.
	snap := s.src.Snapshot()
	var last *entry
	for {
		e := get(s.cache.gen(snap))
		if last == nil || !e.same(last) {
			if err := send(e, snap.Version); err != nil {
				return err
			}
			last = e
		}
		if s.evaluated != nil {
			s.evaluated(snap.Version)
		}
		for newer := false; !newer; {
			select {
			case <-ctx.Done():
				return nil
			case <-s.done:
				return nil
			case <-r.next:
			}
			r = r.newer
			if newer = r.snap.Version > snap.Version; newer {
				snap = r.snap
			}
		}
	}
}

// Watch implements meshv1.DestinationsServer.
func (s *Server) Watch(req *meshv1.DestinationRequest, stream grpc.ServerStreamingServer[meshv1.DestinationSnapshot]) error {
	if req.GetAuthority() == "" {
		return status.Error(codes.InvalidArgument, "authority is required: name the destination service, e.g. \"api\" or \"api.demo:8080\"")
	}
	ns := req.GetProxy().GetNamespace()
	if ns == "" {
		ns = config.DefaultNamespace
	}
	authority := req.GetAuthority()
	key := config.ParseAuthority(authority, ns)
	get := func(g *generation) *entry { return g.destination(key, authority) }
	tracked := string(key)
	if addr, err := netip.ParseAddrPort(authority); err == nil {
		// A captured connection's original destination.
		get = func(g *generation) *entry { return g.destinationByAddress(addr, authority) }
		tracked = addr.String()
	} else if key.Name() == "" {
		return status.Errorf(codes.InvalidArgument, "authority %q names no service", authority)
	}
	sent, end := s.track(req.GetProxy().GetId(), tracked)
	defer end()
	log := s.log.With("proxy", req.GetProxy().GetId(), "service", tracked)
	log.Debug("destination watch started")
	err := watch(stream.Context(), s, get,
		func(e *entry, version uint64) error {
			// Recorded before Send so that a client that has received
			// the message never sees an older version in Sent; a failed
			// Send ends the stream and its record anyway.
			sent(version)
			return e.send(stream)
		})
	log.Debug("destination watch ended", "err", err)
	return err
}

// Destination computes the snapshot of service key in snap; authority is
// echoed. Backends come from the TrafficSplit of the service, if any, else
// the service itself is the only backend. Only ready endpoints are listed.
// When authority names a port the service declares ("api:8080"), the
// endpoints are those of that service port, as for a cluster IP.
func Destination(snap *config.Snapshot, key config.ServiceKey, authority string) *meshv1.DestinationSnapshot {
	var port uint32
	if svc := snap.Services[key]; svc != nil {
		if _, p, err := net.SplitHostPort(authority); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				if _, ok := svc.PortByNumber(uint32(n)); ok {
					port = uint32(n)
				}
			}
		}
	}
	return destination(snap, key, port, authority)
}

// destination is Destination; a port other than 0 is the service port
// asked for (a captured connection to a cluster IP): the endpoints of each
// backend are those of its port with that number, when the backend
// declares ports.
func destination(snap *config.Snapshot, key config.ServiceKey, port uint32, authority string) *meshv1.DestinationSnapshot {
	m := &meshv1.DestinationSnapshot{Authority: authority, Version: snap.Version, Service: string(key)}
	svc := snap.Services[key]
	if svc == nil {
		return m
	}
	m.Exists = true
	m.Protocol = Protocol(svc.Protocol)
	m.Routes = Routes(snap, key)
	applyPolicies(snap, key, m)
	ts := findSplit(snap, key)
	if ts == nil {
		m.Backends = []*meshv1.Backend{backend(snap, key, port, 1)}
		return m
	}
	for _, b := range ts.Backends {
		m.Backends = append(m.Backends, backend(snap, config.Key(b.Service, key.Namespace()), port, b.Weight))
	}
	return m
}

// DestinationByAddress computes the snapshot of a captured connection's
// original destination addr; authority is echoed.
//
//   - A cluster IP and port of a service: that service, as Destination
//     gives it, with the endpoints of that service port (the pods' target
//     port).
//   - The IP of an endpoint of a service (a pod): that one endpoint, at
//     the port asked for, meshed or not, ready or not (the client chose
//     it); no routes or split apply. The service names it in metrics.
//   - Anything else: exists is false, and the proxy forwards the
//     connection unchanged.
//
// When several services match, the first by name.namespace wins.
func DestinationByAddress(snap *config.Snapshot, addr netip.AddrPort, authority string) *meshv1.DestinationSnapshot {
	ip, port := addr.Addr().Unmap(), uint32(addr.Port())
	keys := slices.Sorted(maps.Keys(snap.Services))
	for _, key := range keys {
		svc := snap.Services[key]
		for _, cip := range svc.ClusterIPs {
			a, err := netip.ParseAddr(cip)
			if err != nil || a.Unmap() != ip {
				continue
			}
			if _, ok := svc.PortByNumber(port); !ok {
				// The service's IP on a port it does not serve.
				return &meshv1.DestinationSnapshot{Authority: authority, Version: snap.Version}
			}
			return destination(snap, key, port, authority)
		}
	}
	want := addr.String()
	var found *config.Endpoint
	var foundKey config.ServiceKey
	for _, key := range keys {
		for i := range snap.Services[key].Endpoints {
			ep := &snap.Services[key].Endpoints[i]
			epAddr, err := netip.ParseAddrPort(ep.Address)
			if err != nil || epAddr.Addr().Unmap() != ip {
				continue
			}
			// The exact address wins over the same pod on another port.
			if found == nil || (ep.Address == want && found.Address != want) {
				found, foundKey = ep, key
			}
		}
	}
	m := &meshv1.DestinationSnapshot{Authority: authority, Version: snap.Version}
	if found == nil {
		return m
	}
	m.Exists = true
	m.Service = string(foundKey)
	if found.Address == want {
		m.Protocol = Protocol(snap.Services[foundKey].Protocol)
	}
	m.Backends = []*meshv1.Backend{{Service: string(foundKey), Weight: 1, Endpoints: []*meshv1.Endpoint{{
		Address:  want,
		Identity: found.Identity,
		Meshed:   found.Meshed,
		Weight:   1,
		Labels:   maps.Clone(found.Labels),
	}}}}
	return m
}

// findSplit returns the TrafficSplit whose root is key, or nil. When
// several exist (only possible with sources that do not check), the last
// applied wins.
func findSplit(snap *config.Snapshot, key config.ServiceKey) *split.TrafficSplit {
	var found *split.TrafficSplit
	for i := range snap.Resources {
		r := &snap.Resources[i]
		if ts, ok := r.Spec.(*split.TrafficSplit); ok && config.Key(ts.Service, r.Namespace) == key {
			found = ts
		}
	}
	return found
}

func backend(snap *config.Snapshot, key config.ServiceKey, port, weight uint32) *meshv1.Backend {
	b := &meshv1.Backend{Service: string(key), Weight: weight}
	svc := snap.Services[key]
	if svc == nil {
		return b
	}
	// Only the endpoints of the service port asked for, when known.
	portName, filter := "", false
	if port != 0 {
		if sp, ok := svc.PortByNumber(port); ok {
			portName, filter = sp.Name, true
		}
	}
	// By address, the first of several with the same address only.
	eps := make([]*config.Endpoint, 0, len(svc.Endpoints))
	for i := range svc.Endpoints {
		if ep := &svc.Endpoints[i]; ep.Ready && (!filter || ep.PortName == portName) {
			eps = append(eps, ep)
		}
	}
	slices.SortStableFunc(eps, func(a, b *config.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	if len(eps) > 0 {
		b.Endpoints = make([]*meshv1.Endpoint, 0, len(eps))
	}
	for i, ep := range eps {
		if i > 0 && eps[i-1].Address == ep.Address {
			continue
		}
		b.Endpoints = append(b.Endpoints, &meshv1.Endpoint{
			Address:  ep.Address,
			Identity: ep.Identity,
			Meshed:   ep.Meshed,
			Weight:   ep.Weight,
			Labels:   maps.Clone(ep.Labels),
		})
	}
	return b
}

// Protocol maps a configured protocol to the API's enum.
func Protocol(p config.Protocol) meshv1.Protocol {
	switch p {
	case config.ProtocolHTTP1:
		return meshv1.Protocol_HTTP1
	case config.ProtocolHTTP2:
		return meshv1.Protocol_HTTP2
	case config.ProtocolGRPC:
		return meshv1.Protocol_GRPC
	case config.ProtocolTCP:
		return meshv1.Protocol_TCP
	}
	return meshv1.Protocol_PROTOCOL_UNSPECIFIED
}

// inboundServer adapts Server to meshv1.InboundServer, whose method has the
// same name as Destinations' Watch.
type inboundServer struct {
	meshv1.UnimplementedInboundServer
	*Server
}

// Inbound returns the server's meshv1.InboundServer.
func (s *Server) Inbound() meshv1.InboundServer { return inboundServer{Server: s} }

// Watch implements meshv1.InboundServer.
func (s inboundServer) Watch(req *meshv1.InboundRequest, stream grpc.ServerStreamingServer[meshv1.InboundSnapshot]) error {
	info := req.GetProxy()
	if info.GetId() == "" && info.GetWorkload() == "" {
		return status.Error(codes.InvalidArgument, "proxy id or workload is required")
	}
	sent, end := s.track(info.GetId(), "")
	defer end()
	return watch(stream.Context(), s.Server,
		func(g *generation) *entry { return g.inbound(info, s.defaultPolicy) },
		func(e *entry, version uint64) error {
			// Recorded before Send so that a client that has received
			// the message never sees an older version in Sent; a failed
			// Send ends the stream and its record anyway.
			sent(version)
			return e.send(stream)
		})
}

// Inbound computes the inbound snapshot of the proxy described by info:
// the proxy with its ID, else the first (by ID) proxy of its workload and
// namespace; known is false when there is none. The mesh's default
// inbound policy is all-unauthenticated.
func Inbound(snap *config.Snapshot, info *meshv1.ProxyInfo) *meshv1.InboundSnapshot {
	return InboundWithDefault(snap, info, meshv1.InboundPolicy_ALL_UNAUTHENTICATED)
}

// InboundWithDefault is Inbound with the mesh's default inbound policy
// meshDefault (see PortPolicy).
func InboundWithDefault(snap *config.Snapshot, info *meshv1.ProxyInfo, meshDefault meshv1.InboundPolicy_Default) *meshv1.InboundSnapshot {
	p := snap.Proxies[info.GetId()]
	if p == nil && info.GetWorkload() != "" {
		ns := info.GetNamespace()
		if ns == "" {
			ns = config.DefaultNamespace
		}
		for _, id := range slices.Sorted(maps.Keys(snap.Proxies)) {
			if q := snap.Proxies[id]; q.Service == info.GetWorkload() && q.Namespace == ns {
				p = q
				break
			}
		}
	}
	return inboundOf(snap, p, meshDefault)
}

// inboundOf computes the inbound snapshot of proxy p, nil for an unknown
// proxy.
func inboundOf(snap *config.Snapshot, p *config.Proxy, meshDefault meshv1.InboundPolicy_Default) *meshv1.InboundSnapshot {
	m := &meshv1.InboundSnapshot{Version: snap.Version}
	if p == nil {
		return m
	}
	m.Known = true
	m.Service = string(config.Key(p.Service, p.Namespace))
	for _, port := range p.Ports {
		m.Ports = append(m.Ports, &meshv1.InboundPort{Port: port.Port, Protocol: Protocol(port.Protocol)})
	}
	applyRateLimits(snap, config.Key(p.Service, p.Namespace), m)
	applyAuthz(snap, p, m, meshDefault)
	return m
}
