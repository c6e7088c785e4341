// Package goproxy is the naive Go peer of the benchmark: one side of a pair of
// net/http/httputil.ReverseProxy instances. The client side accepts plain HTTP/1.1 and forwards
// over TLS 1.3 with a client certificate on pooled keep-alive connections; the server side
// terminates that TLS, requires and verifies the client certificate, and forwards in plain
// HTTP/1.1 to the application. In mode ModeH2 the same pair speaks HTTP/2 (h2c in, h2 over TLS
// between the pair, h2c to the application; gRPC included); in mode ModeTCP it is a TCP relay
// (io.Copy each way) with the same TLS between the pair.
//
// Only the benchmark harness imports goproxy; it runs in a process of its own with GOMAXPROCS=1.
package goproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"weft.dev/weft/bench/internal/pki"
)

// Side says which end of the pair a process is.
type Side string

// The two ends of a pair.
const (
	Client Side = "client" // plain in, TLS out
	Server Side = "server" // TLS in, plain out
	// RoundRobin is plain in, plain out to every address of Upstream (comma-separated) in turn:
	// the round-robin baseline of the balancer scenario.
	RoundRobin Side = "round-robin"
)

// Config is one side of the pair.
type Config struct {
	Side Side
	// Listen is host:port to accept on.
	Listen string
	// Upstream is host:port to forward to: the server side of the pair (Client) or the
	// application (Server).
	Upstream string
	// PKI holds the certificates of the run.
	PKI pki.Files
	// Mode is what the pair carries: HTTP/1.1 (empty), ModeH2 or ModeTCP.
	Mode Mode
}

// Mode is what a pair carries.
type Mode string

// The modes other than HTTP/1.1.
const (
	ModeH2  Mode = "h2"  // HTTP/2 and gRPC
	ModeTCP Mode = "tcp" // bytes
)

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	switch cfg.Mode {
	case "":
	case ModeH2:
		return runH2(ctx, cfg)
	case ModeTCP:
		return runRelay(ctx, cfg)
	default:
		return fmt.Errorf("unknown mode %q (want empty, h2 or tcp)", cfg.Mode)
	}
	target := &url.URL{Scheme: "http", Host: cfg.Upstream}
	tr := &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     5 * time.Minute,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	var srvTLS *tls.Config
	switch cfg.Side {
	case Client:
		target.Scheme = "https"
		c, err := cfg.PKI.ClientTLS()
		if err != nil {
			return err
		}
		tr.TLSClientConfig = c
	case RoundRobin:
	case Server:
		s, err := cfg.PKI.ServerTLS()
		if err != nil {
			return err
		}
		srvTLS = s
	default:
		return fmt.Errorf("unknown side %q (want client or server)", cfg.Side)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	if cfg.Side == RoundRobin {
		upstreams := strings.Split(cfg.Upstream, ",")
		var next atomic.Uint64
		rp = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: upstreams[(next.Add(1)-1)%uint64(len(upstreams))]})
		}}
	}
	rp.Transport = tr
	rp.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		// A non-nil empty map keeps the server on HTTP/1.1, the protocol every pair speaks.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if srvTLS != nil {
		ln = tls.NewListener(ln, srvTLS)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", cfg.Listen, serr)
	}
	tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", cfg.Listen, err)
	}
	return nil
}
