// Package role lets the benchmark harness run its own helper processes (the echo application
// and the Go ReverseProxy peer) by re-executing its binary: the harness sets EnvRole and the
// other variables below, and the binary's main (or a test's TestMain) calls Main before anything
// else.
//
// Only the benchmark harness and its test import role.
package role

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/bench/internal/controlplane"
	"weft.dev/weft/bench/internal/echo"
	"weft.dev/weft/bench/internal/goproxy"
	"weft.dev/weft/bench/internal/pki"
	"weft.dev/weft/bench/internal/proxyservices"
)

// Environment variables read by a re-executed helper process.
const (
	EnvRole     = "WEFTBENCH_ROLE"     // "echo", "goproxy-client", "goproxy-server", "controller" or "services-controller"
	EnvListen   = "WEFTBENCH_LISTEN"   // host:port to accept on
	EnvUpstream = "WEFTBENCH_UPSTREAM" // host:port to forward to (goproxy roles)
	EnvPKIDir   = "WEFTBENCH_PKI_DIR"  // directory written by pki.Generate (goproxy roles)
	EnvMode     = "WEFTBENCH_MODE"     // goproxy roles: "" (HTTP/1.1), "h2" or "tcp"
)

// Roles the harness starts.
const (
	Echo          = "echo"
	GoProxyClient = "goproxy-client"
	GoProxyServer = "goproxy-server"
	GoRoundRobin  = "goproxy-round-robin"
)

// Main runs the role named by EnvRole until SIGTERM or SIGINT and exits the process. It returns
// at once, doing nothing, when EnvRole is unset.
func Main() {
	name := os.Getenv(EnvRole)
	if name == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, name)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "weftbench %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run(ctx context.Context, name string) error {
	listen := os.Getenv(EnvListen)
	switch name {
	case Echo:
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", listen, err)
		}
		return echo.Serve(ctx, ln)
	case controlplane.Role:
		return controlplane.ServeController(ctx, os.Stdin, os.Stdout)
	case proxyservices.Role:
		return proxyservices.ServeController(ctx, os.Stdin, os.Stdout)
	case GoProxyClient, GoProxyServer, GoRoundRobin:
		side := goproxy.Client
		switch name {
		case GoProxyServer:
			side = goproxy.Server
		case GoRoundRobin:
			side = goproxy.RoundRobin
		}
		return goproxy.Run(ctx, goproxy.Config{
			Side:     side,
			Listen:   listen,
			Upstream: os.Getenv(EnvUpstream),
			PKI:      pki.InDir(os.Getenv(EnvPKIDir)),
			Mode:     goproxy.Mode(os.Getenv(EnvMode)),
		})
	}
	return fmt.Errorf("unknown role %q (want %s, %s, %s, %s, %s or %s)", name, Echo, GoProxyClient, GoProxyServer, GoRoundRobin, controlplane.Role, proxyservices.Role)
}
