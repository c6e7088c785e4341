package peer

import (
	"context"
	"path/filepath"
	"runtime"

	"weft.dev/weft/bench/internal/role"
)

// GoProxy is a pair of net/http/httputil.ReverseProxy processes (package goproxy), run by
// re-executing the harness with GOMAXPROCS=1.
type GoProxy struct{}

// Name implements Peer.
func (GoProxy) Name() string { return "go-reverseproxy" }

// Check implements Peer.
func (GoProxy) Check() error { return nil }

// Version implements Peer.
func (GoProxy) Version(context.Context) string { return "net/http/httputil " + runtime.Version() }

// Start implements Peer.
func (GoProxy) Start(ctx context.Context, env Env) (*Pair, error) {
	portA, err := FreePort()
	if err != nil {
		return nil, err
	}
	portB, err := FreePort()
	if err != nil {
		return nil, err
	}
	return startPair(ctx, "http://"+portA+"/", portB,
		GoProxy{}.starter(env, "goproxy-b", "server", portB, env.Echo, ""),
		GoProxy{}.starter(env, "goproxy-a", "client", portA, portB, ""))
}

// starter returns a function that starts one side ("client" or "server") of the Go pair in
// mode ("" for HTTP/1.1, "h2" or "tcp"; see package goproxy).
func (GoProxy) starter(env Env, name, side, listen, upstream, mode string) func() (*Proc, error) {
	r := role.GoProxyClient
	if side == "server" {
		r = role.GoProxyServer
	}
	return func() (*Proc, error) {
		return StartProc(name, env.Dir, env.Self, nil, []string{
			"GOMAXPROCS=1", role.EnvRole + "=" + r, role.EnvListen + "=" + listen,
			role.EnvUpstream + "=" + upstream, role.EnvPKIDir + "=" + filepath.Dir(env.PKI.CA),
			role.EnvMode + "=" + mode,
		})
	}
}
