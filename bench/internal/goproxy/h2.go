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
	"sync"
	"time"
)

// runH2 serves one side of the HTTP/2 pair until ctx ends: the client side accepts h2c and
// forwards over TLS with ALPN h2 on one pooled connection, the server side accepts that TLS and
// forwards in h2c. Responses are flushed at once, so gRPC streams pass message by message.
func runH2(ctx context.Context, cfg Config) error {
	target := &url.URL{Scheme: "http", Host: cfg.Upstream}
	var out http.Protocols
	tr := &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     5 * time.Minute,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		Protocols:           &out,
	}
	var in http.Protocols
	var srvTLS *tls.Config
	switch cfg.Side {
	case Client:
		c, err := cfg.PKI.ClientTLS()
		if err != nil {
			return err
		}
		c.NextProtos = []string{"h2"}
		tr.TLSClientConfig = c
		target.Scheme = "https"
		out.SetHTTP2(true)
		in.SetUnencryptedHTTP2(true)
	case Server:
		s, err := cfg.PKI.ServerTLS()
		if err != nil {
			return err
		}
		s.NextProtos = []string{"h2"}
		srvTLS = s
		out.SetUnencryptedHTTP2(true)
		in.SetHTTP2(true)
	default:
		return fmt.Errorf("unknown side %q (want client or server)", cfg.Side)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = tr
	rp.FlushInterval = -1
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
		Protocols:         &in,
		TLSConfig:         srvTLS,
	}
	errc := make(chan error, 1)
	go func() {
		if srvTLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	return serveUntil(ctx, cfg.Listen, srv, errc, tr)
}

// serveUntil waits for ctx to end (or the server to fail), then shuts the server down.
func serveUntil(ctx context.Context, listen string, srv *http.Server, errc chan error, tr *http.Transport) error {
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", listen, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", listen, serr)
	}
	tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", listen, err)
	}
	return nil
}

// runRelay serves one side of the TCP pair until ctx ends: every accepted connection gets one
// upstream connection (TLS with the client certificate from the client side; plain from the
// server side, which accepts only TLS with a verified client certificate), and bytes are copied
// each way until both directions closed.
func runRelay(ctx context.Context, cfg Config) error {
	var dial func(ctx context.Context) (net.Conn, error)
	d := &net.Dialer{Timeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	switch cfg.Side {
	case Client:
		c, err := cfg.PKI.ClientTLS()
		if err != nil {
			ln.Close()
			return err
		}
		c.NextProtos = nil
		td := &tls.Dialer{NetDialer: d, Config: c}
		dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", cfg.Upstream) }
	case Server:
		s, err := cfg.PKI.ServerTLS()
		if err != nil {
			ln.Close()
			return err
		}
		s.NextProtos = nil
		ln = tls.NewListener(ln, s)
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", cfg.Upstream) }
	default:
		ln.Close()
		return fmt.Errorf("unknown side %q (want client or server)", cfg.Side)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", cfg.Listen, err)
		}
		track(c, true)
		wg.Go(func() {
			defer track(c, false)
			defer c.Close()
			if tc, ok := c.(*tls.Conn); ok {
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := tc.HandshakeContext(hctx)
				cancel()
				if err != nil {
					return
				}
			}
			up, err := dial(ctx)
			if err != nil {
				return
			}
			track(up, true)
			defer track(up, false)
			defer up.Close()
			var copies sync.WaitGroup
			copies.Go(func() { copyThenCloseWrite(up, c) })
			copyThenCloseWrite(c, up)
			copies.Wait()
		})
	}
}

// copyThenCloseWrite copies src to dst and then half-closes dst, so the far end sees the end of
// the stream while the other direction continues.
func copyThenCloseWrite(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = dst.Close()
}
