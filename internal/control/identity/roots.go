package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"weft.dev/weft/internal/mtls"
)

// DefaultRootValidity is how long generated anchors and issuers are valid
// when GenerateRoots is given zero.
const DefaultRootValidity = 365 * 24 * time.Hour

// GenerateRoots makes a new trust anchor (a self-signed root) and an issuer
// (an intermediate signed by it) for trustDomain, both ECDSA P-256 and valid
// for validity (zero means DefaultRootValidity). It returns them PEM-encoded;
// the issuer key is PKCS#8. Write issuerKeyPEM with mode 0600.
func GenerateRoots(trustDomain string, validity time.Duration) (anchorPEM, issuerCertPEM, issuerKeyPEM []byte, err error) {
	if err := (Identity{TrustDomain: trustDomain, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("generate roots: trust domain %q: %w", trustDomain, err)
	}
	if validity <= 0 {
		validity = DefaultRootValidity
	}
	rootSerial, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	issSerial, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate root key: %w", err)
	}
	root := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft trust anchor " + trustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create root certificate: %w", err)
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse root certificate: %w", err)
	}
	issKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate issuer key: %w", err)
	}
	iss := &x509.Certificate{
		SerialNumber:          issSerial,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft issuer " + trustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	issDER, err := x509.CreateCertificate(rand.Reader, iss, rootCert, &issKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create issuer certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(issKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode issuer key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		nil
}

// Issuer is a signing certificate with its key, the chain up to (not
// including) the anchors, and the trust bundle the leaves it signs verify
// against. Build it with LoadIssuer.
type Issuer struct {
	cert    *x509.Certificate
	chain   [][]byte // issuer first, then intermediates; DER
	key     crypto.Signer
	anchors []*x509.Certificate
}

// Cert returns the issuer certificate.
func (is *Issuer) Cert() *x509.Certificate { return is.cert }

// Anchors returns the trust anchors.
func (is *Issuer) Anchors() []*x509.Certificate {
	return append([]*x509.Certificate(nil), is.anchors...)
}

// LoadIssuerFiles is LoadIssuer reading PEM files.
func LoadIssuerFiles(anchorsPath, issuerCertPath, issuerKeyPath string) (*Issuer, error) {
	var b [3][]byte
	for i, p := range []string{anchorsPath, issuerCertPath, issuerKeyPath} {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load issuer: %w", err)
		}
		b[i] = data
	}
	is, err := LoadIssuer(b[0], b[1], b[2])
	if err != nil {
		return nil, fmt.Errorf("%w (files %s, %s, %s)", err, anchorsPath, issuerCertPath, issuerKeyPath)
	}
	return is, nil
}

// LoadIssuer parses and checks an issuer. anchorsPEM holds one or more
// trust anchors (several during a rotation: the old and the new). certPEM
// holds the issuer certificate, optionally followed by intermediates up to
// an anchor. keyPEM holds the issuer's private key (PKCS#8, or SEC 1 "EC
// PRIVATE KEY"). The issuer must be a CA allowed to sign certificates, be
// valid now, chain to one of the anchors, and match the key.
func LoadIssuer(anchorsPEM, certPEM, keyPEM []byte) (*Issuer, error) {
	anchors, err := mtls.ParseCertsPEM(anchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("load issuer: trust anchors: %w", err)
	}
	for _, a := range anchors {
		if !a.BasicConstraintsValid || !a.IsCA {
			return nil, fmt.Errorf("load issuer: trust anchor %q is not a CA certificate", a.Subject)
		}
	}
	certs, err := mtls.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load issuer: issuer certificate: %w", err)
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("load issuer: issuer %q is not a CA certificate (basic constraints CA:TRUE required)", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load issuer: issuer %q lacks the certSign key usage", cert.Subject)
	}
	now := time.Now()
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("load issuer: issuer %q is not valid before %s; check the clock", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("load issuer: issuer %q expired at %s; rotate it", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("load issuer: issuer %q does not chain to the trust anchors: %w", cert.Subject, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load issuer: issuer key: %w", err)
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("load issuer: the issuer key does not belong to issuer certificate %q", cert.Subject)
	}
	is := &Issuer{cert: cert, key: key, anchors: anchors}
	for _, c := range certs {
		if isAnchor(c, anchors) {
			break
		}
		is.chain = append(is.chain, c.Raw)
	}
	return is, nil
}

func isAnchor(c *x509.Certificate, anchors []*x509.Certificate) bool {
	for _, a := range anchors {
		if c.Equal(a) {
			return true
		}
	}
	return false
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return nil, errors.New("no PEM block found")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY or EC PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want an ECDSA key", k)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// serial returns a random positive 128-bit serial number.
func serial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
