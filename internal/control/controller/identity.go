package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/identityv1"
	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
)

// newCA returns the CA of cfg: cfg.Issuer, or, when nil, a trust anchor
// and issuer generated in memory (valid for a year; nothing is written).
func newCA(cfg Config) (*identity.CA, error) {
	td := cfg.TrustDomain
	if td == "" {
		td = config.DefaultTrustDomain
	}
	is := cfg.Issuer
	if is == nil {
		anchor, cert, key, err := identity.GenerateRoots(td, 0)
		if err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
		if is, err = identity.LoadIssuer(anchor, cert, key); err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
	}
	ca, err := identity.NewCA(is, identity.CAConfig{TrustDomain: td, DefaultLifetime: cfg.CertLifetime})
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	return ca, nil
}

// CA returns the controller's certificate authority.
func (c *Controller) CA() *identity.CA { return c.ca }

// Tokens returns the join tokens proxies prove their identity with.
func (c *Controller) Tokens() *identity.JoinTokens { return c.tokens }

// TrustAnchorsPEM returns the trust anchors proxies need (--trust-anchors).
func (c *Controller) TrustAnchorsPEM() []byte { return c.ca.Bundle().PEM() }

// IssueToken issues a join token for the workload with service account sa
// in namespace ns (empty: "default"), to give to its proxies
// (--token-file).
func (c *Controller) IssueToken(ns, sa string) (string, error) {
	if ns == "" {
		ns = config.DefaultNamespace
	}
	return c.tokens.Issue(identity.Identity{TrustDomain: c.ca.TrustDomain(), Namespace: ns, ServiceAccount: sa})
}

// serverOptions are the gRPC server's TLS credentials, the interceptor
// that authenticates proxies on the mesh API, and the per-connection
// settings below.
func (c *Controller) serverOptions() []grpc.ServerOption {
	creds := mtls.ControlServerCredentials(c.ca.ServingCerts(c.cfg.ServingDNS, nil), c.ca.Bundle())
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ChainStreamInterceptor(c.authorizeStream),
		grpc.ReadBufferSize(connReadBuffer),
		grpc.WriteBufferSize(connWriteBuffer),
		grpc.HeaderTableSize(0),
		grpc.StaticStreamWindowSize(connWindow),
		grpc.StaticConnWindowSize(connWindow),
	}
}

// registerIdentity adds the Identity API, recording what it issues.
func (c *Controller) registerIdentity(g *grpc.Server) {
	identityv1.RegisterIdentityServer(g, &issuedRecorder{
		Server: identity.NewServer(c.ca, c.authenticator(), c.log),
		leaves: c.leaves,
	})
}

// authorizeStream lets only certified proxies use the mesh API, and a
// proxy watch only its own workload's inbound configuration: a stolen or
// misconfigured proxy must not learn another workload's policy.
func (c *Controller) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	service, _, _ := strings.Cut(strings.TrimPrefix(info.FullMethod, "/"), "/")
	if service != meshv1.Destinations_ServiceDesc.ServiceName && service != meshv1.Inbound_ServiceDesc.ServiceName &&
		service != meshv1.Mesh_ServiceDesc.ServiceName {
		return handler(srv, ss)
	}
	peer, err := identity.PeerID(ss.Context())
	if err != nil {
		return status.Errorf(codes.Unauthenticated,
			"the mesh API needs the proxy's certificate (%v); a proxy gets one from Identity.Certify with its join token first", err)
	}
	ctx := context.WithValue(ss.Context(), peerIDKey{}, peer)
	return handler(srv, &authorizedStream{ServerStream: ss, ctx: ctx, c: c, peer: peer})
}

// peerIDKey is the context key of the caller's verified SPIFFE ID on an
// authorized stream: a connection's identity does not change, so the
// checks made on every configuration change need not parse its
// certificate again.
type peerIDKey struct{}

// authorizedStream checks the request of an Inbound.Watch against the
// caller's identity as it is received, and carries that identity in its
// context.
type authorizedStream struct {
	grpc.ServerStream
	ctx  context.Context
	c    *Controller
	peer string
}

