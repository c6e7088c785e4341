package http1

import (
	"errors"
	"io"
	"net/http"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// This file lets a Route send a request again on another route after a
// failed attempt. Without Route.Retry nothing here runs and the exchange
// path is unchanged.

// Retry asks for failed attempts to be sent again.
type Retry struct {
	// MaxBodyBytes is the largest request body (with a Content-Length)
	// buffered so it can be sent again; 0 means 64 KiB. A larger,
	// chunked or "Expect: 100-continue" body is streamed, and its
	// request is retried only when its connect failed (no byte read).
	MaxBodyBytes int64
	// Again is called when attempt n (1-based) ended as a says, before
	// anything of it is relayed to the client. It returns the route of
	// attempt n+1 (waiting for a backoff first is its business), or
	// false to relay the attempt's answer (or failure) as it is. It is
	// called for every response head read, so it must return fast when
	// the status is not retried.
	Again func(n int, a Attempt) (Route, bool)
}

// Attempt is how one attempt ended.
type Attempt struct {
	// Status of the upstream's response head; 0 when none came.
	Status int
	// Err is the proxy's failure when no response came.
	Err error
	// Reached is false when the request surely never reached the
	// application: the connect failed.
	Reached bool
	// TimedOut is true when the route's Timeout passed before the
	// response head came.
	TimedOut bool
}

// ErrRetried is the error (wrapped) given to the Done of an attempt that
// was abandoned for another: it is not the request's outcome.
var ErrRetried = errors.New("attempt retried")

// errHeld marks an attempt abandoned for a retry, internally.
var errHeld = errors.New("attempt held for a retry")

// tryState is the retry bookkeeping of the request in flight.
type tryState struct {
	retry     *Retry
	n         int
	reached   bool  // the current attempt's connection was opened
	streaming bool  // the body is streamed from the client, not buffered
	next      Route // the route of the next attempt, when held
	status    int   // status of a held attempt, for its Done
	err       error // failure of a held attempt, for its Done
}

// hold decides on a failed or answered attempt; true means it is
// abandoned and t.next is the next route.
func (t *tryState) hold(a Attempt) bool {
	if t.streaming && t.reached {
		return false // the body is consumed: never send it again
	}
	next, ok := t.retry.Again(t.n, a)
	if !ok {
		return false
	}
	t.next, t.status, t.err = next, a.Status, a.Err
	return true
}

// holdErr is the hook of answerErr.
func (cc *clientConn) holdErr(err error) bool {
	t := cc.try
	if t == nil {
		return false
	}
	pe := proxyerr.From(err)
	return t.hold(Attempt{Err: err, Reached: t.reached, TimedOut: t.reached && pe.Status == http.StatusGatewayTimeout})
}

// forwardRetry forwards req, sending it again as route.Retry decides. It
// leaves in *route the route of the last attempt, whose Done the caller
// calls; the Done of every abandoned attempt is called here.
func (cc *clientConn) forwardRetry(req *RequestHead, route *Route) (int, bool, error) {
	r := route.Retry
	t := &tryState{retry: r}
	limit := r.MaxBodyBytes
	if limit <= 0 {
		limit = 64 << 10
	}
	switch {
	case req.body == bodyNone:
	case req.body == bodyLength && req.contentLength <= limit && !req.expectContinue && req.upgrade == "" && req.method != "CONNECT":
		if int64(cc.br.Buffered()) < req.contentLength {
			cc.clearDeadline()
		}
		if int64(cap(cc.reqBody)) < req.contentLength {
			cc.reqBody = make([]byte, req.contentLength)
		}
		cc.reqBody = cc.reqBody[:req.contentLength]
		if _, err := io.ReadFull(cc.br, cc.reqBody); err != nil {
			// The client went away or stalled mid-body.
			return 0, false, &ioError{read: true, err: err}
		}
		cc.buffered = true
	default:
		t.streaming = true
	}
	defer func() {
		cc.try, cc.buffered = nil, false
		if cap(cc.reqBody) > maxKeptHeadBuf*4 {
			cc.reqBody = nil
		}
	}()
	cc.try = t
	for {
		t.n++
		t.reached = false
		status, keep, err := cc.forward(req, route)
		if err != errHeld {
			return status, keep, err
		}
		if route.Done != nil {
			cause := t.err
			if cause == nil {
				cause = errors.New("status " + http.StatusText(t.status))
			}
			route.Done(t.status, errors.Join(ErrRetried, cause))
		}
		*route = t.next
		t.next = Route{}
	}
}
