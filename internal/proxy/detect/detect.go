// Package detect classifies a new connection by its first bytes: a TLS
// ClientHello, the HTTP/2 prior-knowledge preface, an HTTP/1.x request line,
// or anything else (opaque TCP). Server-first protocols (MySQL, SMTP) send
// nothing until the server speaks, so a connection that stays silent past
// the timeout is opaque too.
//
// Any proxy package may import detect. Classify is a pure function, safe
// for concurrent use; a Conn belongs to one goroutine while it is peeked.
package detect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// Protocol is what a connection was classified as.
type Protocol uint8

// Protocols Detect tells apart.
const (
	// Opaque is anything not recognised, including silent connections.
	Opaque Protocol = iota
	// TLS is a TLS ClientHello: forwarded as opaque bytes, end to end.
	TLS
	// HTTP1 is an HTTP/1.0 or HTTP/1.1 request.
	HTTP1
	// HTTP2 is HTTP/2 with prior knowledge (h2c), including gRPC.
	HTTP2
)

func (p Protocol) String() string {
	switch p {
	case TLS:
		return "tls"
	case HTTP1:
		return "http1"
	case HTTP2:
		return "http2"
	}
	return "opaque"
}

// DefaultTimeout is how long Detect waits for the client's first bytes.
const DefaultTimeout = 500 * time.Millisecond

// Preface is the HTTP/2 connection preface (RFC 9113 section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethod bounds an HTTP method token; real methods are far shorter.
const maxMethod = 24

// Classify decides the protocol of a connection that starts with b. done is
// false when b is a prefix that more bytes could still change.
func Classify(b []byte) (p Protocol, done bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	// TLS record: handshake (0x16), major version 3, then the handshake
	// type ClientHello (0x01) after the 5-byte record header.
	if b[0] == 0x16 {
		switch {
		case len(b) < 2:
			return Opaque, false
		case b[1] != 0x03:
			return Opaque, true
		case len(b) < 6:
			return Opaque, false
		case b[5] == 0x01:
			return TLS, true
		}
		return Opaque, true
	}
	if b[0] == 'P' {
		n := min(len(b), len(Preface))
		if bytes.Equal(b[:n], []byte(Preface[:n])) {
			if n == len(Preface) {
				return HTTP2, true
			}
			return Opaque, false
		}
		// "PUT ", "POST ", "PATCH ": fall through to the method check.
	}
	for i, c := range b {
		if c == ' ' {
			if i == 0 {
				return Opaque, true
			}
			return HTTP1, true
		}
		if !isTokenChar(c) || i >= maxMethod {
			return Opaque, true
		}
	}
	return Opaque, false
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110
// section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// Result is the outcome of Detect.
type Result struct {
	Protocol Protocol
	// Conn replays the peeked bytes; use it instead of the original
	// connection.
	Conn *Conn
	// TimedOut is true when the client sent too little before the timeout.
	TimedOut bool
}

// Detect peeks at c until its protocol is known, at most until timeout
// (DefaultTimeout when zero) or ctx ends. It returns an error only when the
// connection failed or closed before sending a byte; a silent client is
// Opaque with TimedOut set.
func Detect(ctx context.Context, c net.Conn, timeout time.Duration) (Result, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return DetectUntil(NewConn(c), deadline)
}

// DetectUntil is Detect on an already wrapped connection with an absolute
// deadline, for callers that peeked at it before (a transport preamble).
func DetectUntil(pc *Conn, deadline time.Time) (Result, error) {
	var p Protocol
	b, err := pc.Peek(deadline, func(b []byte) bool {
		var done bool
		p, done = Classify(b)
		return done
	})
	res := Result{Protocol: p, Conn: pc}
	switch {
	case err == nil:
		return res, nil
	case IsTimeout(err):
		res.TimedOut = true
		return res, nil
	case len(b) > 0 && errors.Is(err, io.EOF):
		// The client sent a short message and half-closed: forward it.
		return res, nil
	}
	return res, err
}
