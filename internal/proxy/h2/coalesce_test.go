package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countingConn records every Write that reaches the connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A burst of writes made before the writer runs leaves as one write, in
// order.
func TestCoalescingConnBatchesABurst(t *testing.T) {
	client, server := tcpPair(t)
	under := &countingConn{Conn: client}
	c := newCoalescingConn(under)

	// Hold the writer back: it needs the lock the burst holds.
	c.mu.Lock()
	c.running = true // as if a writer were about to run
	c.mu.Unlock()
	var want bytes.Buffer
	for i := range 5 {
		frame := bytes.Repeat([]byte{byte('a' + i)}, 100+i)
		want.Write(frame)
		if n, err := c.Write(frame); n != len(frame) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if under.count() != 0 {
		t.Fatalf("%d writes reached the connection before the writer ran", under.count())
	}
	go c.writeLoop()

	got := make([]byte, want.Len())
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes arrived changed or out of order")
	}
	if n := under.count(); n != 1 {
		t.Fatalf("%d writes for one burst, want 1", n)
	}
}

// Writes from several goroutines all arrive, each contiguous.
func TestCoalescingConnConcurrentWrites(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescingConn(client)
	const writers, each, size = 4, 200, 37
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte('A' + w)}, size)
			for range each {
				if _, err := c.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make([]byte, writers*each*size)
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(server, got)
		done <- err
	}()
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	counts := map[byte]int{}
	for i := 0; i < len(got); i += size {
		msg := got[i : i+size]
		if !bytes.Equal(msg, bytes.Repeat(msg[:1], size)) {
			t.Fatalf("message at %d interleaved with another: %q", i, msg)
		}
		counts[msg[0]]++
	}
	for w := range writers {
		if counts[byte('A'+w)] != each {
			t.Fatalf("writer %c: %d messages arrived, want %d", 'A'+w, counts[byte('A'+w)], each)
		}
	}
	c.Close()
}

// A peer that does not read makes Write wait once maxPending bytes are
// buffered; reading lets it go on.
func TestCoalescingConnPushesBack(t *testing.T) {
	a, b := net.Pipe() // synchronous: a Write waits for a Read
	defer b.Close()
	c := newCoalescingConn(a)
	defer c.Close()

	total := 3 * maxPending
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, total))
		wrote <- err
	}()
	// Nobody reads: the writer holds one batch, the buffer fills, and the
	// Write cannot finish.
	for i := 0; ; i++ {
		c.mu.Lock()
		full := len(c.pending) >= maxPending
		c.mu.Unlock()
		if full {
			break
		}
		if i == 10000 {
			t.Fatal("the buffer never filled")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-wrote:
		t.Fatalf("Write of %d bytes returned (%v) with nobody reading", total, err)
	default:
	}
	if _, err := io.ReadFull(b, make([]byte, total)); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// Close sends what is buffered first, then closes.
func TestCoalescingConnCloseFlushes(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescingConn(client)
	msg := bytes.Repeat([]byte("goaway "), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes before EOF, want %d", len(got), len(msg))
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// A failed write is reported by the next Write, and stays.
func TestCoalescingConnWriteErrorSticks(t *testing.T) {
	client, server := tcpPair(t)
	server.Close()
	c := newCoalescingConn(client)
	defer c.Close()
	var err error
	for range 1000 {
		// The peer is gone: writes fail once the kernel learns it.
		if _, err = c.Write(make([]byte, 1024)); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
	if _, again := c.Write([]byte("x")); again == nil {
		t.Fatal("Write after a failed write succeeded")
	}
}
