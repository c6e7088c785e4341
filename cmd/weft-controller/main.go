// Command weft-controller runs Weft's control plane: the proxy API, the
// CLI's HTTP API and the metrics scraper, over an in-memory configuration
// optionally seeded from a file of documents.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
)

type options struct {
	grpcAddr, httpAddr string
	tokenFile          string
	configFile         string
	defaultInbound     string
	logLevel           slog.Level
}

func main() {
	var o options
	flag.StringVar(&o.grpcAddr, "grpc-addr", controller.DefaultGRPCAddr, "listen address of the proxy API (gRPC)")
	flag.StringVar(&o.httpAddr, "http-addr", controller.DefaultHTTPAddr, "listen address of the CLI's HTTP API")
	flag.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the HTTP API requires (required)")
	flag.StringVar(&o.configFile, "config", "", "YAML file of documents applied at start; a Mesh document in it registers its services")
	flag.StringVar(&o.defaultInbound, "default-inbound-policy", "all-unauthenticated", "the mesh's default inbound policy where no InboundPolicyDefault or Server decides: all-unauthenticated, all-authenticated, deny or audit")
	flag.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "weft-controller: unexpected arguments %q; see -help\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-controller: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	if o.tokenFile == "" {
		return errors.New("--token-file is required: give a file holding the bearer token of the HTTP API")
	}
	data, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("read --token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return fmt.Errorf("--token-file %s is empty: write the bearer token into it", o.tokenFile)
	}
	store := memory.New("")
	if o.configFile != "" {
		if err := seed(store, o.configFile); err != nil {
			return err
		}
	}
	c, err := controller.New(controller.Config{GRPCAddr: o.grpcAddr, HTTPAddr: o.httpAddr, Token: token, Store: store, Logger: log,
		DefaultInboundPolicy: o.defaultInbound})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// seed registers the services of the file's Mesh (without endpoints) and
// applies its other documents.
func seed(store *memory.Store, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read --config: %w", err)
	}
	mesh, rs, err := file.Load(data)
	if err != nil {
		return fmt.Errorf("--config %s:\n%w", path, err)
	}
	if mesh != nil {
		for _, svc := range mesh.Services() {
			store.SetService(svc)
		}
	}
	if len(rs) > 0 {
		if _, err := store.Apply(rs); err != nil {
			return fmt.Errorf("--config %s:\n%w", path, err)
		}
	}
	return nil
}
