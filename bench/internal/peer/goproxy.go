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
	start := func(name, r, listen, upstream string) func() (*Proc, error) {
		return func() (*Proc, error) {
			return StartProc(name, env.Dir, env.Self, nil, []string{
				"GOMAXPROCS=1", role.EnvRole + "=" + r, role.EnvListen + "=" + listen,
				role.EnvUpstream + "=" + upstream, role.EnvPKIDir + "=" + filepath.Dir(env.PKI.CA),
			})
		}
	}
	return startPair(ctx, "http://"+portA+"/", portB,
		start("goproxy-b", role.GoProxyServer, portB, env.Echo),
		start("goproxy-a", role.GoProxyClient, portA, portB))
}
