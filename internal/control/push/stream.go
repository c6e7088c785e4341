package push

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// This file serves Mesh.Stream: every watch of one proxy on one stream.
//
// A stream costs one goroutine for its life, the handler grpc-go runs
// it on, which waits in Recv for subscriptions. Nothing waits per
// subscription: when the feed publishes a round, or a subscription
// changes, the stream is kicked, and a short-lived pump goroutine walks
// its subscriptions, sends what changed (the same shared, once-encoded
// entries as the single watches) and exits. At most one pump runs per
// stream, so sends never overlap.

// meshServer adapts Server to meshv1.MeshServer.
type meshServer struct {
	meshv1.UnimplementedMeshServer
	*Server
}

// Mesh returns the server's meshv1.MeshServer.
func (s *Server) Mesh() meshv1.MeshServer { return meshServer{Server: s} }

// subKey names a subscription: a destination authority, or the inbound
// configuration.
type subKey struct {
	authority string
	inbound   bool
}

// subscription is one watch on a stream. Only the pump reads and writes
// lastSum, hasLast and refused.
type subscription struct {
	key subKey
	// svc is the service a destination subscription names, or, when
	// byAddr, addr is the captured connection's original destination.
	svc    config.ServiceKey
	addr   netip.AddrPort
	byAddr bool
	// tracked is the name Sent reports a destination under.
	tracked string
	// lastSum is the digest of the entry sent last (see entry.sum), when
	// hasLast: only the digest, so that a subscription does not keep an
	// old generation's message alive.
	lastSum [sha256.Size]byte
	hasLast bool
	// refused is the refusal sent last for an inbound subscription; ""
	// while allowed.
	refused string
	// sent is the version of the last message sent, for Sent.
	sent atomic.Uint64
}

// entry returns the destination's entry of generation g.
func (sub *subscription) entry(g *generation) *entry {
	if sub.byAddr {
		return g.destinationByAddress(sub.addr, sub.key.authority)
	}
	return g.destination(sub.svc, sub.key.authority)
}

// meshStream is one open Mesh.Stream.
type meshStream struct {
	s      *Server
	ctx    context.Context
	stream grpc.ServerStream
	info   *meshv1.ProxyInfo

	// mu guards everything below.
	mu sync.Mutex
	// subs are the subscriptions, each key once: a slice, which costs
	// less than a map for the few a proxy holds.
	subs []*subscription
	// errs are refusals of subscriptions to send.
	errs []*meshv1.SubscriptionError
	// fresh: a subscription was added since the last walk, which then
	// reads the source's newest snapshot rather than the feed's round.
	fresh bool
	// dirty: a walk is due; running: a pump runs; closed: the stream
	// ended (or the server shuts down and a goodbye is due).
	dirty, running, closed, goodbye bool
	// snap is the newest snapshot walked: walks never go back.
	snap *config.Snapshot
}

// Stream implements meshv1.MeshServer.
func (s meshServer) Stream(stream meshv1.Mesh_StreamServer) error {
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	info := first.GetHello()
	if info == nil {
		return status.Error(codes.InvalidArgument, "the first message of Mesh.Stream must be hello with the proxy's ProxyInfo")
	}
	m := &meshStream{s: s.Server, ctx: stream.Context(), stream: stream, info: info}
	s.feed.join()
	defer s.feed.leave()
	s.feed.add(m)
	defer s.feed.remove(m)
	defer m.close()
	s.log.Debug("mesh stream started", "proxy", info.GetId())
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || stream.Context().Err() != nil {
				err = nil
			}
			s.log.Debug("mesh stream ended", "proxy", info.GetId(), "err", err)
			return err
		}
		switch k := msg.GetKind().(type) {
		case *meshv1.ProxyMessage_Subscribe:
			m.subscribe(k.Subscribe)
		case *meshv1.ProxyMessage_Unsubscribe:
			m.unsubscribe(k.Unsubscribe)
		case *meshv1.ProxyMessage_Hello:
			return status.Error(codes.InvalidArgument, "hello: sent twice; the proxy identifies itself once, in the first message")
		default:
			return status.Error(codes.InvalidArgument, "kind: empty message; send hello, subscribe or unsubscribe")
		}
	}
}

