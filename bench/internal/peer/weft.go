package peer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
)

// EnvWeftProxy names a prebuilt weft-proxy binary to use instead of building ./cmd/weft-proxy.
const EnvWeftProxy = "WEFTBENCH_WEFT_PROXY"

// Weft is a pair of weft-proxy processes with GOMAXPROCS=1, configured by a controller the
// harness runs in its own process (its CA issues the proxies' certificates against join tokens
// the harness writes): A's outbound listener sends to the service "echo.default", whose one
// endpoint is B's inbound listener in front of the echo application.
type Weft struct {
	// MTLS marks the endpoint meshed, so A reaches B over mutual TLS 1.3 with the workloads'
	// certificates; false marks it not meshed, so A sends plain HTTP/1.1 to B's inbound
	// listener (the path to a workload without a proxy, B still in front of the echo).
	MTLS bool
	// Protocol of the service and of both proxies' listeners; empty means HTTP/1.1. With another
	// protocol, Start waits for both proxies' /ready instead of sending an HTTP/1.1 request, and
	// the caller checks the first exchange itself; Pair.URL is then A's host:port.
	Protocol config.Protocol
	// Endpoints, when set, are the service's endpoints instead of B: unmeshed application
	// addresses A balances over itself. B is not started (Pair.B is nil).
	Endpoints []string
}

// Name implements Peer.
func (w Weft) Name() string {
	if w.MTLS {
		return "weft (mTLS)"
	}
	return "weft (plaintext pair)"
}

// Check implements Peer.
func (w Weft) Check() error {
	if p := os.Getenv(EnvWeftProxy); p != "" {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("$%s: %w", EnvWeftProxy, err)
		}
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if m, _ := filepath.Glob(filepath.Join(root, "cmd", "weft-proxy", "*.go")); len(m) == 0 {
		return fmt.Errorf("%s has no Go source yet", filepath.Join(root, "cmd", "weft-proxy"))
	}
	return nil
}

// Version implements Peer.
func (w Weft) Version(ctx context.Context) string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	return "weft-proxy at " + firstLine(ctx, "git", "-C", root, "describe", "--always", "--dirty")
}

// checkInboundTLS reads B's metrics and checks that the requests B received came over mutual
// TLS (wantTLS) or plaintext: weft_requests_total{direction="inbound",tls="true|false"} > 0.
func checkInboundTLS(ctx context.Context, admin string, wantTLS bool) error {
	return CheckInboundTLS(ctx, admin, "weft_requests_total", wantTLS)
}

// CheckInboundTLS reads the metrics of the Weft proxy with admin address admin and checks that
// the counter metric (weft_requests_total, weft_tcp_open_total) is above zero for inbound
// traffic with tls="true" (wantTLS) or tls="false".
//
// Weft's TLS settings are its own (internal/mtls): TLS 1.3 only, X25519 first (then P-256),
// which both proxies share, so the pair agrees on X25519 like every other pair.
func CheckInboundTLS(ctx context.Context, admin, metric string, wantTLS bool) error {
	want := fmt.Sprintf(`tls="%t"`, wantTLS)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("read weft-b metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read weft-b metrics: %w", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, `direction="inbound"`) || !strings.Contains(line, want) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && v > 0 {
			return nil
		}
	}
	return fmt.Errorf("weft-b counted no inbound %s with %s: the pair did not run as configured", metric, want)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// WeftProxyBinary returns the weft-proxy the benchmark runs: $WEFTBENCH_WEFT_PROXY when set,
// else ./cmd/weft-proxy built once per process (CGO_ENABLED=0, -trimpath, -tags grpcnotrace)
// into a temporary directory that RemoveBuilds deletes.
func WeftProxyBinary(ctx context.Context) (string, error) { return weftProxyBinary(ctx) }

