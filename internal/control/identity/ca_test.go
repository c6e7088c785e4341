package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
)

var (
	webID      = identity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web"}
	webAdminID = identity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web-admin"}
)

type roots struct{ anchor, cert, key []byte }

func genRoots(t *testing.T) roots {
	t.Helper()
	a, c, k, err := identity.GenerateRoots("cluster.local", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return roots{a, c, k}
}

func newCA(t *testing.T, cfg identity.CAConfig) *identity.CA {
	t.Helper()
	r := genRoots(t)
	is, err := identity.LoadIssuer(r.anchor, r.cert, r.key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA(is, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestGenerateAndLoadIssuerFiles(t *testing.T) {
	r := genRoots(t)
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "anchor.pem"), filepath.Join(dir, "issuer.pem"), filepath.Join(dir, "issuer.key")}
	for i, b := range [][]byte{r.anchor, r.cert, r.key} {
		if err := os.WriteFile(paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	is, err := identity.LoadIssuerFiles(paths[0], paths[1], paths[2])
	if err != nil {
		t.Fatal(err)
	}
	if !is.Cert().IsCA || is.Cert().MaxPathLen != 0 || !is.Cert().MaxPathLenZero {
		t.Errorf("issuer: IsCA=%v MaxPathLen=%d, want a CA that signs only leaves", is.Cert().IsCA, is.Cert().MaxPathLen)
	}
	if got := is.Anchors()[0].Subject.CommonName; got != "weft trust anchor cluster.local" {
		t.Errorf("anchor CN = %q", got)
	}
	if _, err := identity.LoadIssuerFiles(paths[0], paths[1], filepath.Join(dir, "missing.key")); err == nil {
		t.Error("LoadIssuerFiles with a missing key file succeeded")
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoadIssuerRejects(t *testing.T) {
	r, other := genRoots(t), genRoots(t)
	anchor, err := mtls.ParseCertsPEM(r.anchor)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		anchors, cert, key []byte
		want               string
	}{
		{"issuer of another anchor", other.anchor, r.cert, r.key, "does not chain to the trust anchors"},
		{"key of another issuer", r.anchor, r.cert, other.key, "does not belong to issuer certificate"},
		{"key where the certificate belongs", r.anchor, r.key, r.key, "where a CERTIFICATE was expected"},
		{"garbage anchors", []byte("not pem"), r.cert, r.key, "no PEM CERTIFICATE block"},
		{"garbage key", r.anchor, r.cert, []byte("nope"), "no PEM block"},
		{"certificate as key", r.anchor, r.cert, r.cert, "want PRIVATE KEY"},
		{"leaf as anchor", pemCert(leafSignedBy(t, r).Raw), r.cert, r.key, "is not a CA certificate"},
		{"leaf as issuer", r.anchor, pemCert(leafSignedBy(t, r).Raw), r.key, "is not a CA certificate"},
		{"expired issuer", r.anchor, pemCert(expiredIssuer(t, anchor[0], r)), r.key, "expired at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := identity.LoadIssuer(tc.anchors, tc.cert, tc.key)
			if got := errText(err); !strings.Contains(got, tc.want) {
				t.Errorf("LoadIssuer error = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

// leafSignedBy issues an ordinary workload leaf from r's issuer.
func leafSignedBy(t *testing.T, r roots) *x509.Certificate {
	t.Helper()
	is, err := identity.LoadIssuer(r.anchor, r.cert, r.key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA(is, identity.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Sign(csrFor(t, ecKey(t), &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expiredIssuer makes a CA certificate for r's issuer key that expired.
// It claims the anchor as its issuer but is signed by another key, so only
// the expiry check can name the problem first.
func expiredIssuer(t *testing.T, anchor *x509.Certificate, r roots) []byte {
	t.Helper()
	keyBlk := r.key
	is, err := identity.LoadIssuer(r.anchor, r.cert, keyBlk)
	if err != nil {
		t.Fatal(err)
	}
	pub := is.Cert().PublicKey
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old issuer"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	selfKey := ecKey(t)
	parent := &x509.Certificate{Subject: anchor.Subject, SubjectKeyId: anchor.SubjectKeyId}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, selfKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// abusiveCSR asks for everything a CSR can ask for: another identity in
// the subject and SANs, extra SANs of every kind, and CA:TRUE.
func abusiveCSR(t *testing.T) *x509.CertificateRequest {
	t.Helper()
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	return csrFor(t, ecKey(t), &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "spiffe://cluster.local/ns/default/sa/web-admin", Organization: []string{"system:masters"}},
		DNSNames:       []string{"spiffe://cluster.local/ns/default/sa/web-admin", "kubernetes.default"},
		EmailAddresses: []string{"admin@cluster.local"},
		IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/web-admin"}},
		ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bc},
		},
	})
}

// TestSignIgnoresCSR: whatever the CSR asks for, the leaf is exactly the
// identity given, with the usages and constraints of a workload.
func TestSignIgnoresCSR(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		lifetime time.Duration
		wantLife time.Duration
	}{
		{"plain, default lifetime", csrFor(t, ecKey(t), &x509.CertificateRequest{}), 0, identity.DefaultLifetime},
		{"another identity, extra SANs, CA:TRUE", abusiveCSR(t), 0, identity.DefaultLifetime},
		{"ten-year lifetime", csrFor(t, ecKey(t), &x509.CertificateRequest{}), 10 * 365 * 24 * time.Hour, identity.DefaultMaxLifetime},
		{"short lifetime", csrFor(t, ecKey(t), &x509.CertificateRequest{}), time.Hour, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			chain, err := ca.Sign(tc.csr, webID, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			leaf := checkWorkloadLeaf(t, ca, chain, webID.String())
			if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(tc.csr.PublicKey) {
				t.Error("leaf key is not the CSR's key")
			}
			// NotAfter is second-granular; allow one second each way.
			if got := leaf.NotAfter; got.Before(before.Add(tc.wantLife-time.Second)) || got.After(after.Add(tc.wantLife+time.Second)) {
				t.Errorf("NotAfter = %s, want about now + %s", got, tc.wantLife)
			}
			if got := before.Sub(leaf.NotBefore); got < 59*time.Second || got > 61*time.Second+after.Sub(before) {
				t.Errorf("NotBefore backdated by %s, want 1m", got)
			}
		})
	}
}

// checkWorkloadLeaf checks every property of a workload leaf and returns it.
func checkWorkloadLeaf(t *testing.T, ca *identity.CA, chain [][]byte, wantID string) *x509.Certificate {
	t.Helper()
	if len(chain) != 2 {
		t.Fatalf("chain of %d certificates, want leaf and issuer", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	if len(uris) != 1 || uris[0] != wantID {
		t.Errorf("URI SANs = %v, want exactly [%s]", uris, wantID)
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
		t.Errorf("leaf has extra SANs: DNS %v e-mail %v IP %v", leaf.DNSNames, leaf.EmailAddresses, leaf.IPAddresses)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("leaf basic constraints: valid=%v CA=%v, want CA:FALSE", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if got := leaf.ExtKeyUsage; len(got) != 2 || got[0] != x509.ExtKeyUsageServerAuth || got[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU = %v, want serverAuth, clientAuth", got)
	}
	if leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("subject = %q, want empty (nothing from the CSR)", leaf.Subject)
	}
	if bits := leaf.SerialNumber.BitLen(); bits < 100 || bits > 128 {
		t.Errorf("serial of %d bits, want a random 128-bit serial", bits)
	}
	certs := []*x509.Certificate{leaf}
	for _, d := range chain[1:] {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	for _, u := range []mtls.Usage{mtls.ServerAuth, mtls.ClientAuth} {
		if _, err := mtls.VerifyPeer(certs, ca.Bundle(), u, wantID); err != nil {
			t.Errorf("issued chain does not verify for usage %d: %v", u, err)
		}
	}
	return leaf
}

func TestSignRefuses(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	rsaK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSig := csrFor(t, ecKey(t), &x509.CertificateRequest{})
	badSig = mustParseCSR(t, corruptSignature(badSig.Raw))
	tests := []struct {
		name string
		csr  *x509.CertificateRequest
		id   identity.Identity
		want string
	}{
		{"RSA key", csrFor(t, rsaK, &x509.CertificateRequest{}), webID, "want ECDSA P-256"},
		{"P-384 key", csrFor(t, p384, &x509.CertificateRequest{}), webID, "want ECDSA P-256"},
		{"bad signature", badSig, webID, "signature does not verify"},
		{"other trust domain", csrFor(t, ecKey(t), &x509.CertificateRequest{}),
			identity.Identity{TrustDomain: "evil.local", Namespace: "default", ServiceAccount: "web"}, "outside trust domain"},
		{"slash in account", csrFor(t, ecKey(t), &x509.CertificateRequest{}),
			identity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web/sa/admin"}, "hold no '/'"},
		{"nil", nil, webID, "no certificate request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := ca.Sign(tc.csr, tc.id, 0)
			if got := errText(err); !strings.Contains(got, tc.want) {
				t.Errorf("Sign error = %q, want it to contain %q", got, tc.want)
			}
			if chain != nil {
				t.Errorf("Sign returned a chain with an error")
			}
		})
	}
}

func mustParseCSR(t *testing.T, der []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// corruptSignature flips a bit in the last byte of a DER CSR, which is the
// last byte of the ECDSA signature's S: the CSR still parses but its
// signature no longer verifies.
func corruptSignature(der []byte) []byte {
	out := append([]byte(nil), der...)
	out[len(out)-1] ^= 0x01
	return out
}

func TestIssuerLifetimeCaps(t *testing.T) {
	// An issuer valid for a minute: no leaf may outlive it.
	a, c, k, err := identity.GenerateRoots("cluster.local", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	is, err := identity.LoadIssuer(a, c, k)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA(is, identity.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Sign(csrFor(t, ecKey(t), &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := leaf.NotAfter, is.Cert().NotAfter; got.After(want) {
		t.Errorf("leaf NotAfter %s is after the issuer's %s", got, want)
	}
}

func TestServingCertificate(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	c, err := ca.ServingCerts(nil, nil).Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if got, want := leaf.URIs[0].String(), "spiffe://cluster.local/ns/weft/sa/weft-controller"; len(leaf.URIs) != 1 || got != want {
		t.Errorf("URIs = %v, want [%s]", leaf.URIs, want)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("DNS = %v, want [localhost]", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) == 0 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IPs = %v, want 127.0.0.1 first", leaf.IPAddresses)
	}
	certs := []*x509.Certificate{leaf}
	if _, err := mtls.VerifyController(certs, ca.Bundle(), "spiffe://cluster.local/ns/weft/sa/weft-controller"); err == nil {
		t.Error("controller certificate verified without its issuer in the chain")
	}
	issuer, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mtls.VerifyController(append(certs, issuer), ca.Bundle(), "spiffe://cluster.local/ns/weft/sa/weft-controller"); err != nil {
		t.Errorf("VerifyController: %v", err)
	}
	// As a mesh peer it is refused: it carries DNS and IP SANs.
	if _, err := mtls.VerifyPeer(append(certs, issuer), ca.Bundle(), mtls.ServerAuth, ""); err == nil {
		t.Error("controller certificate accepted as a workload certificate")
	}
}

// TestRotate: after rotating to an issuer whose bundle holds the old and
// the new anchor, leaves of the old issuer and of the new one both verify
// against the CA's bundle.
func TestRotate(t *testing.T) {
	oldR, newR := genRoots(t), genRoots(t)
	oldIs, err := identity.LoadIssuer(oldR.anchor, oldR.cert, oldR.key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA(oldIs, identity.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	oldChain, err := ca.Sign(csrFor(t, ecKey(t), &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	newIs, err := identity.LoadIssuer(append(append([]byte(nil), oldR.anchor...), newR.anchor...), newR.cert, newR.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Rotate(newIs); err != nil {
		t.Fatal(err)
	}
	newChain, err := ca.Sign(csrFor(t, ecKey(t), &x509.CertificateRequest{}), webID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ca.Anchors()); got != 2 {
		t.Fatalf("anchors after rotation = %d, want 2", got)
	}
	for name, chain := range map[string][][]byte{"old": oldChain, "new": newChain} {
		t.Run(name, func(t *testing.T) { checkWorkloadLeaf(t, ca, chain, webID.String()) })
	}
	if string(oldChain[1]) == string(newChain[1]) {
		t.Error("the new leaf is still signed by the old issuer")
	}
}

func TestStatus(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	st := ca.Status()
	if len(st) != 2 {
		t.Fatalf("Status = %v, want an anchor and the issuer", st)
	}
	for i, want := range []string{"anchor", "issuer"} {
		if st[i].Role != want {
			t.Errorf("Status[%d].Role = %q, want %q", i, st[i].Role, want)
		}
		if d := time.Until(st[i].NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
			t.Errorf("Status[%d] expires in %s, want about 30 days", i, d)
		}
	}
}

// TestServingCertsRenew: the controller's serving certificate is replaced
// before it expires, and the same one is reused until then.
func TestServingCertsRenew(t *testing.T) {
	ca := newCA(t, identity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second})
	src := ca.ServingCerts(nil, nil)
	first, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	again, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("a second handshake right away got a new certificate")
	}
	deadline := time.Now().Add(60 * time.Second) // hang guard
	for {
		c, err := src.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(c.Leaf.NotAfter) {
			t.Fatalf("served an expired certificate (NotAfter %s)", c.Leaf.NotAfter)
		}
		if c != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serving certificate never renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServingCertsFollowRotation: after Rotate, the controller's serving
// certificate comes from the new issuer at the next handshake, so proxies
// that trust only the new anchor keep reaching the controller.
func TestServingCertsFollowRotation(t *testing.T) {
	ca := newCA(t, identity.CAConfig{})
	src := ca.ServingCerts(nil, nil)
	before, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	r := genRoots(t)
	next, err := identity.LoadIssuer(r.anchor, r.cert, r.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Rotate(next); err != nil {
		t.Fatal(err)
	}
	after, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Fatal("the serving certificate was not issued again after Rotate")
	}
	pool := x509.NewCertPool()
	anchors, _ := pem.Decode(r.anchor)
	anchor, err := x509.ParseCertificate(anchors.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, der := range after.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := after.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate after Rotate does not verify against the new anchor: %v", err)
	}
}
