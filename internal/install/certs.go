package install

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"time"

	"weft.dev/weft/internal/control/identity"
)

// Certs are the secrets `weft install` writes into the manifests. Tests
// give fixed ones for golden output; GenerateCerts makes new ones.
type Certs struct {
	// TrustAnchorsPEM, IssuerCertPEM and IssuerKeyPEM are the mesh's
	// identity: the anchors every proxy trusts and the issuer the
	// controller signs workload certificates with.
	TrustAnchorsPEM, IssuerCertPEM, IssuerKeyPEM []byte
	// WebhookCAPEM signed WebhookCertPEM, the injector webhook's serving
	// certificate for the controller's Service; the API server verifies
	// it against WebhookCAPEM (the webhook's caBundle).
	WebhookCAPEM, WebhookCertPEM, WebhookKeyPEM []byte
	// APIToken is the bearer token of the controller's HTTP API.
	APIToken string
}

// GenerateCerts makes a trust anchor and an issuer for trustDomain (unless
// the identity is given in files: all three paths or none), the webhook's
// serving certificate for the Service weft-controller in namespace, and an
// API token.
func GenerateCerts(trustDomain, namespace, anchorsFile, issuerCertFile, issuerKeyFile string) (*Certs, error) {
	c := &Certs{}
	given := 0
	for _, p := range []string{anchorsFile, issuerCertFile, issuerKeyFile} {
		if p != "" {
			given++
		}
	}
	switch given {
	case 0:
		var err error
		c.TrustAnchorsPEM, c.IssuerCertPEM, c.IssuerKeyPEM, err = identity.GenerateRoots(trustDomain, 0)
		if err != nil {
			return nil, err
		}
	case 3:
		if _, err := identity.LoadIssuerFiles(anchorsFile, issuerCertFile, issuerKeyFile); err != nil {
			return nil, fmt.Errorf("%w; give a valid trust anchor, issuer certificate and key, or none of the three flags to generate them", err)
		}
		for _, f := range []struct {
			path string
			dst  *[]byte
		}{{anchorsFile, &c.TrustAnchorsPEM}, {issuerCertFile, &c.IssuerCertPEM}, {issuerKeyFile, &c.IssuerKeyPEM}} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f.path, err)
			}
			*f.dst = b
		}
	default:
		return nil, fmt.Errorf("give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none to generate them")
	}
	var err error
	c.WebhookCAPEM, c.WebhookCertPEM, c.WebhookKeyPEM, err = webhookCerts(namespace)
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("generate API token: %w", err)
	}
	c.APIToken = hex.EncodeToString(tok)
	return c, nil
}

// webhookCerts makes a CA and the serving certificate of the Service
// weft-controller in namespace, both valid for a year.
func webhookCerts(namespace string) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate webhook CA key: %w", err)
	}
	ca := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft webhook CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create webhook CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse webhook CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate webhook key: %w", err)
	}
	svc := ControllerName + "." + namespace + ".svc"
	leaf := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: svc},
		DNSNames:     []string{svc, svc + ".cluster.local"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create webhook certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode webhook key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1))
}
