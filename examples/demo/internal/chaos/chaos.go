// Package chaos injects failures and latency into the demo programs so that
// the mesh's retries, timeouts and circuit breaking have something to act on.
//
// A Config comes from the --fail-rate, --latency and --latency-jitter flags
// (see RegisterFlags); an Injector built from it wraps an http.Handler
// (Injector.HTTP) or a gRPC server (Injector.UnaryInterceptor,
// Injector.StreamInterceptor). Health checks are never failed nor delayed, so
// a faulty workload stays in the mesh and the faults stay visible.
//
// Only the demo programs under examples/demo may import it. An Injector is
// safe for concurrent use; a Config is a plain value.
package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config says how much to break a program. The zero value injects nothing.
type Config struct {
	// FailRate is the fraction of requests answered with a failure, from 0
	// (none, the default) to 1 (all): HTTP 500, or gRPC UNAVAILABLE.
	FailRate float64
	// Latency is added before every request is handled (default 0: none).
	Latency time.Duration
	// Jitter adds a further delay drawn uniformly from [0, Jitter) to every
	// request (default 0: none).
	Jitter time.Duration
}

// RegisterFlags binds --fail-rate, --latency and --latency-jitter to c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Float64Var(&c.FailRate, "fail-rate", c.FailRate,
		"fraction of requests (0..1) answered with HTTP 500 / gRPC UNAVAILABLE")
	fs.DurationVar(&c.Latency, "latency", c.Latency, "delay added to every request, e.g. 50ms")
	fs.DurationVar(&c.Jitter, "latency-jitter", c.Jitter,
		"extra random delay, uniform in [0, jitter), added to every request")
}

// Validate reports a flag value out of range, naming the flag.
func (c Config) Validate() error {
	var errs []error
	if c.FailRate < 0 || c.FailRate > 1 || c.FailRate != c.FailRate {
		errs = append(errs, fmt.Errorf("--fail-rate %v is out of range: give a fraction from 0 to 1", c.FailRate))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("--latency %v is negative: give a duration such as 50ms", c.Latency))
	}
	if c.Jitter < 0 {
		errs = append(errs, fmt.Errorf("--latency-jitter %v is negative: give a duration such as 20ms", c.Jitter))
	}
	return errors.Join(errs...)
}

// Injector applies a Config to requests.
type Injector struct {
	cfg Config
}

// New returns an Injector for cfg; cfg should have passed Validate.
func New(cfg Config) *Injector {
	return &Injector{cfg: cfg}
}

// Config returns the configuration the Injector applies.
func (in *Injector) Config() Config { return in.cfg }

// Delay waits for the configured latency plus jitter, or until ctx ends, in
// which case it returns ctx's error.
func (in *Injector) Delay(ctx context.Context) error {
	d := in.cfg.Latency
	if in.cfg.Jitter > 0 {
		d += rand.N(in.cfg.Jitter)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fail reports whether the current request should fail. A rate of 0 never
// fails and a rate of 1 always does.
func (in *Injector) Fail() bool {
	switch {
	case in.cfg.FailRate <= 0:
		return false
	case in.cfg.FailRate >= 1:
		return true
	default:
		return rand.Float64() < in.cfg.FailRate
	}
}

// Header marks a response whose failure was injected, so that a reader of
// the mesh's metrics or a curl user can tell it from a real fault.
const Header = "Demo-Injected-Failure"

// HTTP wraps next: every request except GET /healthz is delayed, and a
// fraction of them is answered 500 without reaching next.
func (in *Injector) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if err := in.Delay(r.Context()); err != nil {
			// The client went away while we were delaying; nobody reads this.
			http.Error(w, "request canceled during injected latency", http.StatusServiceUnavailable)
			return
		}
		if in.Fail() {
			w.Header().Set(Header, "true")
			http.Error(w, fmt.Sprintf("injected failure (--fail-rate %v)", in.cfg.FailRate),
				http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// exempt reports whether a gRPC method is left alone: the standard health
// and reflection services.
func exempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// inject delays and perhaps fails one gRPC call.
func (in *Injector) inject(ctx context.Context, fullMethod string) error {
	if exempt(fullMethod) {
		return nil
	}
	if err := in.Delay(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	if in.Fail() {
		return status.Errorf(codes.Unavailable, "injected failure (--fail-rate %v)", in.cfg.FailRate)
	}
	return nil
}

// UnaryInterceptor delays unary calls and fails a fraction of them with
// UNAVAILABLE, except health checks.
func (in *Injector) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := in.inject(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor delays streams before their handler runs and fails a
// fraction of them with UNAVAILABLE, except health watches.
func (in *Injector) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := in.inject(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
