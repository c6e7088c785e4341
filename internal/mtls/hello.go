package mtls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"
)

// recordHandshake is the TLS record type of a ClientHello.
const recordHandshake = 0x16

// HelloRecordComplete reports whether b holds enough of a connection's
// first bytes to decide whether it is a mesh TLS connection: the whole
// first TLS record, or a first byte that shows it is not TLS at all. Use it
// as the enough function when peeking at an inbound connection.
func HelloRecordComplete(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if b[0] != recordHandshake {
		return true
	}
	if len(b) < 5 {
		return false
	}
	n := int(b[3])<<8 | int(b[4])
	return len(b) >= 5+n
}

// IsMeshHello reports whether b (peeked, not consumed) starts with a TLS
// ClientHello that offers one of the mesh ALPN protocols, i.e. comes from
// another weft proxy. An application's own TLS (which offers h2, http/1.1
// or nothing) is not mesh traffic and must be passed through as opaque
// bytes or refused, never terminated. b must hold the whole first record
// (see HelloRecordComplete); a ClientHello split over several records is
// reported as not mesh.
func IsMeshHello(b []byte) bool {
	if !HelloRecordComplete(b) || b[0] != recordHandshake {
		return false
	}
	n := int(b[3])<<8 | int(b[4])
	// Let crypto/tls parse the ClientHello: feed it the record and stop
	// it in GetConfigForClient, before it writes anything.
	var protos []string
	stop := errors.New("stop")
	srv := tls.Server(&replayConn{r: bytes.NewReader(b[:5+n])}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			protos = h.SupportedProtos
			return nil, stop
		},
	})
	_ = srv.Handshake()
	for _, p := range protos {
		if strings.HasPrefix(p, "weft/") {
			return true
		}
	}
	return false
}

// replayConn is a net.Conn that reads from r and refuses writes.
type replayConn struct{ r *bytes.Reader }

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write([]byte) (int, error)        { return 0, errors.New("replay: read only") }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
