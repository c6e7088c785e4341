package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/capture/ports"
	"weft.dev/weft/internal/proxy/transport"
)

// Config is the proxy's whole configuration, as the flags give it.
type Config struct {
	// ID is unique per proxy instance ("web-0", a pod name); required.
	ID string
	// Service is the workload's service name; required.
	Service string
	// Namespace of the workload; default "default".
	Namespace string
	// Version of the workload, informational.
	Version string
	// Controller is the controller's gRPC host:port; required.
	Controller string
	// Admin is the admin server's host:port; default 127.0.0.1:4191.
	Admin string
	// Inbound are the application ports behind the proxy.
	Inbound []InboundSpec
	// Outbound are the destinations the workload calls.
	Outbound []OutboundSpec
	// InboundCapture, if set, is the listen address of the inbound
	// capture ("0.0.0.0:4143"): connections iptables redirected there
	// (`weft-proxy init`) are served as an inbound listener for the
	// application at 127.0.0.1:P, P their original destination port.
	InboundCapture string
	// OutboundCapture, if set, is the listen address of the outbound
	// capture ("127.0.0.1:4140"): connections the workload opened,
	// redirected there, are forwarded to their original destination as
	// the controller resolves it, else passed through unchanged.
	OutboundCapture string
	// OpaquePorts are ports whose captured connections are opaque TCP
	// without detection: inbound by application port, outbound by
	// destination port.
	OpaquePorts ports.List
	// DetectTimeout bounds protocol detection; default 500ms.
	DetectTimeout time.Duration
	// DrainTimeout bounds the graceful drain; default 10s.
	DrainTimeout time.Duration
	// Transport carries proxy-to-proxy connections; nil means mutual TLS
	// with the proxy's certificate (what weft-proxy always uses).
	Transport transport.Transport
	// TrustAnchors is the mesh's trust anchor bundle, PEM; required. The
	// controller and every peer proxy are verified against it.
	TrustAnchors []byte
	// Token is the workload's proof of identity (a join token); TokenFile,
	// if set instead, is read before every certificate request, so a
	// rotated token is picked up. One of them is required.
	Token     string
	TokenFile string
	// TrustDomain of the mesh; default "cluster.local".
	TrustDomain string
	// ServiceAccount the workload runs as; default Service. The proxy's
	// certificate must name spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>.
	ServiceAccount string
	// ConfigWait is how long an outbound request waits for its
	// destination's first snapshot; default 5s.
	ConfigWait time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// DefaultAdmin is the admin server's default address.
const DefaultAdmin = "127.0.0.1:4191"

// InboundSpec is one --inbound LISTEN=APP[/PROTO].
type InboundSpec struct {
	Listen   string
	App      string
	Protocol config.Protocol
}

func (s InboundSpec) String() string { return specString(s.Listen, s.App, s.Protocol) }

// OutboundSpec is one --outbound LISTEN=AUTHORITY[/PROTO].
type OutboundSpec struct {
	Listen    string
	Authority string
	Protocol  config.Protocol
}

func (s OutboundSpec) String() string { return specString(s.Listen, s.Authority, s.Protocol) }

func specString(listen, to string, p config.Protocol) string {
	if p == config.ProtocolDetect {
		return listen + "=" + to
	}
	return listen + "=" + to + "/" + string(p)
}

// ParseInbound parses LISTEN=APP[/PROTO], e.g.
// "127.0.0.1:14001=127.0.0.1:14000/grpc".
func ParseInbound(s string) (InboundSpec, error) {
	listen, app, p, err := parseSpec(s, "APP", "127.0.0.1:14001=127.0.0.1:14000")
	if err != nil {
		return InboundSpec{}, err
	}
	if _, _, err := net.SplitHostPort(app); err != nil {
		return InboundSpec{}, fmt.Errorf("inbound %q: application address %q is not host:port", s, app)
	}
	return InboundSpec{Listen: listen, App: app, Protocol: p}, nil
}

// ParseOutbound parses LISTEN=AUTHORITY[/PROTO], e.g. "127.0.0.1:15001=api".
func ParseOutbound(s string) (OutboundSpec, error) {
	listen, authority, p, err := parseSpec(s, "AUTHORITY", "127.0.0.1:15001=api")
	if err != nil {
		return OutboundSpec{}, err
	}
	return OutboundSpec{Listen: listen, Authority: authority, Protocol: p}, nil
}

func parseSpec(s, what, example string) (listen, to string, p config.Protocol, err error) {
	listen, rest, ok := strings.Cut(s, "=")
	if !ok || listen == "" || rest == "" {
		return "", "", "", fmt.Errorf("%q: want LISTEN=%s[/PROTO], e.g. %s", s, what, example)
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return "", "", "", fmt.Errorf("%q: listen address %q is not host:port", s, listen)
	}
	to, proto, _ := strings.Cut(rest, "/")
	if to == "" {
		return "", "", "", fmt.Errorf("%q: empty %s", s, what)
	}
	p, err = config.ParseProtocol(proto)
	if err != nil {
		return "", "", "", fmt.Errorf("%q: %w", s, err)
	}
	return listen, to, p, nil
}

// validate fills defaults and checks cfg.
func (cfg *Config) validate() error {
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("--id is required: a name unique to this proxy, e.g. web-0"))
	}
	if cfg.Service == "" {
		errs = append(errs, errors.New("--service is required: the service this workload serves, e.g. web"))
	}
	if cfg.Controller == "" {
		errs = append(errs, errors.New("--controller is required: the controller's gRPC host:port"))
	} else if _, _, err := net.SplitHostPort(cfg.Controller); err != nil {
		errs = append(errs, fmt.Errorf("--controller %q is not host:port", cfg.Controller))
	}
	if cfg.Namespace == "" {
		cfg.Namespace = config.DefaultNamespace
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = config.DefaultTrustDomain
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = cfg.Service
	}
	if len(cfg.TrustAnchors) == 0 {
		errs = append(errs, errors.New("--trust-anchors is required: the mesh's trust anchor PEM file (weft up writes it to its state directory)"))
	}
	if cfg.Token == "" && cfg.TokenFile == "" {
		errs = append(errs, errors.New("--token-file is required: the file holding this workload's join token (weft up writes one per proxy)"))
	}
	if cfg.Admin == "" {
		cfg.Admin = DefaultAdmin
	}
	if _, _, err := net.SplitHostPort(cfg.Admin); err != nil {
		errs = append(errs, fmt.Errorf("--admin %q is not host:port", cfg.Admin))
	}
	if cfg.DetectTimeout < 0 || cfg.DrainTimeout < 0 {
		errs = append(errs, errors.New("--detect-timeout and --drain-timeout must not be negative"))
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	for flag, addr := range map[string]string{"--inbound-capture": cfg.InboundCapture, "--outbound-capture": cfg.OutboundCapture} {
		if addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" || port == "" {
			errs = append(errs, fmt.Errorf("%s %q: want host:port with a fixed port (the one `weft-proxy init` redirects to), e.g. 0.0.0.0:4143", flag, addr))
		}
	}
	seen := map[string]bool{cfg.Admin: true}
	for _, l := range cfg.listenAddrs() {
		if seen[l] && !strings.HasSuffix(l, ":0") {
			errs = append(errs, fmt.Errorf("listen address %s is used twice", l))
		}
		seen[l] = true
	}
	return errors.Join(errs...)
}

func (cfg *Config) listenAddrs() []string {
	var out []string
	for _, in := range cfg.Inbound {
		out = append(out, in.Listen)
	}
	for _, o := range cfg.Outbound {
		out = append(out, o.Listen)
	}
	for _, a := range []string{cfg.InboundCapture, cfg.OutboundCapture} {
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}
