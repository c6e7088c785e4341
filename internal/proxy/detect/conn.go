package detect

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// maxPeek bounds how many bytes are read ahead of the proxy's decision.
// A request line longer than this is classified by its prefix alone.
const maxPeek = 4096

// Conn is a net.Conn whose first bytes were read ahead (peeked) and are
// replayed to the next reader before the rest of the stream. A Conn is used
// by one goroutine while peeking; afterwards it behaves as a net.Conn.
type Conn struct {
	net.Conn
	buf []byte // peeked bytes not yet handed to Read
}

// NewConn wraps c for peeking. If c is already a *Conn it is returned.
func NewConn(c net.Conn) *Conn {
	if pc, ok := c.(*Conn); ok {
		return pc
	}
	return &Conn{Conn: c}
}

// Peeked returns the bytes read ahead and not yet consumed. The slice is
// only valid until the next Peek or Read.
func (c *Conn) Peeked() []byte { return c.buf }

// Peek reads from the connection until enough(peeked) reports true, at least
// maxPeek bytes are buffered, the deadline passes or the connection fails.
// It returns the peeked bytes. A deadline that passes is reported as an
// error satisfying errors.Is(err, os.ErrDeadlineExceeded); io.EOF when the
// peer closed. The read deadline is cleared before Peek returns.
func (c *Conn) Peek(deadline time.Time, enough func([]byte) bool) ([]byte, error) {
	if enough(c.buf) {
		return c.buf, nil
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return c.buf, err
	}
	defer c.Conn.SetReadDeadline(time.Time{})
	var chunk [1024]byte
	for len(c.buf) < maxPeek {
		n, err := c.Conn.Read(chunk[:min(len(chunk), maxPeek-len(c.buf))])
		c.buf = append(c.buf, chunk[:n]...)
		if enough(c.buf) {
			return c.buf, nil
		}
		if err != nil {
			return c.buf, err
		}
	}
	return c.buf, nil
}

// Discard drops the first n peeked bytes (a preamble consumed by the
// proxy). n larger than the peeked length drops them all.
func (c *Conn) Discard(n int) {
	c.buf = c.buf[min(n, len(c.buf)):]
}

// Read returns peeked bytes first, then reads from the connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		if len(c.buf) == 0 {
			c.buf = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// WriteTo lets io.Copy hand the rest of the stream to the underlying
// connection (splice for TCP) once the peeked bytes are written.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(c.buf) > 0 {
		n, err := w.Write(c.buf)
		total += int64(n)
		c.buf = c.buf[n:]
		if err != nil {
			return total, err
		}
		c.buf = nil
	}
	n, err := io.Copy(w, c.Conn)
	return total + n, err
}

// ReadFrom lets io.Copy towards this connection use the underlying
// connection's ReadFrom (splice for TCP); writes never touch peeked bytes.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides every method but Write, so io.Copy does not recurse.
type writerOnly struct{ io.Writer }

// CloseWrite half-closes the connection when the underlying one supports
// it; otherwise it does nothing.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// IsTimeout reports whether err is a peek deadline passing.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