// weftProxyBinary builds ./cmd/weft-proxy once per process into a temporary directory.
func weftProxyBinary(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvWeftProxy); p != "" {
		return p, nil
	}
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "weftbench-bin-")
		if err != nil {
			buildErr = fmt.Errorf("create build directory: %w", err)
			return
		}
		buildPath = filepath.Join(dir, "weft-proxy")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "grpcnotrace", "-o", buildPath, "./cmd/weft-proxy") // as weft up and the images build it
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, no libc mapped: 1.5 MiB less RSS (docs/performance.md)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build ./cmd/weft-proxy: %w: %s", err, strings.TrimSpace(string(out)))
		}
	})
	return buildPath, buildErr
}

// RemoveBuilds deletes binaries built by this process; call it once the run is over, never
// while a pair starts. A later Start builds again.
func RemoveBuilds() {
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
	buildOnce, buildPath, buildErr = sync.Once{}, "", nil
}

// moduleRoot finds Weft's source tree from the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the weft module (`go env GOMOD`): %w; run the benchmark from the repository or set $%s", err, EnvWeftProxy)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the weft repository; run the benchmark from it or set $%s", EnvWeftProxy)
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "weft-proxy")); err != nil {
		return "", fmt.Errorf("%s is not the weft repository: %w", root, err)
	}
	return root, nil
}

// Start implements Peer.
func (w Weft) Start(ctx context.Context, env Env) (*Pair, error) {
	bin, err := weftProxyBinary(ctx)
	if err != nil {
		return nil, err
	}
	proto := w.Protocol
	if proto == "" {
		proto = config.ProtocolHTTP1
	}
	var addrs [5]string // A's outbound, B's inbound, A's admin, B's admin, controller's HTTP
	for i := range addrs {
		if addrs[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	portA, portB, adminA, adminB, ctlHTTP := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4]
	_, bPort, _ := net.SplitHostPort(portB)
	bPortN, _ := strconv.ParseUint(bPort, 10, 32)

	store := memory.New(config.DefaultTrustDomain)
	endpoints := []config.Endpoint{{
		Address: portB, Identity: "spiffe://cluster.local/ns/default/sa/echo", Meshed: w.MTLS, Ready: true,
	}}
	if len(w.Endpoints) > 0 {
		endpoints = nil
		for _, addr := range w.Endpoints {
			endpoints = append(endpoints, config.Endpoint{Address: addr, Ready: true})
		}
	}
	store.SetService(config.Service{
		Name: "echo", Namespace: config.DefaultNamespace, Protocol: proto, Endpoints: endpoints,
	})
	// The controller scrapes the proxies' metrics once at start and then hourly
	// (ScrapeInterval below): not during the measurement, a cost the peers do not pay.
	store.SetProxy(config.Proxy{ID: "echo-0", Service: "echo", Namespace: config.DefaultNamespace, AdminAddr: adminB,
		Ports: []config.InboundPort{{Port: uint32(bPortN), Protocol: proto}}})
	store.SetProxy(config.Proxy{ID: "client-0", Service: "client", Namespace: config.DefaultNamespace, AdminAddr: adminA})

	apiToken := make([]byte, 16)
	_, _ = rand.Read(apiToken)
	ctl, err := controller.New(controller.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: ctlHTTP, Token: hex.EncodeToString(apiToken), Store: store,
		Logger: env.Logger.With("peer", w.Name()), ScrapeInterval: time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("weft controller: %w", err)
	}
	// Identity material: the trust anchors and one join token per workload, as weft up writes them.
	anchors := filepath.Join(env.Dir, "trust-anchors.pem")
	if err := os.WriteFile(anchors, ctl.TrustAnchorsPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("write trust anchors: %w", err)
	}
	tokenFile := map[string]string{}
	for _, sa := range []string{"echo", "client"} {
		tok, err := ctl.IssueToken(config.DefaultNamespace, sa)
		if err != nil {
			return nil, fmt.Errorf("join token for %s: %w", sa, err)
		}
		tokenFile[sa] = filepath.Join(env.Dir, sa+".token")
		if err := os.WriteFile(tokenFile[sa], []byte(tok), 0o600); err != nil {
			return nil, fmt.Errorf("write join token: %w", err)
		}
	}
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctl.Run(ctlCtx) }()
	stopController := func() {
		stopCtl()
		if err := <-ctlDone; err != nil && !errors.Is(err, context.Canceled) {
			env.Logger.Warn("weft controller stopped", "err", err)
		}
	}
	select {
	case <-ctl.Ready():
	case err := <-ctlDone:
		stopCtl()
		return nil, fmt.Errorf("weft controller: %w", err)
	case <-time.After(10 * time.Second):
		stopController()
		return nil, errors.New("weft controller not ready after 10s")
	}
	grpcAddr := ctl.GRPCAddr()
	startProxy := func(name, sa string, args []string) func() (*Proc, error) {
		return func() (*Proc, error) {
			common := []string{"--controller", grpcAddr, "--log-level", "error",
				"--trust-anchors", anchors, "--token-file", tokenFile[sa]}
			return StartProc(name, env.Dir, bin, append(common, args...), []string{"GOMAXPROCS=1"})
		}
	}
	startB := startProxy("weft-b", "echo", []string{"--id", "echo-0", "--service", "echo", "--namespace", config.DefaultNamespace,
		"--admin", adminB, "--inbound", portB + "=" + env.Echo + "/" + string(proto)})
	startA := startProxy("weft-a", "client", []string{"--id", "client-0", "--service", "client", "--namespace", config.DefaultNamespace,
		"--admin", adminA, "--outbound", portA + "=echo.default/" + string(proto)})
	if len(w.Endpoints) > 0 || proto != config.ProtocolHTTP1 {
		pair, err := startAdminReady(ctx, portA, portB, adminA, adminB, startB, startA, len(w.Endpoints) == 0)
		if err != nil {
			stopController()
			return nil, err
		}
		pair.Plaintext = !w.MTLS
		pair.cleanup = stopController
		return pair, nil
	}
	pair, err := startPair(ctx, "http://"+portA+"/", portB, startB, startA)
	if err != nil {
		stopController()
		return nil, err
	}
	// B's inbound listener accepts plaintext from unmeshed clients under the default policy, so
	// VerifyMutualTLS does not apply; B's own metrics say how the start-up request arrived.
	pair.Plaintext = true
	if err := checkInboundTLS(ctx, adminB, w.MTLS); err != nil {
		_ = pair.Stop()
		stopController()
		return nil, err
	}
	pair.cleanup = stopController
	return pair, nil
}

