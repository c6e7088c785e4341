// Command weft-proxy is Weft's sidecar proxy: it forwards the traffic of
// one workload (inbound to the application, outbound to the services it
// calls) as the controller configures it. See internal/proxy/sidecar.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"weft.dev/weft/internal/proxy/capture/ports"
	"weft.dev/weft/internal/proxy/detect"
	"weft.dev/weft/internal/proxy/sidecar"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		err := initCommand(context.Background(), os.Args[2:], os.Stdout, os.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "weft-proxy init: %v\n", err)
			if _, ok := errors.AsType[*runError](err); ok {
				os.Exit(1)
			}
			os.Exit(2)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-proxy: %v\nRun weft-proxy --help for usage.\n", err)
		os.Exit(2)
	}
	setGCPercent()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal drains; a second one kills at once.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "weft-proxy: %v\n", err)
		os.Exit(1)
	}
}

// defaultGCPercent is the proxy's GOGC unless $GOGC says otherwise. The
// proxy's live heap is about 1 MB, so the runtime's 4 MB minimum heap goal
// at the default 100 kept 2 MiB more resident under load than 50 does (at
// 2,000 rps: 17.7 -> 15.7 MiB), for about one more collection of a 1 MB
// heap per 2,000 requests (docs/performance.md).
const defaultGCPercent = 50

// setGCPercent applies defaultGCPercent when $GOGC is not set.
func setGCPercent() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func run(ctx context.Context, cfg sidecar.Config) error {
	s, err := sidecar.New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseFlags turns the command line into a Config, including a logger.
func parseFlags(args []string, stderr io.Writer) (sidecar.Config, error) {
	var cfg sidecar.Config
	var inbound, outbound listFlag
	var logLevel, logFormat, anchorsFile, opaque string
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.ID, "id", "", "unique id of this proxy, e.g. web-0 (required)")
	fs.StringVar(&cfg.Service, "service", "", "service the workload serves, e.g. web (required)")
	fs.StringVar(&cfg.Namespace, "namespace", "default", "namespace of the workload")
	fs.StringVar(&cfg.Version, "version", "", "version of the workload, e.g. v2")
	fs.StringVar(&cfg.Controller, "controller", "", "controller gRPC address host:port (required)")
	fs.StringVar(&cfg.Admin, "admin", sidecar.DefaultAdmin, "admin server address host:port (/metrics, /live, /ready, /status)")
	fs.Var(&inbound, "inbound", "LISTEN=APP[/PROTO]: forward LISTEN to the application at APP (repeatable), e.g. 127.0.0.1:14001=127.0.0.1:14000/grpc")
	fs.Var(&outbound, "outbound", "LISTEN=AUTHORITY[/PROTO]: forward LISTEN to a service (repeatable), e.g. 127.0.0.1:15001=api")
	fs.StringVar(&cfg.InboundCapture, "inbound-capture", "", "host:port where iptables redirects incoming connections (weft-proxy init --inbound-port), e.g. 0.0.0.0:4143; each is served for the application at 127.0.0.1:<original port>")
	fs.StringVar(&cfg.OutboundCapture, "outbound-capture", "", "host:port where iptables redirects the workload's outgoing connections (weft-proxy init --outbound-port), e.g. 127.0.0.1:4140")
	fs.StringVar(&opaque, "opaque-ports", "", "ports whose captured connections are opaque TCP without protocol detection, e.g. 3306,6000-6002")
	fs.StringVar(&anchorsFile, "trust-anchors", "", "PEM file of the mesh's trust anchors; the controller and peer proxies are verified against it (required)")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "file holding this workload's join token, its proof of identity to the controller (required)")
	fs.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "trust domain of the mesh's SPIFFE IDs")
	fs.StringVar(&cfg.ServiceAccount, "service-account", "", "service account of the workload (default: --service); the certificate names spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT")
	fs.DurationVar(&cfg.DetectTimeout, "detect-timeout", detect.DefaultTimeout, "how long to wait for a client's first bytes before treating it as opaque TCP")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "how long requests in flight may take to finish on shutdown")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (all options are flags)", fs.Arg(0))
	}
	for _, v := range inbound {
		spec, err := sidecar.ParseInbound(v)
		if err != nil {
			return cfg, fmt.Errorf("--inbound %w", err)
		}
		cfg.Inbound = append(cfg.Inbound, spec)
	}
	for _, v := range outbound {
		spec, err := sidecar.ParseOutbound(v)
		if err != nil {
			return cfg, fmt.Errorf("--outbound %w", err)
		}
		cfg.Outbound = append(cfg.Outbound, spec)
	}
	opaquePorts, err := ports.Parse("--opaque-ports", opaque)
	if err != nil {
		return cfg, err
	}
	cfg.OpaquePorts = opaquePorts
	if anchorsFile != "" {
		pem, err := os.ReadFile(anchorsFile)
		if err != nil {
			return cfg, fmt.Errorf("--trust-anchors: %w", err)
		}
		cfg.TrustAnchors = pem
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return cfg, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	// Required flags and addresses are checked here so a bad command line
	// exits 2 before anything starts.
	if _, err := sidecar.New(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}
