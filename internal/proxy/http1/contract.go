package http1

import (
	"context"
	"net"
	"time"
)

// This file is the contract between the HTTP/1.1 path and the rest of the
// proxy (outbound and inbound listeners). Its shapes are relied on by
// internal/proxy/outbound and internal/proxy/inbound.

// Router chooses where each request goes. It is called once per request,
// after the request head is parsed and validated and before any byte is sent
// upstream. Implementations are safe for concurrent use and do not block.
type Router interface {
	// Route returns the upstream for the request. An error that is a
	// *proxyerr.Error is answered with its status, the proxyerr.Header and
	// its reason as the body; any other error is answered 502.
	Route(req *RequestHead) (Route, error)
}

// Route is the routing decision for one request.
type Route struct {
	// Upstream is the pool of connections to the chosen endpoint.
	Upstream *Pool
	// Done, if not nil, is called exactly once when the exchange ends:
	// status is the response status sent to the client (0 if none was
	// sent), err the failure if any. It feeds balancing and metrics.
	Done func(status int, err error)
	// Timeout, if not 0, bounds the wait for the response head once the
	// request has been sent; when it passes the client gets a 504 and
	// the upstream connection is closed. 0 means no limit.
	Timeout time.Duration
	// TimeoutReason, if not "", is the reason of the 504 answered when
	// Timeout passes (e.g. the route whose timeout it is).
	TimeoutReason string
	// Edit, if not nil, changes the forwarded request and the relayed
	// response (edit.go).
	Edit *Edit
	// Answer, if not nil, is sent to the client instead of forwarding;
	// Upstream is then not used.
	Answer *Answer
	// MirrorBody, if not nil, receives a copy of the request body (a
	// route's mirror): a body with a Content-Length of at most
	// MaxMirrorBody is read whole before it is forwarded and given to
	// MirrorBody, which must not keep the slice; a bodiless request gives
	// nil. Larger, chunked or 100-continue bodies are streamed and
	// MirrorBody is not called. It may be called once per attempt.
	MirrorBody func(body []byte)
	// Retry, if not nil, lets failed attempts be sent again (retry.go);
	// each attempt has its own Route, and each attempt's Done is called.
	Retry *Retry
}

// Dialer opens a new connection to an upstream endpoint. For a meshed
// endpoint it returns a connection on the proxy-to-proxy transport, ready
// to carry HTTP/1.1.
type Dialer func(ctx context.Context) (net.Conn, error)

// PoolConfig tunes a Pool. Zero values take the defaults noted.
type PoolConfig struct {
	// Addr is the endpoint's host:port, for error messages and logs.
	Addr string
	// Dial opens connections; required.
	Dial Dialer
	// MaxIdle is the number of idle connections kept; default 64.
	MaxIdle int
	// IdleTimeout closes connections idle for longer; default 90s.
	IdleTimeout time.Duration
	// ConnectTimeout bounds Dial; default 3s.
	ConnectTimeout time.Duration
}
