// Command weft-controller runs Weft's control plane: the proxy API and the
// certificate authority (gRPC over TLS), the CLI's HTTP API and the metrics
// scraper, over an in-memory configuration optionally seeded from a file of
// documents (--source=local) or over the Kubernetes API (--source=kubernetes,
// kube.go: informers, TokenReview, the injection webhook, the trust anchors
// copied into every namespace by the leader of --leader-elect).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
	"weft.dev/weft/internal/control/identity"
)

type options struct {
	source             string
	kube               kubeOptions
	grpcAddr, httpAddr string
	tokenFile          string
	configFile         string
	defaultInbound     string
	logLevel           slog.Level

	anchors, issuerCert, issuerKey string
	trustDomain                    string
	certLifetime                   time.Duration
	anchorsOut, joinTokenDir       string
}

func main() {
	var o options
	fs := newFlagSet(&o)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "weft-controller: unexpected arguments %q; see -help\n", fs.Args())
		os.Exit(2)
	}
	controller.SetGCPercent()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-controller: %v\n", err)
		os.Exit(1)
	}
}

// newFlagSet registers every flag of weft-controller into o.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("weft-controller", flag.ContinueOnError)
	fs.StringVar(&o.source, "source", "local", "configuration source: local (in memory, --config, the HTTP API's apply) or kubernetes (the API server's objects)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", controller.DefaultGRPCAddr, "listen address of the proxy API (gRPC)")
	fs.StringVar(&o.httpAddr, "http-addr", controller.DefaultHTTPAddr, "listen address of the CLI's HTTP API")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the HTTP API requires (required)")
	fs.StringVar(&o.configFile, "config", "", "YAML file of documents applied at start; a Mesh document in it registers its services")
	fs.StringVar(&o.defaultInbound, "default-inbound-policy", "all-unauthenticated", "the mesh's default inbound policy where no InboundPolicyDefault or Server decides: all-unauthenticated, all-authenticated, deny or audit")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.StringVar(&o.anchors, "identity-trust-anchors", "", "PEM file of the mesh's trust anchors (with --identity-issuer-cert and --identity-issuer-key; default: generated in memory)")
	fs.StringVar(&o.issuerCert, "identity-issuer-cert", "", "PEM file of the issuer certificate that signs workload certificates")
	fs.StringVar(&o.issuerKey, "identity-issuer-key", "", "PEM file of the issuer's private key")
	fs.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "trust domain of the mesh's SPIFFE IDs")
	fs.DurationVar(&o.certLifetime, "cert-lifetime", 24*time.Hour, "lifetime of workload certificates (renewed at 70%)")
	fs.StringVar(&o.anchorsOut, "write-trust-anchors", "", "write the trust anchors proxies need (--trust-anchors) to this file")
	fs.StringVar(&o.joinTokenDir, "join-token-dir", "", "directory of join tokens, one file SERVICE.NAMESPACE.token (0600) per service of --config, created if missing")
	kubeFlags(fs, &o.kube)
	return fs
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
	if o.source == "kubernetes" {
		return runKube(ctx, o, token, log)
	}
	if o.source != "local" {
		return fmt.Errorf("--source %q: want local or kubernetes", o.source)
	}
	store := memory.New("")
	if o.configFile != "" {
		if err := seed(store, o.configFile); err != nil {
			return err
		}
	}
	var issuer *identity.Issuer
	switch countSet(o.anchors, o.issuerCert, o.issuerKey) {
	case 3:
		if issuer, err = identity.LoadIssuerFiles(o.anchors, o.issuerCert, o.issuerKey); err != nil {
			return fmt.Errorf("--identity-*: %w", err)
		}
	case 0:
		log.Warn("no --identity-* files: trust anchor and issuer generated in memory; proxies need the anchors from --write-trust-anchors, new ones after every restart")
	default:
		return errors.New("give all of --identity-trust-anchors, --identity-issuer-cert and --identity-issuer-key, or none")
	}
	c, err := controller.New(controller.Config{GRPCAddr: o.grpcAddr, HTTPAddr: o.httpAddr, Token: token, Store: store, Logger: log,
		DefaultInboundPolicy: o.defaultInbound,
		Issuer:               issuer, TrustDomain: o.trustDomain, CertLifetime: o.certLifetime})
	if err != nil {
		return err
	}
	if o.anchorsOut != "" {
		if err := os.WriteFile(o.anchorsOut, c.TrustAnchorsPEM(), 0o644); err != nil {
			return fmt.Errorf("--write-trust-anchors: %w", err)
		}
	}
	if o.joinTokenDir != "" {
		if err := joinTokens(c, store, o.joinTokenDir); err != nil {
			return fmt.Errorf("--join-token-dir: %w", err)
		}
	}
	return c.Run(ctx)
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// joinTokens makes sure every service of the store has a join token file
// in dir, and registers the tokens found there.
func joinTokens(c *controller.Controller, store *memory.Store, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, svc := range store.Snapshot().Services {
		id := identity.Identity{TrustDomain: c.CA().TrustDomain(), Namespace: svc.Namespace, ServiceAccount: svc.Name}
		path := filepath.Join(dir, svc.Name+"."+svc.Namespace+".token")
		if b, err := os.ReadFile(path); err == nil {
			if err := c.Tokens().Register(strings.TrimSpace(string(b)), id); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			continue
		}
		tok, err := c.Tokens().Issue(id)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
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
