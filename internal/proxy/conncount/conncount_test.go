package conncount

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a loopback TCP connection.
func pair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		acc <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

func TestCounts(t *testing.T) {
	payload := bytes.Repeat([]byte("weft"), 50_000)
	tests := []struct {
		name string
		// send writes payload to c; recv reads it all from the peer.
		send func(c *Conn, p []byte) error
		recv func(c *Conn) ([]byte, error)
	}{
		{"write and read",
			func(c *Conn, p []byte) error { _, err := c.Write(p); return err },
			func(c *Conn) ([]byte, error) { return io.ReadAll(readerOnly{c}) }},
		{"ReadFrom and WriteTo",
			func(c *Conn, p []byte) error { _, err := c.ReadFrom(bytes.NewReader(p)); return err },
			func(c *Conn) ([]byte, error) { var b bytes.Buffer; _, err := c.WriteTo(&b); return b.Bytes(), err }},
		{"io.Copy both ways",
			func(c *Conn, p []byte) error { _, err := io.Copy(c, bytes.NewReader(p)); return err },
			func(c *Conn) ([]byte, error) { var b bytes.Buffer; _, err := io.Copy(&b, c); return b.Bytes(), err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := pair(t)
			ca, cb := New(a), New(b)
			_ = ca.SetDeadline(time.Now().Add(time.Minute)) // hang guard
			_ = cb.SetDeadline(time.Now().Add(time.Minute))
			errc := make(chan error, 1)
			go func() {
				err := tt.send(ca, payload)
				errc <- errors.Join(err, ca.CloseWrite())
			}()
			got, err := tt.recv(cb)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("got %d bytes, want the %d sent", len(got), len(payload))
			}
			if r, w := ca.Counts(); r != 0 || w != int64(len(payload)) {
				t.Errorf("sender counts (read %d, written %d), want (0, %d)", r, w, len(payload))
			}
			if r, w := cb.Counts(); r != int64(len(payload)) || w != 0 {
				t.Errorf("receiver counts (read %d, written %d), want (%d, 0)", r, w, len(payload))
			}
		})
	}
}

// kernelConn records whether its ReadFrom and WriteTo (the kernel copy
// paths of a *net.TCPConn) were used.
type kernelConn struct {
	net.Conn
	readFrom, writeTo bool
}

func (k *kernelConn) ReadFrom(r io.Reader) (int64, error) {
	k.readFrom = true
	return io.Copy(io.Discard, r)
}

func (k *kernelConn) WriteTo(w io.Writer) (int64, error) {
	k.writeTo = true
	return io.Copy(w, bytes.NewReader([]byte("abc")))
}

// TestKeepsKernelCopy: io.Copy through a Conn still reaches the wrapped
// connection's ReadFrom and WriteTo, so TCP to TCP copies stay spliced.
func TestKeepsKernelCopy(t *testing.T) {
	k := &kernelConn{}
	c := New(k)
	if _, err := io.Copy(c, readerOnly{bytes.NewReader(make([]byte, 10))}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatal(err)
	}
	if !k.readFrom || !k.writeTo {
		t.Errorf("got ReadFrom used %v, WriteTo used %v; want both", k.readFrom, k.writeTo)
	}
	if r, w := c.Counts(); r != 3 || w != 10 {
		t.Errorf("got counts (read %d, written %d), want (3, 10)", r, w)
	}
	if err := c.CloseWrite(); !errors.Is(err, ErrNoHalfClose) {
		t.Errorf("CloseWrite on a connection without half-close: got %v, want ErrNoHalfClose", err)
	}
}

// BenchmarkCopy copies 1 MiB per op from one loopback TCP connection to
// another, as an HTTP/1.1 tunnel does, with the destination raw or
// counted: the counted one must stay on the kernel's splice path.
func BenchmarkCopy(b *testing.B) {
	const size = 1 << 20
	for _, mode := range []string{"raw", "counted", "raw-without-splice"} {
		b.Run(mode, func(b *testing.B) {
			srcW, srcR := pair(b)
			dstW, dstR := pair(b)
			go io.Copy(srcW, zeros{}) //nolint:errcheck // ends when the test closes srcW
			go io.Copy(io.Discard, dstR)
			var dst net.Conn = dstW
			var src net.Conn = srcR
			var w io.Writer = dst
			switch mode {
			case "counted":
				dst, src = New(dstW), New(srcR)
				w = dst
			case "raw-without-splice":
				// For comparison: a user-space copy through a buffer.
				w = writerOnly{dstW}
			}
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				if _, err := io.Copy(w, io.LimitReader(src, size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
