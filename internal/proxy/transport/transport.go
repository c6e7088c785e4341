// Package transport is the proxy-to-proxy connection: how a proxy opens a
// meshed connection to another proxy, and how an inbound proxy recognises
// one. MTLS is the transport proxies use: TLS 1.3, mutually authenticated
// with the workloads' certificates, the protocol carried by ALPN. Preamble
// is the former plaintext framing (an 8-byte preamble: "WEFT", version
// 0x01, one protocol byte, two zero bytes), kept for tests of the layers
// above that need no certificates; a proxy never uses it.
//
// Any proxy package may import transport. MTLS and Preamble are safe for
// concurrent use; the connections they return belong to their caller.
package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"weft.dev/weft/internal/proxy/detect"
)

// Proto is the application protocol a meshed connection carries.
type Proto byte

// Protocols on the wire; the values are part of the preamble.
const (
	// None means the connection did not come from a proxy.
	None  Proto = 0
	HTTP1 Proto = 1
	// HTTP2 includes gRPC.
	HTTP2 Proto = 2
	TCP   Proto = 4
)

func (p Proto) String() string {
	switch p {
	case HTTP1:
		return "http1"
	case HTTP2:
		return "http2"
	case TCP:
		return "tcp"
	case None:
		return "none"
	}
	return fmt.Sprintf("proto(%d)", byte(p))
}

func (p Proto) valid() bool { return p == HTTP1 || p == HTTP2 || p == TCP }

// Transport opens and accepts proxy-to-proxy connections.
type Transport interface {
	// Dial connects to the proxy at addr, which must prove identity (a
	// SPIFFE ID; transports without authentication ignore it), and
	// announces proto. The returned connection carries proto's bytes from
	// its first byte on.
	Dial(ctx context.Context, addr, identity string, proto Proto) (net.Conn, error)
	// Accept looks at a new inbound connection until deadline. If it came
	// from a proxy, Accepted says its protocol and its connection is
	// positioned after the transport's framing; otherwise Proto is None
	// and the connection replays every byte read, for protocol detection.
	Accept(c net.Conn, deadline time.Time) (Accepted, error)
}

// Accepted is an inbound connection after Accept.
type Accepted struct {
	// Proto announced by the peer proxy; None when the connection did not
	// come from a proxy.
	Proto Proto
	// Conn to read the application protocol from.
	Conn net.Conn
	// Peer is the authenticated identity of the peer proxy; empty when
	// the transport does not authenticate or Proto is None.
	Peer string
	// TLS is true when the connection is mutual TLS from a peer proxy.
	TLS bool
}

// Encrypted reports whether t encrypts and authenticates the connections
// it dials (a metrics label: tls="true").
func Encrypted(t Transport) bool {
	_, ok := t.(*MTLS)
	return ok
}

// Magic starts every preamble.
const Magic = "WEFT"

// Version of the preamble format.
const Version = 0x01

// PreambleLen is the length of the preamble in bytes.
const PreambleLen = 8

// Preamble is the plaintext Transport. Zero value is ready to use.
type Preamble struct {
	// Dialer opens TCP connections; zero value is a default net.Dialer.
	Dialer net.Dialer
}

var _ Transport = (*Preamble)(nil)

// Encode returns the preamble announcing p.
func Encode(p Proto) [PreambleLen]byte {
	return [PreambleLen]byte{'W', 'E', 'F', 'T', Version, byte(p), 0, 0}
}

// Dial implements Transport.
func (t *Preamble) Dial(ctx context.Context, addr, _ string, proto Proto) (net.Conn, error) {
	if !proto.valid() {
		return nil, fmt.Errorf("dial %s: unsupported protocol %v", addr, proto)
	}
	c, err := t.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pre := Encode(proto)
	if d, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(d)
	}
	if _, err := c.Write(pre[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("write preamble to %s: %w", addr, err)
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// Accept implements Transport.
func (t *Preamble) Accept(c net.Conn, deadline time.Time) (Accepted, error) {
	pc := detect.NewConn(c)
	b, err := pc.Peek(deadline, func(b []byte) bool {
		return len(b) >= PreambleLen || !bytes.HasPrefix([]byte(Magic), b[:min(len(b), len(Magic))])
	})
	p, ok, perr := Parse(b)
	if perr != nil {
		return Accepted{Conn: pc}, perr
	}
	if ok {
		pc.Discard(PreambleLen)
		return Accepted{Proto: p, Conn: pc}, nil
	}
	if len(b) > 0 || detect.IsTimeout(err) {
		// Not (yet) a preamble: let detection decide.
		return Accepted{Conn: pc}, nil
	}
	return Accepted{Conn: pc}, err
}

// Parse reports whether b starts with a complete preamble and which
// protocol it announces. It fails on a preamble of an unknown version or
// protocol, so a peer speaking a newer format is refused rather than
// misread.
func Parse(b []byte) (p Proto, ok bool, err error) {
	if len(b) < PreambleLen || string(b[:len(Magic)]) != Magic {
		return None, false, nil
	}
	if b[4] != Version {
		return None, false, fmt.Errorf("preamble version %d not supported (want %d): upgrade this proxy", b[4], Version)
	}
	p = Proto(b[5])
	if !p.valid() || b[6] != 0 || b[7] != 0 {
		return None, false, fmt.Errorf("preamble announces unknown protocol %d", b[5])
	}
	return p, true, nil
}
