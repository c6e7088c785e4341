// Command api is the demo's HTTP/JSON API: a book catalogue (GET and POST
// /api/books, GET /api/books/{id}) and GET /api/quote, which calls the gRPC
// quotes service at --quotes. Every answer names the API's --version (v1 or
// v2; v2 also shows ratings) so that canary splits are visible. It fails and
// delays requests as --fail-rate, --latency and --latency-jitter ask, and
// stops gracefully on SIGTERM or SIGINT, exiting 0.
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"weft.dev/weft/examples/demo/internal/bookapi"
	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/serve"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

type config struct {
	listen       string
	version      string
	quotes       string
	quoteTimeout time.Duration
	chaos        chaos.Config
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.listen, "listen", serve.DefaultListen("8001"), "address to serve HTTP on (default from $PORT)")
	fs.StringVar(&c.version, "version", bookapi.V1, "API version to present: v1, or v2 (adds ratings)")
	fs.StringVar(&c.quotes, "quotes", os.Getenv("WEFT_QUOTES_ADDR"), "host:port of the gRPC quotes service (default $WEFT_QUOTES_ADDR; empty: /api/quote answers 503)")
	fs.DurationVar(&c.quoteTimeout, "quote-timeout", 2*time.Second, "timeout of each call to the quotes service")
	c.chaos.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q: api takes flags only (see --help)", fs.Args()))
	}
	if c.version != bookapi.V1 && c.version != bookapi.V2 {
		errs = append(errs, fmt.Errorf("--version %q is unknown: choose v1 or v2", c.version))
	}
	if c.quoteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--quote-timeout %v must be positive, e.g. 2s", c.quoteTimeout))
	}
	errs = append(errs, c.chaos.Validate())
	return c, errors.Join(errs...)
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("program", "api")
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Error("invalid command line", "err", err)
		os.Exit(2)
	}
	log = log.With("version", cfg.version)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("api stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	var qc quotespb.QuotesClient
	if cfg.quotes != "" {
		// Plaintext on purpose: the mesh's proxies encrypt between workloads.
		conn, err := grpc.NewClient(cfg.quotes, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("quotes client for %q (check --quotes): %w", cfg.quotes, err)
		}
		defer conn.Close()
		qc = quotespb.NewQuotesClient(conn)
	} else {
		log.Warn("no quotes service: GET /api/quote will answer 503; set --quotes or WEFT_QUOTES_ADDR")
	}
	api, err := bookapi.New(bookapi.Config{Version: cfg.version, Quotes: qc, QuoteTimeout: cfg.quoteTimeout, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s (change --listen or $PORT): %w", cfg.listen, err)
	}
	log.Info("starting", "quotes", cfg.quotes, "fail_rate", cfg.chaos.FailRate,
		"latency", cfg.chaos.Latency, "latency_jitter", cfg.chaos.Jitter)
	srv := &http.Server{
		Handler:           chaos.New(cfg.chaos).HTTP(api),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return serve.HTTP(ctx, log, srv, ln)
}
