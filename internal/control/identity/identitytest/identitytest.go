// Package identitytest is a ready-made certificate authority for tests of
// the mesh's mutual TLS: generated roots, a CA, join tokens, the Identity
// gRPC API and the controller's TLS credentials, and leaf certificates
// issued directly for tests that run no controller.
//
// Only tests import identitytest. A PKI is safe for concurrent use.
package identitytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"

	"weft.dev/weft/api/identityv1"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
)

// TrustDomain of every PKI made here.
const TrustDomain = "cluster.local"

// PKI is a trust anchor, an issuer, a CA and its join tokens.
type PKI struct {
	CA        *identity.CA
	Tokens    *identity.JoinTokens
	AnchorPEM []byte
	// IssuerCertPEM and IssuerKeyPEM are the issuer's, for rotation tests.
	IssuerCertPEM, IssuerKeyPEM []byte
}

// New generates roots and a CA whose leaves live for lifetime (zero: the
// CA's default).
func New(t testing.TB, lifetime time.Duration) *PKI {
	t.Helper()
	anchor, cert, key, err := identity.GenerateRoots(TrustDomain, 0)
	if err != nil {
		t.Fatal(err)
	}
	is, err := identity.LoadIssuer(anchor, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA(is, identity.CAConfig{TrustDomain: TrustDomain, DefaultLifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca, Tokens: identity.NewJoinTokens(), AnchorPEM: anchor, IssuerCertPEM: cert, IssuerKeyPEM: key}
}

// ID returns the SPIFFE ID of service account sa in namespace default.
func ID(sa string) string { return Identity(sa).String() }

// Identity returns the identity of service account sa in namespace default.
func Identity(sa string) identity.Identity {
	return identity.Identity{TrustDomain: TrustDomain, Namespace: "default", ServiceAccount: sa}
}

// Bundle returns a new bundle of the trust anchors.
func (p *PKI) Bundle(t testing.TB) *mtls.Bundle {
	t.Helper()
	b, err := mtls.ParseBundlePEM(p.AnchorPEM)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Token issues a join token for service account sa.
func (p *PKI) Token(t testing.TB, sa string) string {
	t.Helper()
	tok, err := p.Tokens.Issue(Identity(sa))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Leaf issues a certificate for service account sa, held in a CertSource.
func (p *PKI) Leaf(t testing.TB, sa string) *mtls.Current {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := p.CA.Sign(csr, Identity(sa), 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	var cur mtls.Current
	cur.Store(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf})
	return &cur
}

// ServerOption is the controller's gRPC transport credentials.
func (p *PKI) ServerOption() grpc.ServerOption {
	return grpc.Creds(mtls.ControlServerCredentials(p.CA.ServingCerts(nil, nil), p.CA.Bundle()))
}

// Register adds the Identity API to g.
func (p *PKI) Register(g *grpc.Server) {
	identityv1.RegisterIdentityServer(g, identity.NewServer(p.CA, p.Tokens, slog.New(slog.DiscardHandler)))
}
