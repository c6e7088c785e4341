package http1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// continueWait is how long the proxy waits for the upstream's answer to
// "Expect: 100-continue" before sending the body anyway (as curl does).
const continueWait = time.Second

// errRetry marks a failure on a reused connection before any response
// byte, for a request that is safe to send again.
var errRetry = errors.New("stale pooled connection")

// forward relays req to an upstream connection from the route's pool and
// the response back. It returns the status sent to the client (0 if none),
// whether the client connection stays open, and the failure if any.
func (cc *clientConn) forward(req *RequestHead, route *Route) (int, bool, error) {
	if route.Answer != nil {
		return cc.answerDirect(req, route.Answer)
	}
	cc.edit, cc.timeoutReason = route.Edit, route.TimeoutReason
	if route.MirrorBody != nil {
		if done, err := cc.mirrorBody(req, route.MirrorBody); err != nil {
			return 0, false, err
		} else if done != nil {
			defer done()
		}
	}
	pool := route.Upstream
	if pool == nil {
		return cc.answerErr(req, proxyerr.New(http.StatusBadGateway, "no upstream chosen for %s", req.Host()), false)
	}
	uc, err := pool.get(cc.dialCtx)
	if err != nil {
		return cc.answerErr(req, err, false)
	}
	if cc.try != nil {
		cc.try.reached = true
	}
	status, keep, err := cc.exchange(req, uc, route.Timeout, true)
	if err != errRetry {
		return status, keep, err
	}
	// The pooled connection had been closed by the upstream before it
	// read the request: the request never reached the application, send
	// it once more on a fresh connection.
	cc.log.Debug("retry on a fresh connection", "upstream", pool.Addr())
	if cc.try != nil {
		cc.try.reached = false
	}
	if uc, err = pool.dial(cc.dialCtx); err != nil {
		return cc.answerErr(req, err, false)
	}
	if cc.try != nil {
		cc.try.reached = true
	}
	return cc.exchange(req, uc, route.Timeout, false)
}

// idempotent methods may be sent again when unsure whether they were
// received (RFC 9110 section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// earlyResponseWait is how long the proxy looks for a response after the
// upstream stopped accepting the request body: a server that refuses a
// body (413, 401) often answers and closes before reading it.
const earlyResponseWait = 100 * time.Millisecond

