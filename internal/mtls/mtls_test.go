package mtls_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/mtls"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	web = "spiffe://cluster.local/ns/default/sa/web"
	api = "spiffe://cluster.local/ns/default/sa/api"
)

// handshake runs one TLS handshake over loopback TCP and a one-byte
// exchange after it (in TLS 1.3 a client learns that the server refused its
// certificate only when it reads). It returns the server's view and both
// sides' errors.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		state tls.ConnectionState
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
		s := tls.Server(c, serverCfg)
		if err := s.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = s.Write([]byte("x"))
		done <- result{state: s.ConnectionState(), err: err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	c := tls.Client(raw, clientCfg)
	clientErr := c.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(c, make([]byte, 1))
	}
	c.Close()
	r := <-done
	return r.state, r.err, clientErr
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func withTemplate(f func(*x509.Certificate)) leafOpt {
	return func(_ *testing.T, tmpl *x509.Certificate, _ *crypto.Signer) { f(tmpl) }
}

// badLeaves are certificates that must be refused whichever side presents
// them, with the reason each must be refused for.
func badLeaves(t *testing.T, good, other *testPKI) []struct {
	name string
	cert *tls.Certificate
	want string
} {
	spelled := []string{web}
	return []struct {
		name string
		cert *tls.Certificate
		want string
	}{
		{"expired", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		})), "expired"},
		{"not yet valid", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
		})), "not yet valid"},
		{"wrong CA", other.leaf(t, web), "does not verify against the trust anchors"},
		{"DNS SAN spelling the ID, no URI", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.URIs, c.DNSNames = nil, spelled
		})), "DNS SAN"},
		{"DNS SAN spelling the ID beside the URI", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.DNSNames = spelled
		})), "DNS SAN"},
		{"e-mail SAN spelling the ID, no URI", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.URIs, c.EmailAddresses = nil, spelled
		})), "e-mail SAN"},
		{"e-mail SAN beside the URI", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.EmailAddresses = []string{"web@cluster.local"}
		})), "e-mail SAN"},
		{"IP SAN beside the URI", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		})), "IP SAN"},
		{"two URI SANs, same ID", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.URIs = append(c.URIs, c.URIs[0])
		})), "2 URI SANs"},
		{"two URI SANs, two IDs", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.URIs = append(c.URIs, mustURL(t, api))
		})), "2 URI SANs"},
		{"no SAN", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.URIs = nil
		})), "no subject alternative name"},
		{"no EKU at all", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.ExtKeyUsage = nil
		})), "lacks extended key usage"},
		{"CA:TRUE leaf", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.IsCA = true
		})), "is a CA certificate"},
		{"certSign key usage", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCertSign
		})), "is a CA certificate"},
		{"no digitalSignature key usage", good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		})), "lacks the digitalSignature key usage"},
		{"RSA key", good.leaf(t, web, rsaKey), "want ECDSA P-256"},
		{"P-384 key", good.leaf(t, web, p384Key), "want ECDSA P-256"},
		{"upper-case trust domain", good.leaf(t, "spiffe://Cluster.local/ns/default/sa/web"), "trust domain may hold only"},
		{"percent-encoded path", good.leaf(t, "spiffe://cluster.local/ns/default/sa/w%65b"), "path may hold only"},
		{"trailing slash", good.leaf(t, web+"/"), "empty, '.' or '..' path segment"},
		{"dot-dot segment", good.leaf(t, "spiffe://cluster.local/ns/default/sa/x/../web"), "empty, '.' or '..' path segment"},
		{"query", good.leaf(t, web+"?sa=admin"), "path may hold only"},
		{"not spiffe", good.leaf(t, "https://cluster.local/ns/default/sa/web"), "is not a SPIFFE ID"},
	}
}

