// Package echo is the application behind every proxy pair of the benchmark: an HTTP/1.1 server
// that answers a request with a body by sending the same bytes back, and a request without a
// body with ResponseSize bytes. Echoing lets the load generator check every byte that crossed
// both proxies.
//
// Only the benchmark harness imports echo. Handler is safe for concurrent use.
package echo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ResponseSize is the body size answered to a request without a body.
const ResponseSize = 1024

var (
	fixed   = bytes.Repeat([]byte("x"), ResponseSize)
	bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// maxBody bounds what the echo server reads from one request.
const maxBody = 1 << 20

// Handler echoes the request body, or answers ResponseSize bytes when there is none.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf := bytes.NewBuffer((*bp)[:0])
		if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxBody)); err != nil {
			http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		body := buf.Bytes()
		*bp = body[:0]
		if len(body) == 0 {
			body = fixed
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// Serve answers on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("echo server: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("echo server: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("echo server shutdown: %w", err)
	}
	return nil
}