// startAdminReady starts B (when withB) and A and waits until their admin servers answer /ready
// with 200: for pairs the HTTP/1.1 probe of startPair cannot check.
func startAdminReady(ctx context.Context, portA, portB, adminA, adminB string, startB, startA func() (*Proc, error), withB bool) (*Pair, error) {
	pair := &Pair{URL: portA, BAddr: portB, BAdmin: adminB}
	admins := []string{adminA}
	if withB {
		b, err := startB()
		if err != nil {
			return nil, err
		}
		pair.B = b
		admins = append(admins, adminB)
	}
	a, err := startA()
	if err != nil {
		_ = pair.Stop()
		return nil, err
	}
	pair.A = a
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for _, admin := range admins {
		for {
			for _, p := range []*Proc{pair.A, pair.B} {
				if p != nil && p.Exited() {
					_ = pair.Stop()
					return nil, fmt.Errorf("%s exited during start-up: %v; log %s ends with: %s", p.Name, p.err, p.Log, p.Tail())
				}
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/ready", nil)
			if err != nil {
				_ = pair.Stop()
				return nil, err
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				_ = pair.Stop()
				return nil, fmt.Errorf("weft proxy with admin %s not ready after 20s (last error: %v); see the logs in %s", admin, err, filepath.Dir(pair.A.Log))
			}
			select {
			case <-ctx.Done():
				_ = pair.Stop()
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return pair, nil
}
