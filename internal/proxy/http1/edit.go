package http1

import (
	"bufio"
	"io"
	"net/http"
)

// Edit changes what the proxy forwards and relays for one request: the
// request-target, the Host field and header fields of the request, and
// header fields of the final response (route filters: Gateway API header
// modifiers and URL rewrite). Names match case-insensitively. An Edit is
// read-only once given in a Route and may be shared by many requests.
type Edit struct {
	// Target, if not "", replaces the request-target (path and query).
	Target string
	// Host, if not "", replaces the Host field.
	Host string
	// Request edits the request's header fields.
	Request HeaderEdit
	// Response edits the final response's header fields (not 1xx).
	Response HeaderEdit
}

// HeaderEdit sets, adds and removes header fields. Set replaces every
// field of its name; Add appends a field; Remove drops every field of the
// name. Framing and hop-by-hop fields (Content-Length, Transfer-Encoding,
// Connection, Host) are never edited by Set, Add or Remove.
type HeaderEdit struct {
	Set    []HeaderField
	Add    []HeaderField
	Remove []string
}

// HeaderField is one header field.
type HeaderField struct {
	Name, Value string
}

// Answer is a response the proxy gives itself instead of forwarding (a
// redirect). The body is empty.
type Answer struct {
	Status int
	Header []HeaderField
}

// drops reports whether a received field named name is not forwarded
// because the edit sets or removes it.
func (e *HeaderEdit) drops(name string) bool {
	for i := range e.Set {
		if equalFold(e.Set[i].Name, name) {
			return true
		}
	}
	for _, r := range e.Remove {
		if equalFold(r, name) {
			return true
		}
	}
	return false
}

// protected fields are the proxy's to write.
func protected(name string) bool {
	return equalFold(name, "Content-Length") || equalFold(name, "Transfer-Encoding") ||
		equalFold(name, "Connection") || equalFold(name, "Host") || equalFold(name, "Upgrade")
}

// write writes the fields the edit sets and adds.
func (e *HeaderEdit) write(bw *bufio.Writer) {
	for _, f := range e.Set {
		if !protected(f.Name) && validValue(f.Value) && isToken(f.Name) {
			_ = writeField(bw, f.Name, f.Value)
		}
	}
	for _, f := range e.Add {
		if !protected(f.Name) && validValue(f.Value) && isToken(f.Name) {
			_ = writeField(bw, f.Name, f.Value)
		}
	}
}

// skipRequestField reports whether the edit in force drops a request
// field.
func (cc *clientConn) skipRequestField(name string) bool {
	e := cc.edit
	return e != nil && (e.Host != "" && equalFold(name, "Host") || !protected(name) && e.Request.drops(name))
}

// skipResponseField reports whether the edit in force drops a field of a
// final response.
func (cc *clientConn) skipResponseField(resp *ResponseHead, name string) bool {
	e := cc.edit
	return e != nil && resp.status >= 200 && !protected(name) && e.Response.drops(name)
}

// answerDirect answers a route's Answer without forwarding. The request
// body, if any, is not read: the connection closes after the answer.
func (cc *clientConn) answerDirect(req *RequestHead, a *Answer) (int, bool, error) {
	keep := cc.canKeepWithoutBody(req) && !cc.isDraining()
	bw := cc.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(appendStatus(cc.scratch[:0], a.Status))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(a.Status))
	_, _ = bw.WriteString("\r\n")
	for _, f := range a.Header {
		if !protected(f.Name) && validValue(f.Value) && isToken(f.Name) {
			_ = writeField(bw, f.Name, f.Value)
		}
	}
	_, _ = bw.WriteString("Content-Length: 0\r\n")
	if !keep {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return a.Status, false, err
	}
	if !keep && req.body != bodyNone {
		cc.lingerClose()
	}
	return a.Status, keep, nil
}

// MaxMirrorBody is the largest request body given to Route.MirrorBody.
const MaxMirrorBody = 64 << 10

// mirrorBody hands a copy of req's body to fn when it is small enough,
// reading it first unless a retry already buffered it. It returns what to
// run once the exchange is done (nil: nothing), or the client's read
// failure.
func (cc *clientConn) mirrorBody(req *RequestHead, fn func([]byte)) (func(), error) {
	switch {
	case req.body == bodyNone:
		fn(nil)
		return nil, nil
	case cc.buffered:
		fn(cc.reqBody)
		return nil, nil
	case cc.try != nil:
		// A retry streams this body: reading it here would leave later
		// attempts without it.
		return nil, nil
	case req.body != bodyLength || req.contentLength > MaxMirrorBody || req.expectContinue || req.upgrade != "" || req.method == "CONNECT":
		return nil, nil
	}
	if int64(cc.br.Buffered()) < req.contentLength {
		cc.clearDeadline()
	}
	if int64(cap(cc.reqBody)) < req.contentLength {
		cc.reqBody = make([]byte, req.contentLength)
	}
	cc.reqBody = cc.reqBody[:req.contentLength]
	if _, err := io.ReadFull(cc.br, cc.reqBody); err != nil {
		// The client went away or stalled mid-body.
		return nil, &ioError{read: true, err: err}
	}
	cc.buffered = true
	fn(cc.reqBody)
	return func() { cc.buffered = false }, nil
}
