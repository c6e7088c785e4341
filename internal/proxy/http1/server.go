package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// Server defaults, see Server.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 90 * time.Second
)

// Server relays HTTP/1.1 requests from client connections to the upstream
// chosen by Router. The zero value is not usable: Router is required. A
// Server's fields must not change once ServeConn has been called.
type Server struct {
	// Router picks the upstream for each request; required.
	Router Router
	// Logger receives connection-level diagnostics at debug level; nil
	// discards them.
	Logger *slog.Logger
	// ReadHeaderTimeout bounds reading a request head once its first byte
	// arrived; default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection that sends no new
	// request for this long; default 90s.
	IdleTimeout time.Duration
	// IdleTimeoutFunc, if not nil, is asked once per connection and
	// overrides IdleTimeout when it returns more than 0 (the
	// destination's configured idle timeout). It must not block.
	IdleTimeoutFunc func() time.Duration
	// MaxHeaderBytes bounds a request head; larger ones are answered 431.
	// Default DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int
}

var discard = slog.New(slog.DiscardHandler)

// maxKeptHeadBuf is the largest head buffer a connection keeps between
// requests.
const maxKeptHeadBuf = 16 << 10

// clientConn is the state of one client connection, reused for each of its
// requests so that a request allocates almost nothing.
type clientConn struct {
	s          *Server
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	log        *slog.Logger
	dialCtx    context.Context
	maxHead    int
	hdrTimeout time.Duration
	idleTime   time.Duration

	headBuf []byte // request head bytes, reused
	respBuf []byte // response head bytes, reused
	req     RequestHead
	resp    ResponseHead
	cp      copier
	scratch [24]byte
	// edit is the Edit of the request in flight, nil when none.
	edit *Edit
	// timeoutReason is the TimeoutReason of the request in flight.
	timeoutReason string

	// try is the retry state of the request in flight when its route
	// has a Retry; reqBody holds its buffered body when buffered is set.
	try      *tryState
	reqBody  []byte
	buffered bool

	mu sync.Mutex
	// guarded by mu: whether the connection waits for a request (so a
	// drain may interrupt the wait) and whether a drain started.
	idle     bool
	draining bool

	deadline bool // a read deadline may be armed on c

	// inflight is the upstream connection of the exchange in progress,
	// nil between exchanges; aborted is set once abort ran. abort closes
	// inflight; an exchange starting after abort closes its own.
	inflight atomic.Pointer[upstreamConn]
	aborted  atomic.Bool
}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// ServeConn serves the requests of one client connection, in order, until
// the client closes it, an error makes it unusable, or ctx is cancelled. On
// cancellation (a graceful drain) an idle connection is closed at once and
// a request in flight is finished and answered with "Connection: close".
// ServeConn closes c before returning. Connections switched to a tunnel
// (WebSocket, CONNECT) are not interrupted by the drain: they end when
// either side closes, or when the caller closes c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.ServeConnAbort(ctx, nil, c)
}

// ServeConnAbort is ServeConn, and when abort (if not nil) ends it closes
// c and the upstream connection of the request in flight at once: a hard
// stop, for a drain whose deadline passed while the application still
// holds a request or a tunnel.
func (s *Server) ServeConnAbort(ctx, abort context.Context, c net.Conn) {
	cc := &clientConn{
		s:          s,
		c:          c,
		br:         getReader(c),
		bw:         getWriter(c),
		log:        s.Logger,
		dialCtx:    context.WithoutCancel(ctx),
		maxHead:    s.MaxHeaderBytes,
		hdrTimeout: s.ReadHeaderTimeout,
		idleTime:   s.IdleTimeout,
	}
	if cc.log == nil {
		cc.log = discard
	}
	if cc.maxHead <= 0 {
		cc.maxHead = DefaultMaxHeaderBytes
	}
	if cc.hdrTimeout <= 0 {
		cc.hdrTimeout = defaultReadHeaderTimeout
	}
	if s.IdleTimeoutFunc != nil {
		if d := s.IdleTimeoutFunc(); d > 0 {
			cc.idleTime = d
		}
	}
	if cc.idleTime <= 0 {
		cc.idleTime = defaultIdleTimeout
	}
	stop := context.AfterFunc(ctx, cc.drain)
	stopAbort := func() bool { return false }
	if abort != nil && abort.Done() != nil {
		stopAbort = context.AfterFunc(abort, cc.abort)
	}
	defer func() {
		stop()
		stopAbort()
		_ = c.Close()
		putReader(cc.br)
		putWriter(cc.bw)
	}()
	for cc.serveOne() {
	}
}

