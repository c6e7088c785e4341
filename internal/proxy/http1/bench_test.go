package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// staticRouter sends everything to one pool; Done is allocated once.
type staticRouter struct{ route Route }

func (r *staticRouter) Route(*RequestHead) (Route, error) { return r.route, nil }

// readMessage reads one head and a Content-Length body from br without
// allocating, and returns the body length.
func readMessage(br *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) == 2 {
			break
		}
		const cl = "content-length: "
		if len(line) > len(cl) && equalFold(string(line[:len(cl)]), cl) {
			for _, c := range line[len(cl) : len(line)-2] {
				n = n*10 + int(c-'0')
			}
		}
	}
	_, err := br.Discard(n)
	return n, err
}

// BenchmarkProxyKeepAlive measures one request/response of 1 KiB each way
// through client -> Server -> Pool -> upstream over loopback, on one warm
// keep-alive connection. Client and upstream are minimal and allocation
// free, so allocs/op are the proxy's.
func BenchmarkProxyKeepAlive(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	response := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"), body...)
	request := append([]byte("POST /echo HTTP/1.1\r\nHost: api.default\r\nUser-Agent: bench\r\nAccept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"), body...)

	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := upLn.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := readMessage(br); err != nil {
						return
					}
					if _, err := c.Write(response); err != nil {
						return
					}
				}
			}()
		}
	}()

	addr := upLn.Addr().String()
	pool := NewPool(PoolConfig{Addr: addr, Dial: tcpDialer(addr)})
	srv := &Server{Router: &staticRouter{route: Route{Upstream: pool, Done: func(int, error) {}}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	defer func() {
		cancel()
		_ = ln.Close()
		_ = upLn.Close()
		pool.Close()
		wg.Wait()
	}()

	b.Run("direct-baseline", func(b *testing.B) {
		benchSequential(b, addr, request)
	})
	b.Run("sequential", func(b *testing.B) {
		benchSequential(b, ln.Addr().String(), request)
	})
	b.Run("reverseproxy-reference", func(b *testing.B) {
		// The same exchange through net/http's ReverseProxy, for
		// comparison in the same run.
		target, _ := url.Parse("http://" + addr)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.ErrorLog = log.New(io.Discard, "", 0)
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		rp.Transport = tr
		rs := httptest.NewServer(rp)
		defer rs.Close()
		defer tr.CloseIdleConnections()
		benchSequential(b, rs.Listener.Addr().String(), request)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(2048)
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for pb.Next() {
				if _, err := c.Write(request); err != nil {
					b.Error(err)
					return
				}
				if _, err := readMessage(br); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchSequential runs request/response exchanges on one connection to
// addr.
func benchSequential(b *testing.B, addr string, request []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	exchange := func() {
		if _, err := c.Write(request); err != nil {
			b.Fatal(err)
		}
		if n, err := readMessage(br); err != nil || n != 1024 {
			b.Fatalf("response: %d bytes, %v", n, err)
		}
	}
	exchange() // warm the upstream connection
	b.ReportAllocs()
	b.SetBytes(2048)
	b.ResetTimer()
	for b.Loop() {
		exchange()
	}
}
