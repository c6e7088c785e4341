package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/detect"
)

// DefaultHandshakeTimeout bounds an inbound TLS handshake when MTLS has no
// HandshakeTimeout; outbound handshakes are bounded by the dial context.
const DefaultHandshakeTimeout = 10 * time.Second

// MTLS is the mutual-TLS Transport, the default between proxies: TLS 1.3,
// both certificates verified against the trust bundle, the server's SPIFFE
// ID compared exactly with the identity discovery gave for the endpoint,
// and the protocol carried by ALPN (weft/h1, weft/h2, weft/tcp). It never
// falls back to plaintext: a meshed endpoint without an identity, or
// whose certificate names another, is not connected.
//
// Inbound, a connection whose first record is a ClientHello offering a
// weft ALPN is terminated here; anything else (plaintext, or the
// application's own TLS) is handed back untouched with Proto None, for
// detection on a permissive port or refusal on a strict one. Until Certs
// holds a certificate, every inbound connection is refused.
//
// Build it with NewMTLS. It is safe for concurrent use; the connections it
// returns belong to their caller.
type MTLS struct {
	certs  mtls.CertSource
	bundle *mtls.Bundle
	// Dialer opens TCP connections; zero value is a default net.Dialer.
	Dialer net.Dialer
	// HandshakeTimeout bounds an inbound handshake after the ClientHello
	// arrived; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	server *tls.Config
	// mu guards clients.
	mu      sync.Mutex
	clients map[clientKey]*tls.Config
}

type clientKey struct{ identity, alpn string }

var _ Transport = (*MTLS)(nil)

// NewMTLS returns the transport presenting certs' certificate (the proxy's
// identity.Manager) and verifying peers against bundle. It does no I/O.
func NewMTLS(certs mtls.CertSource, bundle *mtls.Bundle) *MTLS {
	return &MTLS{
		certs:   certs,
		bundle:  bundle,
		server:  mtls.ServerConfig(certs, bundle),
		clients: map[clientKey]*tls.Config{},
	}
}

// ALPN returns the ALPN protocol name of p, "" for None.
func ALPN(p Proto) string {
	switch p {
	case HTTP1:
		return mtls.ALPNHTTP1
	case HTTP2:
		return mtls.ALPNHTTP2
	case TCP:
		return mtls.ALPNTCP
	}
	return ""
}

// protoOf is the inverse of ALPN.
func protoOf(alpn string) Proto {
	switch alpn {
	case mtls.ALPNHTTP1:
		return HTTP1
	case mtls.ALPNHTTP2:
		return HTTP2
	case mtls.ALPNTCP:
		return TCP
	}
	return None
}

// client returns the cached client configuration for (identity, alpn).
// The configurations read the certificate and the bundle on every
// handshake, so caching them never pins an old certificate.
func (t *MTLS) client(identity, alpn string) *tls.Config {
	k := clientKey{identity, alpn}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.clients[k]
	if !ok {
		// Bounded by the endpoints' identities times three protocols;
		// drop everything if a churn of identities ever grows it.
		if len(t.clients) >= 4096 {
			clear(t.clients)
		}
		c = mtls.ClientConfig(t.certs, t.bundle, identity, []string{alpn})
		t.clients[k] = c
	}
	return c
}

// HandshakeError is a TLS handshake with a peer proxy that failed for a
// reason other than the network: a certificate that does not verify, an
// identity other than the expected one, no certificate yet. Its message is
// complete on its own (it does not unwrap), so the proxy's error response
// names the reason.
type HandshakeError struct {
	Addr, Identity string
	Reason         string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("mutual TLS with %s (expected identity %s) failed: %s", e.Addr, e.Identity, e.Reason)
}

// Dial implements Transport: it connects to addr and completes a TLS
// handshake in which the server must prove identity, offering proto's ALPN.
func (t *MTLS) Dial(ctx context.Context, addr, identity string, proto Proto) (net.Conn, error) {
	alpn := ALPN(proto)
	if alpn == "" {
		return nil, fmt.Errorf("dial %s: unsupported protocol %v", addr, proto)
	}
	if identity == "" {
		// Never plaintext to a meshed endpoint, and never TLS to "anyone
		// the CA signed": that would let any workload impersonate it.
		return nil, &HandshakeError{Addr: addr, Identity: "(none)",
			Reason: "the controller gave no identity for this meshed endpoint, so it cannot be authenticated; check the workload's service account"}
	}
	if _, err := t.certs.Certificate(); err != nil {
		return nil, &HandshakeError{Addr: addr, Identity: identity, Reason: "this proxy holds no certificate yet (is the controller reachable?)"}
	}
	raw, err := t.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, t.client(identity, alpn))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		var ne net.Error
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			// The connection broke (reset, refused by the peer closing):
			// keep the cause inspectable.
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return nil, &HandshakeError{Addr: addr, Identity: identity, Reason: err.Error()}
	}
	return &meshConn{Conn: tc, tc: tc}, nil
}

// Accept implements Transport.
func (t *MTLS) Accept(c net.Conn, deadline time.Time) (Accepted, error) {
	pc := detect.NewConn(c)
	if _, err := t.certs.Certificate(); err != nil {
		// A proxy that cannot prove who it is serves nobody: not even
		// plaintext clients, whose requests it could not authorize
		// consistently with its peers.
		return Accepted{Conn: pc}, errors.New("refusing connections until this proxy holds its certificate from the controller")
	}
	b, err := pc.Peek(deadline, mtls.HelloRecordComplete)
	if !mtls.IsMeshHello(b) {
		if len(b) > 0 || detect.IsTimeout(err) {
			// Plaintext, the application's own TLS, or a server-first
			// protocol: every byte is replayed for detection.
			return Accepted{Conn: pc}, nil
		}
		return Accepted{Conn: pc}, err
	}
	timeout := t.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	ctx, cancel := context.WithDeadline(context.Background(), later(deadline, time.Now().Add(timeout)))
	defer cancel()
	tc := tls.Server(pc, t.server)
	if err := tc.HandshakeContext(ctx); err != nil {
		return Accepted{Conn: pc}, fmt.Errorf("mutual TLS handshake from %s: %w", c.RemoteAddr(), err)
	}
	st := tc.ConnectionState()
	peer, err := mtls.PeerIdentity(st)
	if err != nil {
		return Accepted{Conn: pc}, err
	}
	p := protoOf(st.NegotiatedProtocol)
	if p == None {
		return Accepted{Conn: pc}, fmt.Errorf("mutual TLS from %s (%s): unknown protocol %q", c.RemoteAddr(), peer, st.NegotiatedProtocol)
	}
	return Accepted{Proto: p, Conn: &meshConn{Conn: tc, tc: tc}, Peer: peer, TLS: true}, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// meshConn is a terminated mesh TLS connection. It hides the TLS
// connection state from HTTP servers and clients, which would otherwise
// treat the bytes inside as https from the application; the application
// protocol runs inside as if on plain TCP. CloseWrite sends close_notify,
// which the peer reads as the end of the stream.
type meshConn struct {
	net.Conn
	tc *tls.Conn
}

func (c *meshConn) CloseWrite() error { return c.tc.CloseWrite() }

// IsMesh reports whether c is a connection this package's MTLS dialed or
// accepted, i.e. mutually authenticated and encrypted.
func IsMesh(c net.Conn) bool {
	_, ok := c.(*meshConn)
	return ok
}