func (s *authorizedStream) Context() context.Context { return s.ctx }

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(*meshv1.InboundRequest)
	if !ok {
		return nil
	}
	return s.c.checkInbound(s.peer, req.GetProxy())
}

// authorizeInbound is the check of checkInbound for an inbound
// subscription on a Mesh stream, whose context carries the peer (the
// stream passed authorizeStream, so it has one, and its verified ID).
func (c *Controller) authorizeInbound(ctx context.Context, info *meshv1.ProxyInfo) error {
	peer, ok := ctx.Value(peerIDKey{}).(string)
	if !ok {
		var err error
		if peer, err = identity.PeerID(ctx); err != nil {
			return status.Errorf(codes.Unauthenticated, "the inbound configuration needs the proxy's certificate: %v", err)
		}
	}
	return c.checkInbound(peer, info)
}

// checkInbound lets the proxy with certificate identity peer read only
// the inbound configuration of its own workload.
func (c *Controller) checkInbound(peer string, info *meshv1.ProxyInfo) error {
	want := c.workloadID(info)
	if want != peer {
		c.log.Warn("inbound configuration refused: identity mismatch", "proxy", info.GetId(), "certificate", peer, "workload", want)
		return status.Errorf(codes.PermissionDenied,
			"proxy %s presents identity %s but asks for the inbound configuration of %s; a proxy may only watch its own workload (check --service, --namespace and its join token)",
			info.GetId(), peer, want)
	}
	return nil
}

// workloadID is the SPIFFE ID of the workload a proxy describes: the
// registered proxy's service, else the workload it names. In local mode
// the service account is the service name.
func (c *Controller) workloadID(info *meshv1.ProxyInfo) string {
	svc, ns := info.GetWorkload(), info.GetNamespace()
	if p := c.cfg.Source.Snapshot().Proxies[info.GetId()]; p != nil {
		svc, ns = p.Service, p.Namespace
	}
	if ns == "" {
		ns = config.DefaultNamespace
	}
	return config.SpiffeID(c.ca.TrustDomain(), ns, svc)
}

// issuedRecorder is the Identity API, remembering the last certificate
// issued to each proxy for the HTTP API.
type issuedRecorder struct {
	*identity.Server
	leaves *leafLog
}

func (r *issuedRecorder) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	resp, err := r.Server.Certify(ctx, req)
	if err == nil && req.GetProxyId() != "" {
		r.leaves.record(req.GetProxyId(), time.Unix(resp.GetNotAfterUnix(), 0))
	}
	return resp, err
}

// leafLog is the expiry of the newest certificate issued per proxy.
type leafLog struct {
	// mu guards byProxy.
	mu      sync.Mutex
	byProxy map[string]leafRecord
}

type leafRecord struct {
	notAfter, issued time.Time
}

// maxLeafRecords bounds the log against proxies that come and go.
const maxLeafRecords = 10000

func (l *leafLog) record(proxy string, notAfter time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byProxy == nil || len(l.byProxy) >= maxLeafRecords {
		l.byProxy = map[string]leafRecord{}
	}
	l.byProxy[proxy] = leafRecord{notAfter: notAfter, issued: time.Now()}
}

func (l *leafLog) get(proxy string) (leafRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.byProxy[proxy]
	return r, ok
}

// identityStatus implements httpapi.IdentityStatus.
type identityStatus struct {
	c *Controller
}

