package http1

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangGuard bounds every blocking step of a test; it is never a
// performance threshold.
const hangGuard = 20 * time.Second

// testRouter routes every request to one pool and records Done calls.
type testRouter struct {
	pool *Pool

	mu      sync.Mutex
	err     error         // guarded by mu: the error Route returns
	timeout time.Duration // guarded by mu: Route.Timeout
	done    []doneCall    // guarded by mu
	seen    []string      // guarded by mu: "METHOD host path"
	calls   atomic.Int32
}

type doneCall struct {
	status int
	err    error
}

func (r *testRouter) Route(req *RequestHead) (Route, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method()+" "+req.Host()+" "+req.Path())
	err, timeout := r.err, r.timeout
	r.mu.Unlock()
	if err != nil {
		return Route{}, err
	}
	return Route{Upstream: r.pool, Timeout: timeout, Done: func(status int, err error) {
		r.calls.Add(1)
		r.mu.Lock()
		r.done = append(r.done, doneCall{status, err})
		r.mu.Unlock()
	}}, nil
}

func (r *testRouter) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *testRouter) setTimeout(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeout = d
}

func (r *testRouter) doneCalls() []doneCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]doneCall(nil), r.done...)
}

// tcpDialer dials addr on loopback.
func tcpDialer(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// upstream is a net/http test server that counts the connections it
// accepted.
type upstream struct {
	*httptest.Server
	conns atomic.Int32
}

func startUpstream(t *testing.T, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(h)
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// proxy is a Server on a loopback listener.
type proxy struct {
	addr   string
	router *testRouter
	pool   *Pool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ln     net.Listener
}

// startProxy serves on 127.0.0.1 and routes to upstreamAddr.
func startProxy(t *testing.T, upstreamAddr string, mutate func(*Server)) *proxy {
	t.Helper()
	pool := NewPool(PoolConfig{Addr: upstreamAddr, Dial: tcpDialer(upstreamAddr)})
	p := &proxy{router: &testRouter{pool: pool}, pool: pool}
	srv := &Server{Router: p.router}
	if mutate != nil {
		mutate(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// stop drains the proxy and waits for every connection to end.
func (p *proxy) stop() {
	p.cancel()
	_ = p.ln.Close()
	p.wg.Wait()
	p.pool.Close()
}

// rawConn is a client connection for tests that need exact bytes.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// response reads one response with net/http's client-side parser.
func (c *rawConn) response(t *testing.T, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

// rawUpstream is a TCP server whose connections are handled by fn, for
// upstream behaviours net/http will not produce.
type rawUpstream struct {
	ln      net.Listener
	wg      sync.WaitGroup
	accepts atomic.Int32
}

func startRawUpstream(t *testing.T, fn func(n int, c net.Conn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(u.accepts.Add(1))
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(hangGuard))
				fn(n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

// readRequestHead reads one request head from br in an upstream double.
func readRequestHeadRaw(br *bufio.Reader) (*RequestHead, error) {
	head, err := readHead(br, nil, DefaultMaxHeaderBytes, true)
	if err != nil {
		return nil, err
	}
	h := &RequestHead{}
	return h, parseRequest(string(head), h)
}
