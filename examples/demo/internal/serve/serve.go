// Package serve runs the demo's HTTP and gRPC servers until their context
// ends, then stops them gracefully: in-flight requests finish (up to a grace
// period), new ones are refused. It also derives the default listen address
// from the PORT variable that `weft up` sets for each workload.
//
// Only the demo programs under examples/demo may import it. Its functions
// are safe to call concurrently for different servers.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
)

// Grace is how long a server waits for in-flight requests on shutdown before
// closing their connections.
const Grace = 10 * time.Second

// DefaultListen returns "127.0.0.1:$PORT" when the environment sets PORT (as
// `weft up` does), else "127.0.0.1:"+fallbackPort.
func DefaultListen(fallbackPort string) string {
	if p := os.Getenv("PORT"); p != "" {
		return net.JoinHostPort("127.0.0.1", p)
	}
	return net.JoinHostPort("127.0.0.1", fallbackPort)
}

// EnvURL returns "http://"+$name when the environment sets name (as `weft up`
// sets WEFT_<SERVICE>_ADDR for each service a workload calls), else "".
func EnvURL(name string) string {
	if a := os.Getenv(name); a != "" {
		return "http://" + a
	}
	return ""
}

// HTTP serves srv on ln until ctx ends, then shuts it down, waiting up to
// Grace for in-flight requests. It returns nil after a clean shutdown and
// the serve error otherwise. srv.BaseContext is left as the caller set it.
func HTTP(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving HTTP", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", Grace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), Grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("grace period over, closing remaining connections")
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP on %s: %w", ln.Addr(), serr)
	}
	if err != nil {
		return fmt.Errorf("shut down HTTP server: %w", err)
	}
	log.Info("stopped")
	return nil
}

// GRPC serves srv on ln until ctx ends, then stops it gracefully, waiting up
// to Grace for in-flight calls and streams before cutting them off.
func GRPC(ctx context.Context, log *slog.Logger, srv *grpc.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving gRPC", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve gRPC on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", Grace.String())
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(Grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		log.Warn("grace period over, closing remaining streams")
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC on %s: %w", ln.Addr(), err)
	}
	log.Info("stopped")
	return nil
}