func (s identityStatus) IdentityStatus() httpapi.IdentityResponse {
	c := s.c
	resp := httpapi.IdentityResponse{TrustDomain: c.ca.TrustDomain(), Anchors: []httpapi.CertInfo{}, Workloads: []httpapi.WorkloadIdentity{}}
	for _, st := range c.ca.Status() {
		ci := httpapi.CertInfo{Subject: st.Subject, NotAfter: st.NotAfter}
		if st.Role == "issuer" {
			resp.Issuer = ci
		} else {
			resp.Anchors = append(resp.Anchors, ci)
		}
	}
	snap := c.cfg.Source.Snapshot()
	byID := map[string]*httpapi.WorkloadIdentity{}
	add := func(id, svc, ns string) *httpapi.WorkloadIdentity {
		w := byID[id]
		if w == nil {
			w = &httpapi.WorkloadIdentity{Service: svc, Namespace: ns, Identity: id, Proxies: []httpapi.ProxyLeaf{}}
			byID[id] = w
		}
		return w
	}
	// Proxies first: a workload is named by its proxies' service; a
	// service whose endpoints belong to it (a version subset) adds no row.
	for _, p := range snap.Proxies {
		ns := p.Namespace
		if ns == "" {
			ns = config.DefaultNamespace
		}
		w := add(config.SpiffeID(c.ca.TrustDomain(), ns, p.Service), p.Service, ns)
		pl := httpapi.ProxyLeaf{ID: p.ID}
		if r, ok := c.leaves.get(p.ID); ok {
			na, is := r.notAfter, r.issued
			pl.CertNotAfter, pl.IssuedAt = &na, &is
		}
		w.Proxies = append(w.Proxies, pl)
	}
	for _, svc := range snap.Services {
		for _, ep := range svc.Endpoints {
			if ep.Meshed && ep.Identity != "" {
				add(ep.Identity, svc.Name, svc.Namespace)
			}
		}
	}
	for _, w := range byID {
		slices.SortFunc(w.Proxies, func(a, b httpapi.ProxyLeaf) int { return strings.Compare(a.ID, b.ID) })
		resp.Workloads = append(resp.Workloads, *w)
	}
	slices.SortFunc(resp.Workloads, func(a, b httpapi.WorkloadIdentity) int { return strings.Compare(a.Identity, b.Identity) })
	return resp
}

// Per-connection buffers of the gRPC server. The mesh API's messages are
// small and a proxy's connection idles between changes, yet gRPC's defaults
// allocate a 32 KiB read buffer for the life of every connection and a
// 32 KiB write buffer from a shared pool per flush. With 4 KiB buffers,
// weftbench -controlplane 100x2000
// measured the controller's live heap with 2,000 connected proxies at
// 87-94 MiB instead of 185 MiB (runtime HeapAlloc after GC; the heap goal
// 180 instead of 380 MiB). VmRSS stayed at 225-255 MiB: only the first page
// of each idle buffer was ever touched, so the defaults cost address space
// and GC headroom rather than resident memory while snapshots stay small.
// What is resident is the heap goal (about twice the live heap: TLS state,
// transport and per-stream state) and 67 MiB of goroutine stacks (three
// transport goroutines per connection plus one per watch stream).
//
// The read buffer is now off: the connection is TLS, whose Conn keeps the
// decrypted record and serves the framer's small reads from it, so a
// second buffer per connection only held a copy (about 4 KiB of live heap
// per proxy, 7 MiB with 2,000 proxies).
//
// The write buffer is off too: each frame goes to the TLS Conn in one
// write. With one Mesh stream per proxy a change is one small data frame
// per connection, so batching saved little, while a buffer per connection
// (or, with grpc.SharedWriteBuffer, one per connection flushing in the
// same instant, which a change makes all of them do) held 4 KiB each:
// live heap -8 MiB with 2,000 proxies (weftbench -controlplane 1000x2000).
//
// A header table size of 0 (SETTINGS_HEADER_TABLE_SIZE) keeps a proxy from
// indexing its request headers on the connection: a proxy opens one stream
// for the connection's life, so the dynamic table only held a copy of
// headers that are never sent again (about 0.5 MiB with 2,000 proxies).
// Static flow-control windows of HTTP/2's default size: proxies send the
// controller a few small messages, so the bandwidth-delay estimator that
// widens windows (and its pings) had nothing to do.
const (
	connReadBuffer  = 0
	connWriteBuffer = 0
	connWindow      = 64 << 10
)

// authenticator is the configured Authenticator, or the join tokens.
func (c *Controller) authenticator() identity.Authenticator {
	if c.cfg.Authenticator != nil {
		return c.cfg.Authenticator
	}
	return c.tokens
}
