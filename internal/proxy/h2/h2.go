// Package h2 proxies HTTP/2 with prior knowledge (h2c) and gRPC: a server
// side that serves client connections and forwards each request, balanced
// per request by a Router, over pooled HTTP/2 connections to the chosen
// endpoint. Streaming works both ways (gRPC unary, server, client and bidi
// streaming); trailers, grpc-status and grpc-message pass through
// untouched.
//
// It is built on net/http's HTTP/2, which golang.org/x/net/http2's Server
// and Transport are now deprecated in favour of (they wrap it from Go 1.27
// on): same protocol code, no deprecated API. Both sides write through a
// coalescingConn, which turns the frames net/http flushes one by one in a
// burst (HEADERS, DATA, END_STREAM, trailers) into one write.
//
// When the proxy itself fails a request it answers in the caller's terms:
// a gRPC client gets grpc-status UNAVAILABLE (14) with the reason in
// grpc-message, any other client the proxyerr status, and both get the
// reason in the Weft-Proxy-Error header.
//
// Only the proxy's listeners (internal/proxy/outbound, inbound) import h2.
// A Server is safe for concurrent use: ServeConn may run for many
// connections at once.
package h2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// Router chooses the upstream of each request.
type Router interface {
	// RouteHTTP2 returns where r goes. An error that is a *proxyerr.Error
	// is answered with its status and reason; any other error with 502.
	// The Router counts requests it refuses itself.
	RouteHTTP2(r *http.Request) (Target, error)
}

// Target is the routing decision for one request.
type Target struct {
	// Transport sends the request to the endpoint.
	Transport http.RoundTripper
	// Addr is the endpoint's host:port.
	Addr string
	// Done, if not nil, is called exactly once when the exchange ends.
	Done func(Result)
	// Retry, if not nil, lets failed attempts be sent again (retry.go);
	// each attempt has its own Target, and each attempt's Done is called.
	Retry *Retry
}

// Result is how one exchange ended, for balancing and metrics.
type Result struct {
	// Status sent to the client; 0 if none.
	Status int
	// GRPCStatus is the grpc-status sent to the client, -1 when the
	// exchange was not gRPC or carried none.
	GRPCStatus int
	// Err is the failure, if any.
	Err error
	// ProxyError is true when the proxy answered instead of the upstream.
	ProxyError bool
}

// Failure reports whether the exchange counts as failed: a 5xx, a proxy
// error, a gRPC status other than OK, or no answer at all.
func (r Result) Failure() bool {
	return r.ProxyError || r.Status == 0 || r.Status >= 500 || r.GRPCStatus > 0 || r.Err != nil
}

// Config of a Server.
type Config struct {
	// Router is required.
	Router Router
	// Logger; nil discards logs.
	Logger *slog.Logger
	// MaxConcurrentStreams per client connection; default 1000.
	MaxConcurrentStreams int
}

// Server serves HTTP/2 client connections and forwards their requests.
//
// It uses net/http's HTTP/2 implementation (the one golang.org/x/net/http2
// now defers to) fed by a listener of already-accepted connections, so
// graceful shutdown (GOAWAY, then waiting for streams in flight) is
// net/http's own.
type Server struct {
	router  Router
	log     *slog.Logger
	streams int // MaxConcurrentStreams
	// hs is made and started with the first connection (under start): a
	// proxy keeps one Server per destination it calls, most never see
	// HTTP/2 (docs/performance.md, "Proxy memory in a 1,000-service mesh").
	hs     *http.Server
	ln     *connListener
	start  sync.Once
	served chan struct{} // closed when hs.Serve returned, or at Shutdown if it never started
}

// NewServer returns a Server; it does no I/O.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 1000
	}
	return &Server{router: cfg.Router, log: cfg.Logger, streams: cfg.MaxConcurrentStreams, ln: newConnListener(), served: make(chan struct{})}
}

// newHTTPServer returns the net/http server behind s.
func (s *Server) newHTTPServer() *http.Server {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:     s,
		Protocols:   &p,
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: s.streams},
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: connContext,
	}
}

// ServeConn serves one client connection, positioned at the client
// preface, until it closes: the client closes it, Shutdown drains it, or
// its owner closes it. ctx is not watched; owners close the connection to
// stop it at once. The values of ctx (such as the peer's identity) are
// visible in the context of every request of the connection.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.start.Do(func() {
		s.hs = s.newHTTPServer()
		go func() {
			defer close(s.served)
			s.hs.Serve(s.ln)
		}()
	})
	tc := &trackedConn{Conn: newCoalescingConn(c), closed: make(chan struct{}), vals: ctx}
	if !s.ln.push(tc) {
		c.Close()
		return
	}
	<-tc.closed
}

// Shutdown sends GOAWAY on every connection: clients open no new streams,
// streams in flight finish, then the connections close. It waits for that
// until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.start.Do(func() { close(s.served) }) // never started: nothing to wait for
	var err error
	if s.hs != nil {
		if err = s.hs.Shutdown(ctx); err != nil {
			s.hs.Close()
		}
	}
	s.ln.Close()
	<-s.served
	return err
}

