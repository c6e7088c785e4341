package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"weft.dev/weft/internal/mtls"
)

const ctlID = "spiffe://cluster.local/ns/weft/sa/weft-controller"

// controllerCert is a serving certificate of the controller from p.
func controllerCert(t *testing.T, p *testPKI) *tls.Certificate {
	t.Helper()
	return p.leaf(t, ctlID, withTemplate(func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }))
}

// credsHandshake runs one handshake over loopback TCP between gRPC
// transport credentials, as grpc-go runs them, then a one-byte exchange.
// It returns the certificates the server received and both sides' errors.
func credsHandshake(t *testing.T, server, client credentials.TransportCredentials) ([]*x509.Certificate, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		certs []*x509.Certificate
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
		conn, info, err := server.ServerHandshake(c)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		_, err = conn.Write([]byte("x"))
		done <- result{certs: info.(credentials.TLSInfo).State.PeerCertificates, err: err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, clientErr := client.ClientHandshake(ctx, "localhost", raw)
	if clientErr == nil {
		_, clientErr = io.ReadFull(conn, make([]byte, 1))
		conn.Close()
	}
	r := <-done
	return r.certs, r.err, clientErr
}

// TestControlLeafAlone: a proxy presents its leaf alone to a controller
// that serves with the very issuer that signed it, and the controller
// completes the chain; in every other case the proxy presents its whole
// chain, so that old controllers, rotated issuers and plain clients keep
// working, and a leaf alone never verifies without the issuer the
// controller actually holds.
func TestControlLeafAlone(t *testing.T) {
	good := newPKI(t, "good")
	rotated := good.sibling(t) // same root, an issuer with the same name
	other := newPKI(t, "other")
	proxyCert := good.leaf(t, web)
	serve := func(p *testPKI) credentials.TransportCredentials {
		return mtls.ControlServerCredentials(static(controllerCert(t, p)), good.bundle(t))
	}
	proxy := mtls.ControlCredentials(static(proxyCert), good.bundle(t), ctlID)
	leafOnly := func(c *tls.Certificate) *tls.Certificate {
		cp := *c
		cp.Certificate = c.Certificate[:1]
		return &cp
	}
	plain := func(c *tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(mtls.ControlClientConfig(static(c), good.bundle(t), ctlID))
	}
	tests := []struct {
		name      string
		server    credentials.TransportCredentials
		client    credentials.TransportCredentials
		wantCerts int    // certificates the controller received
		wantErr   string // the controller's refusal; "" to accept
	}{
		{"same issuer: leaf alone", serve(good), proxy, 1, ""},
		{"issuer rotated under the same name: whole chain", serve(rotated), proxy, 2, ""},
		{"older controller naming no authority: whole chain",
			credentials.NewTLS(mtls.ControlServerConfig(static(controllerCert(t, good)), good.bundle(t))), proxy, 2, ""},
		{"plain client configuration: whole chain", serve(good), plain(proxyCert), 2, ""},
		{"leaf alone, signed by the issuer served: completed", serve(good), plain(leafOnly(proxyCert)), 1, ""},
		{"leaf alone, signed by another issuer of the same root: refused", serve(rotated), plain(leafOnly(proxyCert)), 0,
			"does not verify against the trust anchors"},
		{"leaf alone from another root: refused", serve(good), plain(leafOnly(other.leaf(t, api))), 0,
			"does not verify against the trust anchors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, serverErr, clientErr := credsHandshake(t, tc.server, tc.client)
			if tc.wantErr != "" {
				if serverErr == nil || !strings.Contains(serverErr.Error(), tc.wantErr) {
					t.Fatalf("server error = %s, want one containing %q", errText(serverErr), tc.wantErr)
				}
				if clientErr == nil {
					t.Error("the client saw no error")
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server: %v, client: %v", serverErr, clientErr)
			}
			if len(certs) != tc.wantCerts {
				t.Errorf("certificates received = %d, want %d", len(certs), tc.wantCerts)
			}
			id, err := mtls.PeerIdentity(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: certs})
			if err != nil || id != web {
				t.Errorf("peer identity = %q, %v", id, err)
			}
		})
	}
}
