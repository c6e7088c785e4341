package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"weft.dev/weft/internal/proxy/proxyerr"
)

// This file lets a Target send a request again on another target after a
// failed attempt. Without Target.Retry nothing here runs.

// Retry asks for failed attempts to be sent again.
type Retry struct {
	// MaxBodyBytes is the largest request body buffered so it can be
	// sent again; 0 means 64 KiB. A larger body is streamed and its
	// request never retried.
	MaxBodyBytes int64
	// PerTryTimeout bounds each attempt's wait for the response head;
	// 0 means none. When it passes the attempt ends as TimedOut.
	PerTryTimeout time.Duration
	// Again is called when attempt n (1-based) ended as a says, before
	// anything of it is relayed. It returns the target of attempt n+1
	// (waiting for a backoff first is its business), or false to relay
	// the attempt's answer or failure. It is called for every response
	// head, so it must return fast when nothing is retried.
	Again func(n int, a Attempt) (Target, bool)
}

// Attempt is how one attempt ended.
type Attempt struct {
	// Status of the response head; 0 when none came.
	Status int
	// GRPCStatus of a trailers-only response (grpc-status in the head);
	// -1 when none.
	GRPCStatus int
	// Err is the failure when no response came.
	Err error
	// Reached is false when the request surely never reached the
	// application: the connect failed.
	Reached bool
	// TimedOut is true when PerTryTimeout passed.
	TimedOut bool
}

// ErrRetried is the error (wrapped) given to the Done of an attempt that
// was abandoned for another.
var ErrRetried = errors.New("attempt retried")

const defaultMaxBody = 64 << 10

// roundTripRetry sends out as t.Retry decides, leaving in *t the target of
// the last attempt (whose Done the caller calls).
func (s *Server) roundTripRetry(r, out *http.Request, t *Target) (*http.Response, error) {
	rt := t.Retry
	limit := rt.MaxBodyBytes
	if limit <= 0 {
		limit = defaultMaxBody
	}
	var body []byte
	if out.Body != nil && out.Body != http.NoBody {
		if r.ContentLength > limit {
			return t.Transport.RoundTrip(out)
		}
		buf, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(buf)) > limit {
			// Too large to keep: stream the rest, never retry.
			out.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(buf), out.Body), out.Body}
			return t.Transport.RoundTrip(out)
		}
		body = buf
	}
	for n := 1; ; n++ {
		ctx, cancel := context.WithCancel(r.Context())
		var timer *time.Timer
		if rt.PerTryTimeout > 0 {
			timer = time.AfterFunc(rt.PerTryTimeout, cancel)
		}
		req := out.Clone(ctx)
		u := *out.URL
		u.Host = t.Addr
		req.URL = &u
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		resp, err := t.Transport.RoundTrip(req)
		fired := timer != nil && !timer.Stop()
		var a Attempt
		if err != nil {
			cancel()
			if r.Context().Err() != nil {
				return nil, err
			}
			var de *dialError
			a = Attempt{Err: err, GRPCStatus: -1, Reached: !errors.As(err, &de), TimedOut: fired}
			if fired {
				err = proxyerr.Wrap(http.StatusGatewayTimeout, err, "upstream %s did not respond within %s", t.Addr, rt.PerTryTimeout)
				a.Err = err
			}
		} else {
			a = Attempt{Status: resp.StatusCode, GRPCStatus: -1, Reached: true}
			if v := resp.Header.Get("Grpc-Status"); v != "" {
				if c, perr := strconv.Atoi(v); perr == nil {
					a.GRPCStatus = c
				}
			}
		}
		next, ok := rt.Again(n, a)
		if !ok {
			if err != nil {
				cancel()
				return nil, err
			}
			resp.Body = cancelBody{resp.Body, cancel}
			return resp, nil
		}
		cause := a.Err
		if resp != nil {
			resp.Body.Close()
			cause = errors.New("status " + strconv.Itoa(a.Status))
		}
		cancel()
		if t.Done != nil {
			t.Done(Result{Status: a.Status, GRPCStatus: a.GRPCStatus, Err: errors.Join(ErrRetried, cause)})
		}
		*t = next
	}
}

// cancelBody ends an attempt's context when its response body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
