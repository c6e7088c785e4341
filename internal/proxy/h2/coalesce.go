package h2

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// coalescingConn gathers the writes HTTP/2 makes in one burst into one
// write to the connection underneath.
//
// net/http's HTTP/2 server and transport flush after every frame they
// schedule: a unary gRPC exchange is HEADERS, DATA and an empty END_STREAM
// DATA frame one way, HEADERS, DATA and trailers the other, each its own
// TLS record, write syscall and wake-up of the peer. Here Write only
// appends to a buffer and readies a writer goroutine; the writer runs
// once the goroutines that produced the burst have yielded, and sends
// everything buffered by then in one Write. Order is kept; a write error
// is returned by the next Write (HTTP/2 then tears the connection down,
// as it would have on the failed write itself).
//
// The buffer is bounded: a Write that would take it past maxPending waits
// for the writer, so a peer that stops reading still pushes back.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	drained sync.Cond // broadcast when the writer took or finished a batch
	pending []byte    // bytes accepted, not yet handed to Conn.Write
	spare   []byte    // the other buffer, reused
	running bool      // the writer goroutine is started and not finished
	err     error     // first error of Conn.Write; sticky
	closing bool      // Close was called: the writer closes Conn when done
	closed  chan struct{}
}

// maxPending bounds the bytes a connection buffers before Write waits.
const maxPending = 64 << 10

// maxIdleBuffer is the largest buffer a connection keeps between bursts.
const maxIdleBuffer = 16 << 10

// closeDrainTimeout bounds how long Close lets the writer finish sending
// what was buffered (a GOAWAY, final frames) to a peer that does not read.
const closeDrainTimeout = 5 * time.Second

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, closed: make(chan struct{})}
	cc.drained.L = &cc.mu
	return cc
}

// Write buffers p and makes sure the writer will send it.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	for len(p) > 0 {
		for c.err == nil && !c.closing && len(c.pending) >= maxPending {
			c.drained.Wait()
		}
		if c.err != nil {
			return written, c.err
		}
		if c.closing {
			return written, net.ErrClosed
		}
		n := min(len(p), maxPending-len(c.pending))
		c.pending = append(c.pending, p[:n]...)
		p = p[n:]
		written += n
		if !c.running {
			c.running = true
			go c.writeLoop()
		}
	}
	return written, nil
}

// writeLoop sends batches until nothing is pending, then ends; the next
// Write starts it again. Starting it per burst rather than keeping one
// parked per connection costs one goroutine start per burst and no idle
// stack.
func (c *coalescingConn) writeLoop() {
	// Let the goroutines that are runnable finish their part of the burst
	// first: net/http's HTTP/2 hands frames between its serve loop, the
	// handler and the transport's request writer, and a handler reading a
	// request body waits for the serve loop in between. With one CPU this
	// turns a unary gRPC request's HEADERS+DATA and END_STREAM, written
	// on both sides of such a wait, into one write.
	runtime.Gosched()
	c.mu.Lock()
	for len(c.pending) > 0 && c.err == nil {
		batch := c.pending
		c.pending = c.spare[:0]
		c.drained.Broadcast() // room again for a waiting Write
		c.mu.Unlock()
		_, err := c.Conn.Write(batch)
		c.mu.Lock()
		if cap(batch) <= maxIdleBuffer {
			c.spare = batch[:0]
		} else {
			c.spare = nil // a large burst's buffer is not kept per connection
		}
		if err != nil {
			c.err = err
		}
	}
	c.running = false
	closing := c.closing
	if c.err != nil {
		c.pending = nil
	}
	c.drained.Broadcast()
	c.mu.Unlock()
	if closing {
		c.closeConn()
	}
}

// Close sends what is buffered, within closeDrainTimeout, then closes the
// connection. It does not wait for the sending: Reads blocked on the
// connection end when it closes.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.closed
		return nil
	}
	c.closing = true
	c.drained.Broadcast()
	if c.running {
		c.mu.Unlock()
		// The writer closes the connection when its last batch is out.
		c.Conn.SetWriteDeadline(time.Now().Add(closeDrainTimeout))
		return nil
	}
	c.mu.Unlock()
	return c.closeConn()
}

func (c *coalescingConn) closeConn() error {
	err := c.Conn.Close()
	close(c.closed)
	return err
}
