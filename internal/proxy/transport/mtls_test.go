package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/transport"
)

type accepted struct {
	acc   transport.Accepted
	err   error
	first string
}

// serve accepts one connection on a new listener with tr and reports what
// Accept made of it and the first bytes read after it.
func serve(t *testing.T, tr transport.Transport) (string, <-chan accepted) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			out <- accepted{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
		acc, err := tr.Accept(c, time.Now().Add(5*time.Second))
		if err != nil {
			out <- accepted{acc: acc, err: err}
			return
		}
		b := make([]byte, 4)
		_, rerr := io.ReadFull(acc.Conn, b)
		if rerr == nil {
			_, _ = acc.Conn.Write([]byte("pong"))
		}
		out <- accepted{acc: acc, first: string(b)}
	}()
	return ln.Addr().String(), out
}

func TestMTLSDialAccept(t *testing.T) {
	pki := identitytest.New(t, 0)
	api := transport.NewMTLS(pki.Leaf(t, "api"), pki.Bundle(t))
	web := transport.NewMTLS(pki.Leaf(t, "web"), pki.Bundle(t))
	for _, p := range []transport.Proto{transport.HTTP1, transport.HTTP2, transport.TCP} {
		t.Run(p.String(), func(t *testing.T) {
			addr, res := serve(t, api)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := web.Dial(ctx, addr, identitytest.ID("api"), p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !transport.IsMesh(c) {
				t.Error("IsMesh(dialed) = false")
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			got := <-res
			if got.err != nil {
				t.Fatal(got.err)
			}
			if got.acc.Proto != p || got.acc.Peer != identitytest.ID("web") || !got.acc.TLS || got.first != "ping" || string(b) != "pong" {
				t.Errorf("got proto %v peer %q tls %v first %q reply %q, want %v %q true ping pong",
					got.acc.Proto, got.acc.Peer, got.acc.TLS, got.first, b, p, identitytest.ID("web"))
			}
		})
	}
}

func TestMTLSRefusals(t *testing.T) {
	pki := identitytest.New(t, 0)
	other := identitytest.New(t, 0)
	api := transport.NewMTLS(pki.Leaf(t, "api"), pki.Bundle(t))
	tests := []struct {
		name     string
		client   *transport.MTLS
		identity string
		want     string
	}{
		{"wrong identity", transport.NewMTLS(pki.Leaf(t, "web"), pki.Bundle(t)), identitytest.ID("api-admin"),
			"peer is " + identitytest.ID("api") + ", want " + identitytest.ID("api-admin")},
		{"no identity", transport.NewMTLS(pki.Leaf(t, "web"), pki.Bundle(t)), "", "gave no identity"},
		{"other trust anchor", transport.NewMTLS(other.Leaf(t, "web"), other.Bundle(t)), identitytest.ID("api"),
			"does not verify against the trust anchors"},
		{"no certificate yet", transport.NewMTLS(&mtls.Current{}, pki.Bundle(t)), identitytest.ID("api"), "no certificate yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, res := serve(t, api)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := tt.client.Dial(ctx, addr, tt.identity, transport.HTTP1)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var he *transport.HandshakeError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Dial error %q (%T), want a HandshakeError containing %q", err, err, tt.want)
			}
			// Unblock the server when the client never connected.
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
			}
			if got := <-res; got.acc.Proto != transport.None || got.acc.Peer != "" {
				t.Errorf("server accepted proto %v peer %q", got.acc.Proto, got.acc.Peer)
			}
		})
	}
}

func TestMTLSAcceptPlaintext(t *testing.T) {
	pki := identitytest.New(t, 0)
	addr, res := serve(t, transport.NewMTLS(pki.Leaf(t, "api"), pki.Bundle(t)))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got := <-res
	if got.err != nil || got.acc.Proto != transport.None || got.acc.Peer != "" || got.acc.TLS || got.first != "GET " {
		t.Errorf("got %+v, want plaintext replayed from its first byte with no identity", got)
	}
}

func TestMTLSRefusesInboundWithoutCertificate(t *testing.T) {
	pki := identitytest.New(t, 0)
	addr, res := serve(t, transport.NewMTLS(&mtls.Current{}, pki.Bundle(t)))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	got := <-res
	if got.err == nil || !strings.Contains(got.err.Error(), "holds its certificate") {
		t.Errorf("Accept error %v, want a refusal until the proxy holds its certificate", got.err)
	}
}
