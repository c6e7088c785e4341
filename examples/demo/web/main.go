// Command web is the demo's front end: GET / serves an HTML page showing a
// quote and the book list, both fetched from the demo API at --api, and
// naming the API version that answered each (visible during a canary split).
// GET /healthz answers 200. It fails and delays requests as --fail-rate,
// --latency and --latency-jitter ask, and stops gracefully on SIGTERM or
// SIGINT, exiting 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/serve"
)

type config struct {
	listen  string
	api     string
	timeout time.Duration
	chaos   chaos.Config
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.listen, "listen", serve.DefaultListen("8000"), "address to serve HTTP on (default from $PORT)")
	fs.StringVar(&c.api, "api", serve.EnvURL("WEFT_API_ADDR"), "base URL of the demo API (default http://$WEFT_API_ADDR)")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Second, "timeout of the API calls behind one page")
	c.chaos.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q: web takes flags only (see --help)", fs.Args()))
	}
	if c.api == "" {
		errs = append(errs, errors.New("no API address: give --api URL or set WEFT_API_ADDR"))
	} else if u, err := url.Parse(c.api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--api %q is not an http:// URL, e.g. http://127.0.0.1:8001", c.api))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v must be positive, e.g. 3s", c.timeout))
	}
	errs = append(errs, c.chaos.Validate())
	return c, errors.Join(errs...)
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("program", "web")
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Error("invalid command line", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("web stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	api, err := url.Parse(cfg.api)
	if err != nil {
		return fmt.Errorf("parse --api %q: %w", cfg.api, err)
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s (change --listen or $PORT): %w", cfg.listen, err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	log.Info("starting", "api", cfg.api, "fail_rate", cfg.chaos.FailRate,
		"latency", cfg.chaos.Latency, "latency_jitter", cfg.chaos.Jitter)
	srv := &http.Server{
		Handler:           chaos.New(cfg.chaos).HTTP(newFrontend(api, client, cfg.timeout, ln.Addr().String(), log)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return serve.HTTP(ctx, log, srv, ln)
}
