package mtls_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"weft.dev/weft/internal/mtls"
)

// testPKI is a trust anchor and an issuer below it, built with nothing but
// crypto/x509 so that tests can make certificates the CA would never sign.
type testPKI struct {
	root      *x509.Certificate
	rootKey   crypto.Signer
	issuer    *x509.Certificate
	issuerKey crypto.Signer
}

var serialN int64

func nextSerial() *big.Int { serialN++; return big.NewInt(serialN) }

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	now := time.Now()
	rootKey := mustKey(t)
	rootT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name + " root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := mustCreate(t, rootT, rootT, rootKey.Public(), rootKey)
	p := &testPKI{root: root, rootKey: rootKey}
	p.newIssuer(t, name+" issuer")
	return p
}

// newIssuer gives p a new issuer named cn below its root.
func (p *testPKI) newIssuer(t *testing.T, cn string) {
	t.Helper()
	now := time.Now()
	issKey := mustKey(t)
	issT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	p.issuer, p.issuerKey = mustCreate(t, issT, p.root, issKey.Public(), p.rootKey), issKey
}

// sibling is another issuer below p's root with the same name as p's (an
// issuer rotated without renaming it).
func (p *testPKI) sibling(t *testing.T) *testPKI {
	t.Helper()
	q := &testPKI{root: p.root, rootKey: p.rootKey}
	q.newIssuer(t, p.issuer.Subject.CommonName)
	return q
}

func (p *testPKI) bundle(t *testing.T) *mtls.Bundle {
	t.Helper()
	b, err := mtls.NewBundle(p.root)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCreate(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// leafTemplate is a valid workload certificate template for id.
func leafTemplate(t *testing.T, id string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          nextSerial(),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{mustURL(t, id)},
	}
}

// leafOpt changes a leaf before it is signed.
type leafOpt func(t *testing.T, tmpl *x509.Certificate, key *crypto.Signer)

// leaf signs a leaf for id, changed by opts, and returns it with its key
// and the issuer as a tls.Certificate.
func (p *testPKI) leaf(t *testing.T, id string, opts ...leafOpt) *tls.Certificate {
	t.Helper()
	tmpl := leafTemplate(t, id)
	var key crypto.Signer = mustKey(t)
	for _, o := range opts {
		o(t, tmpl, &key)
	}
	c := mustCreate(t, tmpl, p.issuer, key.Public(), p.issuerKey)
	return &tls.Certificate{Certificate: [][]byte{c.Raw, p.issuer.Raw}, PrivateKey: key, Leaf: c}
}

func static(c *tls.Certificate) mtls.CertSource {
	var cur mtls.Current
	cur.Store(c)
	return &cur
}

func rsaKey(t *testing.T, _ *x509.Certificate, key *crypto.Signer) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	*key = k
}

func p384Key(t *testing.T, _ *x509.Certificate, key *crypto.Signer) {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	*key = k
}