// key checks sub and returns its key, or the refusal to send.
func (m *meshStream) key(sub *meshv1.Subscription) (subKey, *meshv1.SubscriptionError) {
	refuse := func(format string, args ...any) *meshv1.SubscriptionError {
		return &meshv1.SubscriptionError{Subscription: sub, Code: uint32(codes.InvalidArgument), Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case sub.GetInbound() && sub.GetAuthority() != "":
		return subKey{}, refuse("subscription: both authority %q and inbound are set; give one", sub.GetAuthority())
	case sub.GetInbound():
		if m.info.GetId() == "" && m.info.GetWorkload() == "" {
			return subKey{}, refuse("inbound subscription: hello names neither the proxy id nor its workload")
		}
		return subKey{inbound: true}, nil
	case sub.GetAuthority() == "":
		return subKey{}, refuse("subscription: authority is required: name the destination service, e.g. \"api\" or \"api.demo:8080\", or set inbound")
	}
	return subKey{authority: sub.GetAuthority()}, nil
}

// subscribe adds sub (a repeated subscription changes nothing) and kicks
// the stream.
func (m *meshStream) subscribe(sub *meshv1.Subscription) {
	k, refusal := m.key(sub)
	s := &subscription{key: k}
	if refusal == nil && !k.inbound {
		refusal = m.destination(sub, s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if refusal != nil {
		m.errs = append(m.errs, refusal)
		m.kickLocked()
		return
	}
	if m.closed || slices.ContainsFunc(m.subs, func(x *subscription) bool { return x.key == k }) {
		return
	}
	m.subs = append(m.subs, s)
	m.fresh = true
	m.kickLocked()
}

// destination fills in the destination subscription s: what it watches
// and the name Sent reports it under, as Destinations.Watch does.
func (m *meshStream) destination(sub *meshv1.Subscription, s *subscription) *meshv1.SubscriptionError {
	authority := sub.GetAuthority()
	if addr, err := netip.ParseAddrPort(authority); err == nil {
		s.addr, s.byAddr, s.tracked = addr, true, addr.String()
		return nil
	}
	ns := m.info.GetNamespace()
	if ns == "" {
		ns = config.DefaultNamespace
	}
	key := config.ParseAuthority(authority, ns)
	if key.Name() == "" {
		return &meshv1.SubscriptionError{Subscription: sub, Code: uint32(codes.InvalidArgument),
			Message: fmt.Sprintf("authority %q names no service", authority)}
	}
	s.svc, s.tracked = key, string(key)
	return nil
}

// unsubscribe removes sub, if subscribed.
func (m *meshStream) unsubscribe(sub *meshv1.Subscription) {
	k, refusal := m.key(sub)
	if refusal != nil {
		return // never subscribed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = slices.DeleteFunc(m.subs, func(x *subscription) bool { return x.key == k })
}

// close ends every subscription; the stream is over.
func (m *meshStream) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.subs = nil
}

// addSent adds what m was last sent to out, under its proxy's ID: the
// stream, and the newest version sent per subscription.
func (m *meshStream) addSent(out map[string]ProxySent) {
	id := m.info.GetId()
	if id == "" {
		return
	}
	ps, ok := out[id]
	if !ok {
		ps.Destinations = map[string]uint64{}
	}
	ps.Streams++
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		v := s.sent.Load()
		switch {
		case v == 0:
		case s.key.inbound:
			ps.Inbound = max(ps.Inbound, v)
		default:
			ps.Destinations[s.tracked] = max(ps.Destinations[s.tracked], v)
		}
	}
	out[id] = ps
}

// kick makes the stream walk its subscriptions against the newest round.
func (m *meshStream) kick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kickLocked()
}

// shutdown asks the proxy to end the stream.
func (m *meshStream) shutdown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.goodbye = true
	m.kickLocked()
}

// kickLocked is kick; m.mu is held.
func (m *meshStream) kickLocked() {
	m.dirty = true
	if m.running || m.closed {
		return
	}
	m.running = true
	m.s.feed.pumpStarted()
	go m.pump()
}