// drain runs when the serving context ends.
func (cc *clientConn) drain() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.draining = true
	if cc.idle {
		_ = cc.c.SetReadDeadline(aLongTimeAgo)
	}
}

// abort closes the client connection and the upstream one in use.
func (cc *clientConn) abort() {
	cc.aborted.Store(true)
	_ = cc.c.Close()
	if uc := cc.inflight.Load(); uc != nil {
		_ = uc.conn.Close()
	}
}

func (cc *clientConn) isDraining() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.draining
}

// waitRequest waits for the first byte of the next request and arms the
// head timeout. It reports false if the connection should close instead.
//
// Deadlines are set only when a read may block: each one costs a runtime
// timer update, a measurable share of a small request's CPU. A deadline
// left armed is cleared (clearDeadline) before any read that must not
// time out: a request body or a tunnel.
func (cc *clientConn) waitRequest() bool {
	if cc.br.Buffered() == 0 {
		cc.mu.Lock()
		if cc.draining {
			cc.mu.Unlock()
			return false
		}
		cc.idle = true
		_ = cc.c.SetReadDeadline(time.Now().Add(cc.idleTime))
		cc.deadline = true
		cc.mu.Unlock()
		_, err := cc.br.Peek(1)
		cc.mu.Lock()
		cc.idle = false
		cc.mu.Unlock()
		if err != nil {
			return false
		}
	}
	// A request that started arriving is served even if a drain began
	// meanwhile; it is answered with Connection: close. The deadline set
	// here replaces the one a drain may have set; it is not needed when
	// the whole head is already buffered.
	if b, _ := cc.br.Peek(cc.br.Buffered()); !bytes.Contains(b, crlfcrlf) || cc.isDraining() {
		_ = cc.c.SetReadDeadline(time.Now().Add(cc.hdrTimeout))
		cc.deadline = true
	}
	return true
}

var crlfcrlf = []byte("\r\n\r\n")

// clearDeadline removes an armed read deadline.
func (cc *clientConn) clearDeadline() {
	if cc.deadline {
		_ = cc.c.SetReadDeadline(time.Time{})
		cc.deadline = false
	}
}

// serveOne serves one request and reports whether the connection stays
// open for another.
func (cc *clientConn) serveOne() bool {
	if !cc.waitRequest() {
		return false
	}
	head, err := readHead(cc.br, cc.headBuf[:0], cc.maxHead, true)
	cc.headBuf = head[:0]
	if cap(head) > maxKeptHeadBuf {
		// One huge head must not pin its buffer for the connection's
		// life.
		cc.headBuf = nil
	}
	if err != nil {
		if he, ok := errIsHead(err); ok {
			cc.answer(he.status, "invalid request: "+he.msg, true)
			cc.lingerClose()
		} else if !errors.Is(err, io.EOF) {
			cc.log.Debug("read request head", "remote", cc.c.RemoteAddr(), "err", err)
		}
		return false
	}
	req := &cc.req
	if err := parseRequest(string(head), req); err != nil {
		he, ok := errIsHead(err)
		if !ok {
			he = &headError{status: http.StatusBadRequest, msg: err.Error()}
		}
		cc.answer(he.status, "invalid request: "+he.msg, true)
		cc.lingerClose()
		return false
	}

	if cc.s.Router == nil {
		return cc.answer(http.StatusBadGateway, "proxy misconfigured: no router for HTTP/1.1", true)
	}
	route, err := cc.s.Router.Route(req)
	if err != nil {
		pe := proxyerr.From(err)
		keep := cc.answerWith(pe.Status, pe.Reason, pe.RetryAfter, !cc.canKeepWithoutBody(req))
		if !keep && req.body != bodyNone {
			cc.lingerClose()
		}
		return keep
	}
	var status int
	var keep bool
	if route.Retry != nil {
		status, keep, err = cc.forwardRetry(req, &route)
	} else {
		status, keep, err = cc.forward(req, &route)
	}
	if route.Done != nil {
		route.Done(status, err)
	}
	return keep
}

