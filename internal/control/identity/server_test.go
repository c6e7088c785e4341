package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/identityv1"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const controllerID = "spiffe://cluster.local/ns/weft/sa/weft-controller"

var apiID = identity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "api"}

// serve runs the Identity API over TLS on loopback until the test ends.
func serve(t *testing.T, ca *identity.CA, auth identity.Authenticator, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mtls.ControlServerConfig(ca.ServingCerts(nil, nil), ca.Bundle())
	srv := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(cfg)))...)
	identityv1.RegisterIdentityServer(srv, identity.NewServer(ca, auth, slog.New(slog.NewTextHandler(io.Discard, nil))))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String()
}

func client(t *testing.T, addr string, cfg *tls.Config) identityv1.IdentityClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

func certify(t *testing.T, c identityv1.IdentityClient, csr []byte, token string) (*identityv1.CertifyResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard
	defer cancel()
	return c.Certify(ctx, &identityv1.CertifyRequest{CsrDer: csr, Token: token, ProxyId: "test-0"})
}

func csrDER(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, ecKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCertifyIdentityFromToken: the certificate always carries the identity
// of the token, never what the CSR asks for.
func TestCertifyIdentityFromToken(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tokens := identity.NewJoinTokens()
	webTok, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	apiTok, err := tokens.Issue(apiID)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, serve(t, ca, tokens), mtls.ControlClientConfig(nil, ca.Bundle(), controllerID))
	tests := []struct {
		name   string
		csr    []byte
		token  string
		wantID string
	}{
		{"own token, empty CSR", csrDER(t, &x509.CertificateRequest{}), webTok, webID.String()},
		{"own token again (renewal)", csrDER(t, &x509.CertificateRequest{}), webTok, webID.String()},
		{"CSR naming web-admin, extra SANs, CA:TRUE", abusiveCSR(t).Raw, webTok, webID.String()},
		{"another workload's token, CSR naming web", csrDER(t, &x509.CertificateRequest{
			URIs: []*url.URL{mustURL(t, webID.String())},
		}), apiTok, apiID.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := certify(t, c, tc.csr, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			checkWorkloadLeaf(t, ca, resp.GetChainDer(), tc.wantID)
			leaf, err := x509.ParseCertificate(resp.GetChainDer()[0])
			if err != nil {
				t.Fatal(err)
			}
			if got, want := resp.GetNotAfterUnix(), leaf.NotAfter.Unix(); got != want {
				t.Errorf("not_after_unix = %d, want %d", got, want)
			}
			if got := len(resp.GetTrustAnchorsDer()); got != 1 {
				t.Errorf("trust anchors = %d, want 1", got)
			}
		})
	}
}

