// Package proxyerr is the error the proxy answers with when it, rather than
// the application, fails a request: no endpoints, connection refused, a
// timeout. Every such answer says why, in the Header and in the body, so a
// user debugging a 502/503 sees the proxy's reason instead of guessing.
//
// Values are immutable; any proxy package may import proxyerr.
package proxyerr

import (
	"errors"
	"fmt"
	"net/http"
)

// Header carries the reason on every response the proxy makes itself.
const Header = "Weft-Proxy-Error"

// Error is a failure the proxy answers itself.
type Error struct {
	// Status is the HTTP status to answer with (502, 503, 504, 403...).
	Status int
	// Reason is a short sentence for the header and the body, e.g.
	// "no endpoints for api.default".
	Reason string
	// Err is the underlying cause, if any.
	Err error
	// GRPCStatus, if not 0, is the grpc-status a gRPC client gets instead
	// of UNAVAILABLE (e.g. RESOURCE_EXHAUSTED for a rate limit).
	GRPCStatus int
	// RetryAfter, if not 0, is sent as the Retry-After header, in seconds
	// (a 429 or 503 the client may try again after).
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted reason.
func New(status int, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with status and reason caused by err.
func Wrap(status int, err error, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...), Err: err}
}

// From returns err as an *Error; an error of another kind becomes a 502.
func From(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Status: http.StatusBadGateway, Reason: "proxy error", Err: err}
}

// Body is the plain-text body of the proxy's answer.
func (e *Error) Body() string { return e.Error() + "\n" }
