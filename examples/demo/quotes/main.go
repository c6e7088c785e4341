// Command quotes is the demo's gRPC backend: it serves the
// demo.quotes.v1.Quotes service (GetQuote, StreamQuotes) and the standard
// grpc.health.v1 service on --listen, failing and delaying calls as
// --fail-rate, --latency and --latency-jitter ask. It stops gracefully on
// SIGTERM or SIGINT and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/quotes"
	"weft.dev/weft/examples/demo/internal/serve"
)

type config struct {
	listen string
	chaos  chaos.Config
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("quotes", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.listen, "listen", serve.DefaultListen("9000"), "address to serve gRPC on (default from $PORT)")
	c.chaos.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q: quotes takes flags only (see --help)", fs.Args())
	}
	return c, c.chaos.Validate()
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("program", "quotes")
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
		log.Error("quotes stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s (change --listen or $PORT): %w", cfg.listen, err)
	}
	log.Info("starting", "fail_rate", cfg.chaos.FailRate, "latency", cfg.chaos.Latency, "latency_jitter", cfg.chaos.Jitter)
	return serve.GRPC(ctx, log, quotes.NewGRPCServer(ctx, chaos.New(cfg.chaos)), ln)
}