func TestCertifyRefuses(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tokens := identity.NewJoinTokens()
	webTok, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	tokens.Revoke(revoked)
	rsaK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaK)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384CSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	if err != nil {
		t.Fatal(err)
	}
	ctlTok, err := tokens.Issue(identity.ControllerIdentity("cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	good := csrDER(t, &x509.CertificateRequest{})
	flipped := []byte(webTok)
	flipped[len(flipped)-1] ^= 0x01
	c := client(t, serve(t, ca, tokens), mtls.ControlClientConfig(nil, ca.Bundle(), controllerID))
	tests := []struct {
		name     string
		csr      []byte
		token    string
		wantCode codes.Code
		wantMsg  string
	}{
		{"wrong token", good, "weftjt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", codes.Unauthenticated, "join token unknown or revoked"},
		{"token with one bit changed", good, string(flipped), codes.Unauthenticated, "join token unknown or revoked"},
		{"revoked token", good, revoked, codes.Unauthenticated, "join token unknown or revoked"},
		{"no token", good, "", codes.Unauthenticated, "no join token given"},
		{"controller identity", good, ctlTok, codes.PermissionDenied, "reserved for the controller"},
		{"RSA key", rsaCSR, webTok, codes.InvalidArgument, "want ECDSA P-256"},
		{"P-384 key", p384CSR, webTok, codes.InvalidArgument, "want ECDSA P-256"},
		{"bad CSR signature", corruptSignature(good), webTok, codes.InvalidArgument, "signature does not verify"},
		{"garbage CSR", []byte("not a csr"), webTok, codes.InvalidArgument, "does not parse"},
		{"no CSR", nil, webTok, codes.InvalidArgument, "certificate request of 0 bytes"},
		{"huge CSR", make([]byte, 1<<20), webTok, codes.InvalidArgument, "under 16384 bytes"},
		// Authentication comes first: a wrong token learns nothing about
		// its CSR.
		{"wrong token and bad CSR", []byte("x"), "nope", codes.Unauthenticated, "join token unknown or revoked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := certify(t, c, tc.csr, tc.token)
			st := status.Convert(err)
			if st.Code() != tc.wantCode || !strings.Contains(st.Message(), tc.wantMsg) {
				t.Errorf("Certify = %v %q, want %v containing %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
			if resp != nil {
				t.Errorf("Certify answered %d certificates with an error", len(resp.GetChainDer()))
			}
		})
	}
}

// TestCertifyTransport: the API is only reachable over TLS to the right
// controller, with an optional but verified client certificate.
func TestCertifyTransport(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tokens := identity.NewJoinTokens()
	webTok, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, ca, tokens)

	// A client certificate from this CA (a proxy renewing over mTLS).
	key := ecKey(t)
	csr := csrFor(t, key, &x509.CertificateRequest{})
	chain, err := ca.Sign(csr, webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var proxyCert mtls.Current
	proxyCert.Store(&tls.Certificate{Certificate: chain, PrivateKey: key})

	// A client certificate from a foreign CA.
	foreign := newCA(t, identity.CAConfig{})
	fkey := ecKey(t)
	fchain, err := foreign.Sign(csrFor(t, fkey, &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var foreignCert mtls.Current
	foreignCert.Store(&tls.Certificate{Certificate: fchain, PrivateKey: fkey})

	tests := []struct {
		name     string
		creds    grpc.DialOption
		wantCode codes.Code
		wantMsg  string
	}{
		{"server-authenticated only", grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(nil, ca.Bundle(), controllerID))), codes.OK, ""},
		{"mutual TLS", grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(&proxyCert, ca.Bundle(), controllerID))), codes.OK, ""},
		{"client certificate of a foreign CA", grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(&foreignCert, ca.Bundle(), controllerID))), codes.Unavailable, ""},
		{"controller with another identity", grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(nil, ca.Bundle(), "spiffe://cluster.local/ns/weft/sa/other"))), codes.Unavailable, "peer is " + controllerID},
		{"controller of a foreign trust bundle", grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(nil, foreign.Bundle(), controllerID))), codes.Unavailable, "does not verify against the trust anchors"},
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials()), codes.Unavailable, "server preface"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := grpc.NewClient(addr, tc.creds)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = certify(t, identityv1.NewIdentityClient(conn), csrDER(t, &x509.CertificateRequest{}), webTok)
			st := status.Convert(err)
			if st.Code() != tc.wantCode || !strings.Contains(st.Message(), tc.wantMsg) {
				t.Errorf("Certify = %v %q, want %v containing %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
		})
	}

	// Why the foreign client certificate failed, seen without gRPC (whose
	// error depends on which write first hits the closed connection).
	t.Run("foreign client certificate refused in the handshake", func(t *testing.T) {
		raw, err := net.DialTimeout("tcp", addr, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
		cfg := mtls.ControlClientConfig(&foreignCert, ca.Bundle(), controllerID)
		cfg.NextProtos = []string{"h2"}
		c := tls.Client(raw, cfg)
		err = c.Handshake()
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		if got, want := errText(err), "bad certificate"; !strings.Contains(got, want) {
			t.Errorf("error = %q, want it to contain %q", got, want)
		}
	})
}

// TestPeerID: a method handler sees the caller's verified identity when it
// presented a certificate, and an error when it did not.
func TestPeerID(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tokens := identity.NewJoinTokens()
	webTok, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		id, err := identity.PeerID(ctx)
		seen <- id + errText(err)
		return h(ctx, req)
	}
	addr := serve(t, ca, tokens, grpc.UnaryInterceptor(record))
	webKey := ecKey(t)
	webChain, err := ca.Sign(csrFor(t, webKey, &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var webCert mtls.Current
	webCert.Store(&tls.Certificate{Certificate: webChain, PrivateKey: webKey})
	tests := []struct {
		name string
		src  mtls.CertSource
		want string
	}{
		{"no client certificate", nil, "mtls: peer presented no certificate"},
		{"client certificate", &webCert, webID.String() + "<nil>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, addr, mtls.ControlClientConfig(tc.src, ca.Bundle(), controllerID))
			if _, err := certify(t, c, csrDER(t, &x509.CertificateRequest{}), webTok); err != nil {
				t.Fatal(err)
			}
			if got := <-seen; got != tc.want {
				t.Errorf("PeerID = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCertifyTokenCertificateMismatch: over mutual TLS, the token must
// prove the identity of the presented certificate.
func TestCertifyTokenCertificateMismatch(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tokens := identity.NewJoinTokens()
	webTok, err := tokens.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t)
	chain, err := ca.Sign(csrFor(t, key, &x509.CertificateRequest{}), apiID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var apiCert mtls.Current
	apiCert.Store(&tls.Certificate{Certificate: chain, PrivateKey: key})
	c := client(t, serve(t, ca, tokens), mtls.ControlClientConfig(&apiCert, ca.Bundle(), controllerID))
	_, err = certify(t, c, csrDER(t, &x509.CertificateRequest{}), webTok)
	st := status.Convert(err)
	if want := "the client certificate is " + apiID.String() + " but the token proves " + webID.String(); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), want) {
		t.Errorf("Certify = %v %q, want PermissionDenied containing %q", st.Code(), st.Message(), want)
	}
}