// pump walks the subscriptions while kicks come, then exits.
func (m *meshStream) pump() {
	defer m.s.feed.pumpEnded()
	for {
		r := m.s.feed.current()
		m.mu.Lock()
		if !m.dirty || m.closed {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.dirty = false
		if m.goodbye {
			m.closed = true
			m.running = false
			m.mu.Unlock()
			// The proxy cancels the stream, which ends the handler.
			_ = m.stream.SendMsg(&meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Goodbye{Goodbye: &meshv1.Goodbye{}}})
			return
		}
		snap := r.snap
		if m.fresh {
			// A new subscription's first message reflects the source as
			// it is now, even while the feed debounces a change.
			if now := m.s.src.Snapshot(); now.Version > snap.Version {
				snap = now
			}
			m.fresh = false
		}
		if m.snap != nil && m.snap.Version > snap.Version {
			snap = m.snap
		}
		m.snap = snap
		errs := m.errs
		m.errs = nil
		subs := slices.Clone(m.subs)
		m.mu.Unlock()

		for _, e := range errs {
			if err := m.stream.SendMsg(&meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Error{Error: e}}); err != nil {
				m.stop()
				return
			}
		}
		g := m.s.cache.gen(snap)
		// Inbound first: a proxy becomes ready on it.
		slices.SortFunc(subs, func(a, b *subscription) int {
			if a.key.inbound != b.key.inbound {
				if a.key.inbound {
					return -1
				}
				return 1
			}
			return 0
		})
		for _, sub := range subs {
			if err := m.evaluate(g, sub); err != nil {
				// A failed send ends the gRPC stream, and so the handler.
				m.stop()
				return
			}
		}
		if m.s.evaluated != nil {
			m.s.evaluated(snap.Version)
		}
	}
}

// stop marks the stream over after a failed send.
func (m *meshStream) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.running = false
}

// evaluate sends sub's message of generation g when it differs from the
// one sent last.
func (m *meshStream) evaluate(g *generation, sub *subscription) error {
	var e *entry
	if sub.key.inbound {
		if auth := m.s.authorizeInbound; auth != nil {
			if err := auth(m.ctx, m.info); err != nil {
				sub.hasLast = false
				msg := err.Error()
				if msg == sub.refused {
					return nil
				}
				sub.refused = msg
				st := status.Convert(err)
				return m.stream.SendMsg(&meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Error{Error: &meshv1.SubscriptionError{
					Subscription: &meshv1.Subscription{Inbound: true}, Code: uint32(st.Code()), Message: st.Message()}}})
			}
			sub.refused = ""
		}
		e = g.inbound(m.info, m.s.defaultPolicy)
	} else {
		e = sub.entry(g)
	}
	if sub.hasLast && e.summed && e.sum == sub.lastSum {
		return nil
	}
	// Recorded before Send so that a client that has received the
	// message never sees an older version in Sent.
	sub.sent.Store(g.snap.Version)
	if err := e.sendWrapped(m.stream, sub.key.inbound); err != nil {
		return err
	}
	sub.lastSum, sub.hasLast = e.sum, e.summed
	return nil
}

// sendWrapped sends e inside a ControllerMessage, encoded once for all
// Mesh streams (see send).
func (e *entry) sendWrapped(stream grpc.ServerStream, inbound bool) error {
	e.wrapOnce.Do(func() {
		e.wrapped = wrap(e.msg, inbound)
		p := &grpc.PreparedMsg{}
		if err := p.Encode(stream, e.wrapped); err == nil {
			e.wrappedPrepared = p
		}
	})
	if e.wrappedPrepared != nil {
		return stream.SendMsg(e.wrappedPrepared)
	}
	return stream.SendMsg(e.wrapped)
}

// wrap puts a snapshot into a ControllerMessage.
func wrap(msg proto.Message, inbound bool) *meshv1.ControllerMessage {
	if inbound {
		return &meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Inbound{Inbound: msg.(*meshv1.InboundSnapshot)}}
	}
	return &meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Destination{Destination: msg.(*meshv1.DestinationSnapshot)}}
}