func TestServerCertRejected(t *testing.T) {
	good, other := newPKI(t, "good"), newPKI(t, "other")
	client := good.leaf(t, api)
	for _, tc := range badLeaves(t, good, other) {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(tc.cert), good.bundle(t))
			cli := mtls.ClientConfig(static(client), good.bundle(t), web, []string{mtls.ALPNHTTP1})
			_, _, clientErr := handshake(t, srv, cli)
			if got := errText(clientErr); !strings.Contains(got, tc.want) {
				t.Errorf("client error = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestClientCertRejected(t *testing.T) {
	good, other := newPKI(t, "good"), newPKI(t, "other")
	server := good.leaf(t, web)
	for _, tc := range badLeaves(t, good, other) {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(server), good.bundle(t))
			cli := mtls.ClientConfig(static(tc.cert), good.bundle(t), web, []string{mtls.ALPNHTTP1})
			_, serverErr, clientErr := handshake(t, srv, cli)
			if got := errText(serverErr); !strings.Contains(got, tc.want) {
				t.Errorf("server error = %q, want it to contain %q", got, tc.want)
			}
			if clientErr == nil {
				t.Errorf("client completed an exchange with a refused certificate")
			}
		})
	}
}

func TestWrongUsageRejected(t *testing.T) {
	good := newPKI(t, "good")
	only := func(u x509.ExtKeyUsage) leafOpt {
		return withTemplate(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{u} })
	}
	tests := []struct {
		name           string
		server, client *tls.Certificate
		wantServerErr  string
		wantClientErr  string
	}{
		{"server cert without serverAuth", good.leaf(t, web, only(x509.ExtKeyUsageClientAuth)), good.leaf(t, api),
			"bad certificate", "lacks extended key usage serverAuth"},
		{"client cert without clientAuth", good.leaf(t, web), good.leaf(t, api, only(x509.ExtKeyUsageServerAuth)),
			"lacks extended key usage clientAuth", "bad certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(tc.server), good.bundle(t))
			cli := mtls.ClientConfig(static(tc.client), good.bundle(t), web, []string{mtls.ALPNHTTP1})
			_, serverErr, clientErr := handshake(t, srv, cli)
			if got := errText(clientErr); !strings.Contains(got, tc.wantClientErr) {
				t.Errorf("client error = %q, want it to contain %q", got, tc.wantClientErr)
			}
			if got := errText(serverErr); !strings.Contains(got, tc.wantServerErr) {
				t.Errorf("server error = %q, want it to contain %q", got, tc.wantServerErr)
			}
		})
	}
}

// TestIdentityExactMatch: a client accepts a server only if its ID equals
// the expected one exactly; the server side reports the client's own ID
// exactly, so that authorization compares the real one.
func TestIdentityExactMatch(t *testing.T) {
	good := newPKI(t, "good")
	tests := []struct {
		name, certID, expected string
	}{
		{"wrong ID", api, web},
		{"prefix: web vs web-admin", "spiffe://cluster.local/ns/default/sa/web-admin", web},
		{"prefix: web-admin vs web", web, "spiffe://cluster.local/ns/default/sa/web-admin"},
		{"dot vs dash", "spiffe://cluster.local/ns/default/sa/cert-manager-io", "spiffe://cluster.local/ns/default/sa/cert-manager.io"},
		{"dash vs dot", "spiffe://cluster.local/ns/default/sa/cert-manager.io", "spiffe://cluster.local/ns/default/sa/cert-manager-io"},
		{"other trust domain", "spiffe://evil.local/ns/default/sa/web", web},
		{"trust domain suffix", "spiffe://cluster.local.evil/ns/default/sa/web", web},
		{"other namespace", "spiffe://cluster.local/ns/other/sa/web", web},
		{"case of the service account", "spiffe://cluster.local/ns/default/sa/Web", web},
		{"case of the namespace", "spiffe://cluster.local/ns/Default/sa/web", web},
		{"namespace and account swapped", "spiffe://cluster.local/ns/web/sa/default", "spiffe://cluster.local/ns/default/sa/web"},
		{"extra segment", web + "/x", web},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := good.leaf(t, tc.certID)
			srv := mtls.ServerConfig(static(cert), good.bundle(t))
			cli := mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), tc.expected, []string{mtls.ALPNTCP})
			_, _, clientErr := handshake(t, srv, cli)
			if got, want := errText(clientErr), "peer is "+tc.certID+", want "+tc.expected; !strings.Contains(got, want) {
				t.Errorf("client error = %q, want it to contain %q", got, want)
			}

			// Same certificate as a client's: accepted by the handshake,
			// reported exactly.
			srv = mtls.ServerConfig(static(good.leaf(t, web)), good.bundle(t))
			cli = mtls.ClientConfig(static(cert), good.bundle(t), web, []string{mtls.ALPNTCP})
			state, serverErr, _ := handshake(t, srv, cli)
			if serverErr != nil {
				t.Fatalf("server: %v", serverErr)
			}
			got, err := mtls.PeerIdentity(state)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.certID {
				t.Errorf("PeerIdentity = %q, want %q", got, tc.certID)
			}
		})
	}
}

