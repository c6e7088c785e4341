// Command load is the demo's load generator: it requests the front end's
// page (--target) and, when --api is given, the API directly with a mix of
// GET and POST requests, at --rps requests per second. It logs a one-line
// summary (rate, success, latency percentiles, API versions seen) every
// --report-interval and a total at the end. It runs for --duration, or
// until --count requests have been sent, or until SIGTERM or SIGINT, and
// exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"weft.dev/weft/examples/demo/internal/serve"
)

type config struct {
	target      string
	api         string
	rps         float64
	duration    time.Duration
	count       int
	timeout     time.Duration
	report      time.Duration
	concurrency int
	// header is added to every request (--header NAME:VALUE, repeatable).
	header http.Header
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(out)
	target := serve.EnvURL("WEFT_WEB_ADDR")
	if target != "" {
		target += "/"
	}
	fs.StringVar(&c.target, "target", target, "URL of the front end page to request (default http://$WEFT_WEB_ADDR/; empty: none)")
	fs.StringVar(&c.api, "api", serve.EnvURL("WEFT_API_ADDR"), "base URL of the API to request directly (default http://$WEFT_API_ADDR; empty: none)")
	c.header = http.Header{}
	var badHeaders []string
	fs.Func("header", "header NAME:VALUE added to every request, e.g. x-canary:true (repeatable)", func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			badHeaders = append(badHeaders, v)
			return nil
		}
		c.header.Add(name, strings.TrimSpace(value))
		return nil
	})
	fs.Float64Var(&c.rps, "rps", 5, "requests per second, over all targets")
	fs.DurationVar(&c.duration, "duration", 0, "how long to run (0: until SIGTERM or SIGINT)")
	fs.IntVar(&c.count, "count", 0, "stop after this many requests (0: no limit)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of each request")
	fs.DurationVar(&c.report, "report-interval", 10*time.Second, "how often to log a summary")
	fs.IntVar(&c.concurrency, "concurrency", 100, "most requests in flight; a tick beyond it is skipped and counted")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q: load takes flags only (see --help)", fs.Args()))
	}
	for _, h := range badHeaders {
		errs = append(errs, fmt.Errorf("--header %q is not NAME:VALUE, e.g. x-canary:true", h))
	}
	if c.target == "" && c.api == "" {
		errs = append(errs, errors.New("nothing to load: give --target URL and/or --api URL, or set WEFT_WEB_ADDR / WEFT_API_ADDR"))
	}
	for _, f := range []struct{ name, v string }{{"target", c.target}, {"api", c.api}} {
		if u, err := url.Parse(f.v); f.v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			errs = append(errs, fmt.Errorf("--%s %q is not an http:// URL, e.g. http://127.0.0.1:8000/", f.name, f.v))
		}
	}
	if !(c.rps > 0 && c.rps <= 100000) {
		errs = append(errs, fmt.Errorf("--rps %v is out of range: give a rate above 0 and at most 100000", c.rps))
	}
	if c.duration < 0 {
		errs = append(errs, fmt.Errorf("--duration %v is negative: give 0 to run until stopped", c.duration))
	}
	if c.count < 0 {
		errs = append(errs, fmt.Errorf("--count %d is negative: give 0 for no limit", c.count))
	}
	if c.timeout <= 0 || c.report <= 0 {
		errs = append(errs, errors.New("--timeout and --report-interval must be positive durations, e.g. 10s"))
	}
	if c.concurrency <= 0 {
		errs = append(errs, fmt.Errorf("--concurrency %d must be at least 1", c.concurrency))
	}
	return c, errors.Join(errs...)
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("program", "load")
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Error("invalid command line", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	run(ctx, cfg, log)
	stop()
}

func run(ctx context.Context, cfg config, log *slog.Logger) {
	transport := &http.Transport{MaxIdleConnsPerHost: cfg.concurrency, IdleConnTimeout: 90 * time.Second}
	defer transport.CloseIdleConnections()
	log.Info("starting", "target", cfg.target, "api", cfg.api, "rps", cfg.rps, "duration", cfg.duration, "count", cfg.count)
	newGenerator(cfg, &http.Client{Transport: transport}, log).Run(ctx)
}