// exchange runs one request/response on uc, which it closes or returns to
// its pool. timeout bounds the wait for the response head (0: none).
// mayRetry allows returning errRetry.
func (cc *clientConn) exchange(req *RequestHead, uc *upstreamConn, timeout time.Duration, mayRetry bool) (int, bool, error) {
	cc.inflight.Store(uc)
	defer cc.inflight.Store(nil)
	if cc.aborted.Load() {
		_ = uc.conn.Close()
	}
	pool := uc.pool
	retryable := mayRetry && uc.reused && (req.body == bodyNone || cc.buffered) && req.upgrade == "" && req.method != "CONNECT"
	cc.writeRequestHead(uc.bw, req)

	bodySent := req.body == bodyNone
	var early bool // a final response arrived before the body was sent
	if !bodySent && req.expectContinue {
		if err := uc.bw.Flush(); err != nil {
			uc.close()
			return cc.answerErr(req, upstreamBroke(pool, "while receiving the request", err), false)
		}
		_ = uc.conn.SetReadDeadline(time.Now().Add(continueWait))
		_, err := uc.br.Peek(1)
		_ = uc.conn.SetReadDeadline(time.Time{})
		if err == nil {
			// The upstream answered before the body: relay interim
			// responses until 100 Continue or a final answer.
			final, err := cc.readResponse(req, uc, true, 0)
			if err != nil {
				uc.close()
				return cc.answerErr(req, err, false)
			}
			early = final
		} else if !isTimeout(err) {
			uc.close()
			if mayRetry && uc.reused {
				// A stale pooled connection, and the client is still
				// waiting for 100 Continue: no body byte was read, so
				// the request can go again on a fresh connection.
				return 0, false, errRetry
			}
			return cc.answerErr(req, upstreamBroke(pool, "before responding", err), false)
		}
	}
	if !bodySent && !early {
		if req.body != bodyLength || int64(cc.br.Buffered()) < req.contentLength {
			cc.clearDeadline() // the body is read from the socket
		}
		var err error
		if cc.buffered {
			_, err = uc.bw.Write(cc.reqBody)
		} else {
			_, err = cc.cp.copyBody(uc.bw, cc.br, req.body, req.contentLength, req.body == bodyChunked, cc.maxHead)
		}
		switch he, isHead := errIsHead(err); {
		case err == nil:
			bodySent = true
		case isHead:
			uc.close()
			return cc.answerErr(req, proxyerr.New(http.StatusBadRequest, "invalid request: %s", he.msg), false)
		case isReadErr(err):
			// The client went away or stalled mid-body.
			uc.close()
			return 0, false, err
		default:
			// The upstream stopped reading the body; it may have
			// answered already.
			_ = uc.conn.SetReadDeadline(time.Now().Add(earlyResponseWait))
			if final, rerr := cc.readResponse(req, uc, false, 0); rerr == nil && final {
				_ = uc.conn.SetReadDeadline(time.Time{})
				return cc.relayResponse(req, uc, false)
			}
			uc.close()
			return cc.answerErr(req, upstreamBroke(pool, "while receiving the request body", err), false)
		}
	}
	if err := uc.bw.Flush(); err != nil {
		uc.close()
		if retryable {
			return 0, false, errRetry
		}
		return cc.answerErr(req, upstreamBroke(pool, "while receiving the request", err), bodySent)
	}
	if !early {
		if _, err := cc.readResponse(req, uc, false, timeout); err != nil {
			uc.close()
			var ie *ioError
			if retryable && errors.As(err, &ie) && ie.read && (idempotent(req.method) || errors.Is(ie.err, io.EOF)) {
				return 0, false, errRetry
			}
			return cc.answerErr(req, err, bodySent)
		}
		if t := cc.try; t != nil && cc.resp.status >= 200 && t.hold(Attempt{Status: cc.resp.status, Reached: true}) {
			uc.close()
			return cc.resp.status, false, errHeld
		}
	}
	return cc.relayResponse(req, uc, bodySent)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// upstreamBroke is the 502 for an upstream connection that failed.
func upstreamBroke(p *Pool, when string, err error) error {
	what := "closed the connection"
	if errors.Is(err, syscall.ECONNRESET) {
		what = "reset the connection"
	}
	return proxyerr.Wrap(http.StatusBadGateway, err, "upstream %s %s %s", p.Addr(), what, when)
}

// readResponse reads response heads from uc into cc.resp, relaying interim
// 1xx responses to the client, until a final response (or, if
// untilContinue, a 100 Continue). It reports whether a final response was
// read. A failure before any response byte is returned as a read *ioError
// (so the caller may retry); others are *proxyerr.Error 502, or 504 when
// timeout (if not 0) passed before the final head arrived.
func (cc *clientConn) readResponse(req *RequestHead, uc *upstreamConn, untilContinue bool, timeout time.Duration) (bool, error) {
	if timeout > 0 {
		_ = uc.conn.SetReadDeadline(time.Now().Add(timeout))
		defer func() { _ = uc.conn.SetReadDeadline(time.Time{}) }()
	}
	for first := true; ; first = false {
		head, err := readHead(uc.br, cc.respBuf[:0], DefaultMaxHeaderBytes, false)
		cc.respBuf = head[:0]
		if err != nil {
			switch {
			case err == errHeadTooLarge:
				return false, proxyerr.New(http.StatusBadGateway, "upstream %s sent a response head larger than 64 KiB", uc.pool.Addr())
			case timeout > 0 && isTimeout(err):
				if cc.timeoutReason != "" {
					return false, proxyerr.Wrap(http.StatusGatewayTimeout, err, "%s", cc.timeoutReason)
				}
				return false, proxyerr.Wrap(http.StatusGatewayTimeout, err, "upstream %s did not respond within %s", uc.pool.Addr(), timeout)
			case len(head) == 0 && first:
				return false, &ioError{read: true, err: upstreamBroke(uc.pool, "before responding", err)}
			}
			return false, upstreamBroke(uc.pool, "in the middle of the response head", err)
		}
		// The response head never leaves this exchange: view its bytes
		// as a string without copying. respBuf is not touched again
		// until the next head is read, after the exchange is done with
		// this one.
		s := unsafe.String(unsafe.SliceData(head), len(head))
		resp := &cc.resp
		if err := parseResponse(s, resp); err != nil {
			return false, proxyerr.Wrap(http.StatusBadGateway, err, "upstream %s sent an invalid response: %s", uc.pool.Addr(), err.Error())
		}
		if resp.status >= 200 || resp.status == http.StatusSwitchingProtocols {
			return true, nil
		}
		// Interim response: relay to an HTTP/1.1 client (an HTTP/1.0
		// client must not get one, RFC 9110 section 15.2).
		if req.minor == 1 {
			cc.writeResponseHead(req, resp, false, bodyNone)
			if err := cc.bw.Flush(); err != nil {
				return false, &ioError{err: err}
			}
		}
		if untilContinue && resp.status == http.StatusContinue {
			return false, nil
		}
	}
}

// responseBody decides how the response in cc.resp is delimited.
func responseBody(req *RequestHead, resp *ResponseHead) (kind bodyKind, tunnel bool) {
	switch {
	case resp.status == http.StatusSwitchingProtocols:
		return bodyNone, true
	case req.method == "CONNECT" && resp.status/100 == 2:
		return bodyNone, true
	case req.method == "HEAD", resp.status == http.StatusNoContent, resp.status == http.StatusNotModified:
		return bodyNone, false
	case resp.chunked:
		return bodyChunked, false
	case resp.hasTE:
		return bodyUntilClose, false
	case resp.hasLength && resp.contentLength == 0:
		return bodyNone, false
	case resp.hasLength:
		return bodyLength, false
	}
	return bodyUntilClose, false
}

// relayResponse sends the final response in cc.resp and its body to the
// client.
func (cc *clientConn) relayResponse(req *RequestHead, uc *upstreamConn, bodySent bool) (int, bool, error) {
	resp := &cc.resp
	kind, tunnel := responseBody(req, resp)
	if resp.status == http.StatusSwitchingProtocols && req.upgrade == "" {
		uc.close()
		return cc.answerErr(req, proxyerr.New(http.StatusBadGateway, "upstream %s switched protocols without an upgrade request", uc.pool.Addr()), bodySent)
	}
	if tunnel {
		cc.writeResponseHead(req, resp, true, bodyNone)
		status := resp.status
		if err := cc.bw.Flush(); err != nil {
			uc.close()
			return status, false, err
		}
		return status, false, cc.tunnel(uc)
	}
	status := resp.status
	keepClient := req.keepAlive && bodySent && !cc.isDraining()
	outChunked := kind == bodyChunked && req.minor == 1
	if kind == bodyUntilClose || kind == bodyChunked && !outChunked {
		// No length to give the client: the end of the body is the end
		// of the connection.
		keepClient = false
	}
	cc.writeResponseHead(req, resp, keepClient, kind)
	reuse := bodySent && !resp.close && kind != bodyUntilClose
	_, err := cc.cp.copyBody(cc.bw, uc.br, kind, resp.contentLength, outChunked, DefaultMaxHeaderBytes)
	if err != nil {
		uc.close()
		if isReadErr(err) {
			// The upstream broke mid-body: the head is gone, so the
			// only honest signal left is closing the connection.
			return status, false, upstreamBroke(uc.pool, "in the middle of the response body", err)
		}
		return status, false, err
	}
	if err := cc.bw.Flush(); err != nil {
		keepClient = false
	}
	if !bodySent {
		// Answered before the client sent its body: let the client read
		// the answer before the close resets the connection.
		cc.lingerClose()
	}
	if reuse {
		uc.pool.put(uc)
	} else {
		uc.close()
	}
	return status, keepClient, nil
}

// writeRequestHead writes the request line and the fields to forward:
// hop-by-hop fields are removed (RFC 9110 section 7.6.1), framing is
// re-emitted from the parsed body, and nothing else is added.
func (cc *clientConn) writeRequestHead(bw *bufio.Writer, req *RequestHead) {
	_, _ = bw.WriteString(req.method)
	_ = bw.WriteByte(' ')
	if cc.edit != nil && cc.edit.Target != "" {
		_, _ = bw.WriteString(cc.edit.Target)
	} else {
		_, _ = bw.WriteString(req.target)
	}
	_, _ = bw.WriteString(" HTTP/1.1\r\n")
	for _, f := range req.fields {
		if hopByHop(f.name, req.connTokens) || cc.skipRequestField(f.name) ||
			equalFold(f.name, "Upgrade") ||
			req.minor == 0 && equalFold(f.name, "Expect") {
			continue
		}
		_ = writeField(bw, f.name, f.value)
	}
	if cc.edit != nil {
		if cc.edit.Host != "" && validValue(cc.edit.Host) {
			_ = writeField(bw, "Host", cc.edit.Host)
		}
		cc.edit.Request.write(bw)
	}
	if !req.hasHost && (cc.edit == nil || cc.edit.Host == "") {
		// Forwarded as HTTP/1.1, which requires a Host field; an empty
		// one is what RFC 9112 section 3.2 prescribes when the target
		// names no authority (an HTTP/1.0 client that sent none).
		_, _ = bw.WriteString("Host: \r\n")
	}
	if req.upgrade != "" {
		_, _ = bw.WriteString("Connection: Upgrade\r\n")
		_ = writeField(bw, "Upgrade", req.upgrade)
	}
	if req.teTrailers {
		_, _ = bw.WriteString("TE: trailers\r\n")
	}
	switch req.body {
	case bodyLength:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(appendInt(cc.scratch[:0], req.contentLength))
		_, _ = bw.WriteString("\r\n")
	case bodyChunked:
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

// writeResponseHead writes a response head to the client. For a 101 or an
// interim response keep is ignored; kind is the body as the client will
// see it framed.
func (cc *clientConn) writeResponseHead(req *RequestHead, resp *ResponseHead, keep bool, kind bodyKind) {
	bw := cc.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(appendStatus(cc.scratch[:0], resp.status))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(resp.reason)
	_, _ = bw.WriteString("\r\n")
	upgrade := resp.status == http.StatusSwitchingProtocols
	interim := resp.status < 200 && !upgrade
	noBody := req.method == "HEAD" || resp.status == http.StatusNotModified
	for _, f := range resp.fields {
		if upgrade && equalFold(f.name, "Upgrade") {
			_ = writeField(bw, f.name, f.value)
			continue
		}
		if equalFold(f.name, "Transfer-Encoding") {
			// Chunked stays chunked for an HTTP/1.1 client; a HEAD
			// or 304 answer describes the body it did not send.
			if req.minor == 1 && (kind == bodyChunked || noBody && resp.hasTE) {
				_ = writeField(bw, f.name, f.value)
			}
			continue
		}
		if hopByHop(f.name, resp.connTokens) || equalFold(f.name, "Upgrade") || cc.skipResponseField(resp, f.name) {
			continue
		}
		_ = writeField(bw, f.name, f.value)
	}
	if cc.edit != nil && !interim {
		cc.edit.Response.write(bw)
	}
	if interim {
		_, _ = bw.WriteString("\r\n")
		return
	}
	tunnel := upgrade || req.method == "CONNECT" && resp.status/100 == 2
	if resp.hasLength && !tunnel && resp.status != http.StatusNoContent && (kind == bodyLength || kind == bodyNone) {
		// bodyNone here is HEAD, 304 (the length describes the body
		// not sent) or an empty body, which must keep its
		// "Content-Length: 0" lest the client read until close.
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(appendInt(cc.scratch[:0], resp.contentLength))
		_, _ = bw.WriteString("\r\n")
	}
	switch {
	case upgrade:
		_, _ = bw.WriteString("Connection: Upgrade\r\n")
	case tunnel:
	case !keep:
		_, _ = bw.WriteString("Connection: close\r\n")
	case req.minor == 0:
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

// hopByHop reports whether a field applies to one connection only and is
// not forwarded: the fixed hop-by-hop fields, the framing fields (the proxy
// re-frames every body) and the fields the Connection field lists. Host is
// never dropped even if listed: "Connection: Host" would otherwise strip
// routing information from the forwarded request (hop-by-hop abuse).
func hopByHop(name string, listed []string) bool {
	switch len(name) {
	case 2:
		if equalFold(name, "TE") {
			return true
		}
	case 4:
		if equalFold(name, "Host") {
			return false
		}
	case 10:
		if equalFold(name, "Connection") || equalFold(name, "Keep-Alive") {
			return true
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return true
		}
	case 16:
		if equalFold(name, "Proxy-Connection") {
			return true
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return true
		}
	}
	for _, t := range listed {
		if equalFold(name, t) {
			return true
		}
	}
	return false
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

func appendStatus(b []byte, status int) []byte {
	if status < 100 || status > 999 {
		status = http.StatusBadGateway
	}
	return strconv.AppendInt(b, int64(status), 10)
}