// connListener hands accepted connections to http.Server.Serve.
type connListener struct {
	conns chan net.Conn
	// mu guards closed and sends on conns after close.
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// trackedConn tells ServeConn when the server closed the connection.
type trackedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
	// vals is the context given to ServeConn: its values reach every
	// request of the connection (see connContext).
	vals context.Context
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// Dialer opens a connection to one endpoint, ready to carry HTTP/2.
type Dialer func(ctx context.Context) (net.Conn, error)

// NewTransport returns a Transport for one endpoint at addr: requests
// share its multiplexed HTTP/2 connections (prior knowledge), opened by
// dial. Callers close it with CloseIdleConnections when the endpoint goes.
func NewTransport(addr string, dial Dialer) *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			c, err := dial(ctx)
			if err != nil {
				return nil, &dialError{addr: addr, err: err}
			}
			return newCoalescingConn(c), nil
		},
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
		DisableCompression: true,
		IdleConnTimeout:    5 * time.Minute,
	}
}

// connectTimeout bounds a dial to an endpoint.
const connectTimeout = 3 * time.Second

type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "connect to " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// upstreamError turns a RoundTrip failure into the proxy's answer.
func upstreamError(addr string, err error) *proxyerr.Error {
	var pe *proxyerr.Error
	if errors.As(err, &pe) {
		return pe
	}
	var de *dialError
	if errors.As(err, &de) {
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: refused (is the application listening on that port?)", addr)
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			return proxyerr.Wrap(http.StatusGatewayTimeout, err, "connect to %s: timed out after %s", addr, connectTimeout)
		}
		return proxyerr.Wrap(http.StatusBadGateway, err, "connect to %s: %s", addr, innermost(err))
	}
	return proxyerr.Wrap(http.StatusBadGateway, err, "upstream %s broke: %s", addr, innermost(err))
}

func innermost(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// hopHeaders are connection-specific and never forwarded (RFC 9113
// section 8.2.2); "te: trailers" is kept, gRPC requires it.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"}

func isGRPC(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/grpc")
}

// ServeHTTP forwards one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	grpcReq := isGRPC(r.Header)
	t, err := s.router.RouteHTTP2(r)
	if err != nil {
		writeError(w, grpcReq, proxyerr.From(err))
		return
	}
	res := s.forward(w, r, &t, grpcReq)
	if t.Done != nil {
		t.Done(res)
	}
	if res.Err != nil && res.Status != 0 && !res.ProxyError && !grpcReq {
		// The upstream broke after the response began: reset the stream
		// so the client does not take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) forward(w http.ResponseWriter, r *http.Request, t *Target, grpcReq bool) Result {
	// A shallow copy: the request, its header map included, belongs to
	// this handler, so the upstream request reuses them (r.Clone would
	// copy the header and URL for every request only to drop the copy).
	out := new(http.Request)
	*out = *r
	out.RequestURI = ""
	out.URL = &url.URL{Scheme: "http", Host: t.Addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = r.Host
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if te := r.Header.Get("Te"); te != "" && te != "trailers" {
		out.Header.Del("Te")
	}

	var resp *http.Response
	var err error
	if t.Retry != nil {
		resp, err = s.roundTripRetry(r, out, t)
	} else {
		resp, err = t.Transport.RoundTrip(out)
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away; nobody to answer.
			return Result{GRPCStatus: -1, Err: err}
		}
		pe := upstreamError(t.Addr, err)
		writeError(w, grpcReq, pe)
		return Result{Status: pe.Status, GRPCStatus: grpcStatusOf(grpcReq, pe), Err: pe, ProxyError: true}
	}
	defer resp.Body.Close()

	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	res := Result{Status: resp.StatusCode, GRPCStatus: -1}

	// gRPC and bodies of unknown length stream: flush every read, so a
	// server-streaming message reaches the client as it arrives.
	flushEach := grpcReq || resp.ContentLength < 0
	if err := copyBody(w, resp.Body, flushEach); err != nil {
		res.Err = err
		if r.Context().Err() == nil && grpcReq {
			// Tell a gRPC client why its stream ended.
			reason := "upstream " + t.Addr + " broke: " + innermost(err)
			h.Set(http.TrailerPrefix+"Grpc-Status", "14")
			h.Set(http.TrailerPrefix+"Grpc-Message", encodeGRPCMessage(reason))
			h.Set(http.TrailerPrefix+proxyerr.Header, reason)
			res.GRPCStatus = 14
		}
		return res
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	if grpcReq {
		res.GRPCStatus = grpcStatus(resp)
	}
	return res
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to w. Its error is the read side's; a failed write
// means the client left, which the request context tells the caller.
func copyBody(w http.ResponseWriter, src io.Reader, flushEach bool) error {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flushEach {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// grpcStatus is the grpc-status of a finished response: in the trailers,
// or in the headers of a trailers-only response.
func grpcStatus(resp *http.Response) int {
	v := resp.Trailer.Get("Grpc-Status")
	if v == "" {
		v = resp.Header.Get("Grpc-Status")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func grpcStatusOf(grpcReq bool, _ *proxyerr.Error) int {
	if grpcReq {
		return 14
	}
	return -1
}

// writeError answers a request the proxy fails itself.
func writeError(w http.ResponseWriter, grpcReq bool, pe *proxyerr.Error) {
	h := w.Header()
	h.Set(proxyerr.Header, pe.Reason)
	if pe.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(pe.RetryAfter))
	}
	if grpcReq {
		// A trailers-only response: gRPC clients read the status from it
		// and report UNAVAILABLE with the proxy's reason.
		h.Set("Content-Type", "application/grpc")
		code := "14"
		if pe.GRPCStatus > 0 {
			code = strconv.Itoa(pe.GRPCStatus)
		}
		h.Set("Grpc-Status", code)
		h.Set("Grpc-Message", encodeGRPCMessage(pe.Reason))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(pe.Status)
	io.WriteString(w, pe.Body())
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC
// HTTP/2 protocol requires.
func encodeGRPCMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}