func TestValidAccepted(t *testing.T) {
	good := newPKI(t, "good")
	tests := []struct {
		name     string
		alpn     []string
		wantALPN string
	}{
		{"http1", []string{mtls.ALPNHTTP1}, mtls.ALPNHTTP1},
		{"http2", []string{mtls.ALPNHTTP2}, mtls.ALPNHTTP2},
		{"tcp", []string{mtls.ALPNTCP}, mtls.ALPNTCP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(good.leaf(t, web)), good.bundle(t))
			cli := mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), web, tc.alpn)
			state, serverErr, clientErr := handshake(t, srv, cli)
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server: %v, client: %v", serverErr, clientErr)
			}
			id, err := mtls.PeerIdentity(state)
			if err != nil {
				t.Fatal(err)
			}
			if id != api {
				t.Errorf("PeerIdentity = %q, want %q", id, api)
			}
			if state.NegotiatedProtocol != tc.wantALPN {
				t.Errorf("ALPN = %q, want %q", state.NegotiatedProtocol, tc.wantALPN)
			}
			if state.Version != tls.VersionTLS13 {
				t.Errorf("version = %x, want TLS 1.3", state.Version)
			}
		})
	}
}

func TestProtocolRefused(t *testing.T) {
	good := newPKI(t, "good")
	tests := []struct {
		name  string
		alter func(*tls.Config)
		want  string
	}{
		// A client that does not check the server either, to reach the
		// server's own check.
		{"no ALPN", func(c *tls.Config) { c.NextProtos, c.VerifyConnection = nil, nil }, "negotiated no application protocol"},
		{"foreign ALPN", func(c *tls.Config) { c.NextProtos = []string{"h2"} }, "unsupported application protocol"},
		{"TLS 1.2", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }, "unsupported versions"},
		{"no client certificate", func(c *tls.Config) {
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
		}, "client didn't provide a certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(good.leaf(t, web)), good.bundle(t))
			cli := mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), web, []string{mtls.ALPNHTTP1})
			tc.alter(cli)
			_, serverErr, _ := handshake(t, srv, cli)
			if got := errText(serverErr); !strings.Contains(got, tc.want) {
				t.Errorf("server error = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestNoCertificateYet(t *testing.T) {
	good := newPKI(t, "good")
	var empty mtls.Current
	srv := mtls.ServerConfig(&empty, good.bundle(t))
	cli := mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), web, []string{mtls.ALPNHTTP1})
	_, serverErr, clientErr := handshake(t, srv, cli)
	if got, want := errText(serverErr), "no certificate yet"; !strings.Contains(got, want) {
		t.Errorf("server error = %q, want it to contain %q", got, want)
	}
	if clientErr == nil {
		t.Error("client handshake succeeded against a server without a certificate")
	}
}

// TestRotation: during a rotation the bundle holds the old and the new
// anchor and leaves of either verify; after it, only the new.
func TestRotation(t *testing.T) {
	oldPKI, newPKI_ := newPKI(t, "old"), newPKI(t, "new")
	both, err := mtls.NewBundle(oldPKI.root, newPKI_.root)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew := newPKI_.bundle(t)
	tests := []struct {
		name    string
		leaf    *tls.Certificate
		bundle  *mtls.Bundle
		wantErr string
	}{
		{"old leaf, both anchors", oldPKI.leaf(t, web), both, "<nil>"},
		{"new leaf, both anchors", newPKI_.leaf(t, web), both, "<nil>"},
		{"new leaf, new anchor", newPKI_.leaf(t, web), onlyNew, "<nil>"},
		{"old leaf, new anchor", oldPKI.leaf(t, web), onlyNew, "does not verify against the trust anchors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtls.ServerConfig(static(tc.leaf), tc.bundle)
			cli := mtls.ClientConfig(static(newPKI_.leaf(t, api)), tc.bundle, web, []string{mtls.ALPNHTTP2})
			_, _, clientErr := handshake(t, srv, cli)
			if got := errText(clientErr); !strings.Contains(got, tc.wantErr) {
				t.Errorf("client error = %q, want it to contain %q", got, tc.wantErr)
			}
		})
	}
}

