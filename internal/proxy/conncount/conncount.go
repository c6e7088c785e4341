// Package conncount wraps a connection to count the bytes read from it and
// written to it, for the proxy's per-connection TCP metrics. The counts
// are read once, when the connection ends; nothing is recorded per
// request.
//
// The proxy's inbound and outbound servers import conncount. A Conn may be
// read and written from different goroutines, as a net.Conn may.
package conncount

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// Conn is a net.Conn that counts its bytes. It keeps the half-close
// (CloseWrite) and the kernel copy paths (io.ReaderFrom, io.WriterTo) of
// the connection it wraps.
//
// The counters are atomic, one per direction, each written by the one
// goroutine that reads (or writes) at a time: an HTTP/2 server's reader
// and writer goroutines may still finish their last call after the server
// returns, when the owner reads the counts. Uncontended, an atomic add
// costs a few nanoseconds next to a system call.
type Conn struct {
	net.Conn
	read, written atomic.Int64
}

// New wraps c; it does no I/O.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// ReadFrom writes what r yields to the connection, by the wrapped
// connection's ReadFrom when it has one (splice between TCP sockets).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.written.Add(n)
		return n, err
	}
	return io.Copy(writerOnly{c}, r)
}

// WriteTo writes what the connection yields to w, by the wrapped
// connection's WriteTo when it has one (splice between TCP sockets).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		n, err := wt.WriteTo(w)
		c.read.Add(n)
		return n, err
	}
	return io.Copy(w, readerOnly{c})
}

// CloseWrite half-closes the connection when the wrapped one can, else
// it fails with ErrNoHalfClose (callers then close instead).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoHalfClose
}

// ErrNoHalfClose: the wrapped connection cannot half-close.
var ErrNoHalfClose = errors.New("connection does not support half-close")

// Counts returns the bytes read from and written to the connection so far.
func (c *Conn) Counts() (read, written int64) {
	return c.read.Load(), c.written.Load()
}

// writerOnly and readerOnly hide Conn's ReadFrom and WriteTo from io.Copy,
// which would otherwise call them again.
type writerOnly struct{ io.Writer }

type readerOnly struct{ io.Reader }
