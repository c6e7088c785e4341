package peer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
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
// harness runs in its own process: A's outbound listener sends to the service "echo.default",
// whose one endpoint is B's inbound listener in front of the echo application.
type Weft struct {
	// MTLS selects TLS 1.3 with workload certificates between the proxies; false runs the pair
	// over the plaintext proxy-to-proxy transport.
	MTLS bool
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
	if w.MTLS {
		return errors.New("mutual TLS between weft proxies is not wired into the benchmark yet")
	}
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

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

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
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", buildPath, "./cmd/weft-proxy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build ./cmd/weft-proxy: %w: %s", err, strings.TrimSpace(string(out)))
		}
	})
	return buildPath, buildErr
}

// RemoveBuilds deletes binaries built by this process; call it once the run is over.
func RemoveBuilds() {
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
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
	store.SetService(config.Service{
		Name: "echo", Namespace: config.DefaultNamespace, Protocol: config.ProtocolHTTP1,
		Endpoints: []config.Endpoint{{
			Address: portB, Identity: "spiffe://cluster.local/ns/default/sa/echo", Meshed: true, Ready: true,
		}},
	})
	// The controller scrapes the proxies' metrics once at start and then hourly
	// (ScrapeInterval below): not during the measurement, a cost the peers do not pay.
	store.SetProxy(config.Proxy{ID: "echo-0", Service: "echo", Namespace: config.DefaultNamespace, AdminAddr: adminB,
		Ports: []config.InboundPort{{Port: uint32(bPortN), Protocol: config.ProtocolHTTP1}}})
	store.SetProxy(config.Proxy{ID: "client-0", Service: "client", Namespace: config.DefaultNamespace, AdminAddr: adminA})

	token := make([]byte, 16)
	_, _ = rand.Read(token)
	ctl, err := controller.New(controller.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: ctlHTTP, Token: hex.EncodeToString(token), Store: store,
		Logger: env.Logger.With("peer", w.Name()), ScrapeInterval: time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("weft controller: %w", err)
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
	startProxy := func(name string, args []string) func() (*Proc, error) {
		return func() (*Proc, error) {
			return StartProc(name, env.Dir, bin, append([]string{"--controller", grpcAddr, "--log-level", "error"}, args...), []string{"GOMAXPROCS=1"})
		}
	}
	pair, err := startPair(ctx, "http://"+portA+"/", portB,
		startProxy("weft-b", []string{"--id", "echo-0", "--service", "echo", "--namespace", config.DefaultNamespace,
			"--admin", adminB, "--inbound", portB + "=" + env.Echo + "/http"}),
		startProxy("weft-a", []string{"--id", "client-0", "--service", "client", "--namespace", config.DefaultNamespace,
			"--admin", adminA, "--outbound", portA + "=echo.default/http"}))
	if err != nil {
		stopController()
		return nil, err
	}
	pair.Plaintext = !w.MTLS
	pair.cleanup = stopController
	return pair, nil
}