// canKeepWithoutBody reports whether the client connection survives an
// answer given without reading the request body.
func (cc *clientConn) canKeepWithoutBody(req *RequestHead) bool {
	return req.keepAlive && req.body == bodyNone && req.upgrade == "" && req.method != "CONNECT"
}

// answer writes a response the proxy makes itself: status, the reason in
// proxyerr.Header and in a text/plain body. It reports whether the
// connection stays open.
func (cc *clientConn) answer(status int, reason string, closeConn bool) bool {
	return cc.answerWith(status, reason, 0, closeConn)
}

// answerWith is answer with a Retry-After field when retryAfter (seconds)
// is not 0.
func (cc *clientConn) answerWith(status int, reason string, retryAfter int, closeConn bool) bool {
	if cc.isDraining() {
		closeConn = true
	}
	reason = sanitizeReason(reason)
	bw := cc.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(appendStatus(cc.scratch[:0], status))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(status))
	_, _ = bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\n")
	_ = writeField(bw, proxyerr.Header, reason)
	if retryAfter > 0 {
		_, _ = bw.WriteString("Retry-After: ")
		_, _ = bw.Write(appendInt(cc.scratch[:0], int64(retryAfter)))
		_, _ = bw.WriteString("\r\n")
	}
	_, _ = bw.WriteString("Content-Length: ")
	_, _ = bw.Write(appendInt(cc.scratch[:0], int64(len(reason)+1)))
	if closeConn {
		_, _ = bw.WriteString("\r\nConnection: close")
	}
	_, _ = bw.WriteString("\r\n\r\n")
	if cc.req.method != "HEAD" {
		// A body after a HEAD answer would be read as the next
		// response on a kept-alive connection.
		_, _ = bw.WriteString(reason)
		_ = bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	return !closeConn
}

// sanitizeReason keeps a reason safe for a header value: a CR or LF from an
// error message would split the response (response splitting).
func sanitizeReason(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] == 0x7f {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return s
}

// answerErr answers a proxy failure that happened before any response byte
// was sent to the client. bodyDone says whether the request body was fully
// read from the client.
func (cc *clientConn) answerErr(req *RequestHead, err error, bodyDone bool) (int, bool, error) {
	if cc.try != nil && cc.holdErr(err) {
		return 0, false, errHeld
	}
	pe := proxyerr.From(err)
	keep := req.keepAlive && (bodyDone || req.body == bodyNone) && req.upgrade == "" && req.method != "CONNECT"
	keep = cc.answerWith(pe.Status, pe.Reason, pe.RetryAfter, !keep)
	if !keep && !bodyDone && req.body != bodyNone {
		cc.lingerClose()
	}
	return pe.Status, keep, pe
}

// lingerClose half-closes the connection and discards what the client still
// sends for a moment. Closing a socket with unread input makes the kernel
// send a reset, which can destroy the error answer before the client has
// read it.
func (cc *clientConn) lingerClose() {
	cw, ok := cc.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = cc.c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, cc.c, lingerBytes)
}

// Bounds of lingerClose.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)