// TestBundleSwap: replacing the anchors of a bundle in use takes effect on
// the next handshake.
func TestBundleSwap(t *testing.T) {
	a, b := newPKI(t, "a"), newPKI(t, "b")
	bundle := a.bundle(t)
	srv := mtls.ServerConfig(static(a.leaf(t, web)), bundle)
	cli := mtls.ClientConfig(static(a.leaf(t, api)), bundle, web, []string{mtls.ALPNTCP})
	if _, serverErr, clientErr := handshake(t, srv, cli); serverErr != nil || clientErr != nil {
		t.Fatalf("before swap: server %v, client %v", serverErr, clientErr)
	}
	if err := bundle.Set([]*x509.Certificate{b.root}); err != nil {
		t.Fatal(err)
	}
	_, _, clientErr := handshake(t, srv, cli)
	if got, want := errText(clientErr), "does not verify against the trust anchors"; !strings.Contains(got, want) {
		t.Errorf("after swap: client error = %q, want it to contain %q", got, want)
	}
}

func TestBundleRefusesNonCA(t *testing.T) {
	good := newPKI(t, "good")
	_, err := mtls.NewBundle(good.leaf(t, web).Leaf)
	if got, want := errText(err), "not a CA certificate"; !strings.Contains(got, want) {
		t.Errorf("NewBundle(leaf) error = %q, want it to contain %q", got, want)
	}
	_, err = mtls.NewBundle()
	if err == nil {
		t.Error("NewBundle() with no anchors succeeded")
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{web, true},
		{"spiffe://cluster.local/ns/default/sa/cert-manager.io", true},
		{"spiffe://td_1-x.example/a", true},
		{"spiffe://cluster.local", false},
		{"spiffe://cluster.local/", false},
		{"spiffe:///ns/default/sa/web", false},
		{"spiffe://cluster.local:443/ns/default/sa/web", false},
		{"spiffe://user@cluster.local/ns/default/sa/web", false},
		{"spiffe://cluster.local/ns//sa/web", false},
		{"spiffe://cluster.local/ns/default/sa/web#frag", false},
		{"SPIFFE://cluster.local/ns/default/sa/web", false},
		{"spiffe://cluster.local/ns/default/sa/w\u00e9b", false},
		{"spiffe://cluster.local/ns/default/sa/web\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			err := mtls.ParseID(tc.id)
			if got := err == nil; got != tc.want {
				t.Errorf("ParseID(%q) = %v, want valid=%v", tc.id, err, tc.want)
			}
		})
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(web)
	f.Add("spiffe://a/b/../c")
	f.Fuzz(func(t *testing.T, s string) {
		if mtls.ParseID(s) != nil {
			return
		}
		// A valid ID survives a URL round trip unchanged: there is one
		// spelling per identity.
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("valid ID %q does not parse as a URL: %v", s, err)
		}
		if u.String() != s {
			t.Fatalf("valid ID %q re-spells as %q", s, u.String())
		}
	})
}

// TestControlClientCertificate: towards the controller a proxy presents its
// certificate only while it is valid; an expired one is left out (the token
// authenticates) rather than failing the handshake.
func TestControlClientCertificate(t *testing.T) {
	good := newPKI(t, "good")
	const ctl = "spiffe://cluster.local/ns/weft/sa/weft-controller"
	srv := mtls.ControlServerConfig(static(good.leaf(t, ctl, withTemplate(func(c *x509.Certificate) {
		c.DNSNames = []string{"localhost"}
	}))), good.bundle(t))
	var none mtls.Current
	tests := []struct {
		name      string
		src       mtls.CertSource
		wantPeers int // leaf and issuer, or nothing
	}{
		{"valid certificate", static(good.leaf(t, web)), 2},
		{"expired certificate", static(good.leaf(t, web, withTemplate(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}))), 0},
		{"no certificate yet", &none, 0},
		{"no source", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cli := mtls.ControlClientConfig(tc.src, good.bundle(t), ctl)
			state, serverErr, clientErr := handshake(t, srv, cli)
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server: %v, client: %v", serverErr, clientErr)
			}
			if got := len(state.PeerCertificates); got != tc.wantPeers {
				t.Errorf("client certificates seen = %d, want %d", got, tc.wantPeers)
			}
		})
	}
}
