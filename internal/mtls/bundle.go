package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
)

// Bundle is the set of trust anchors a peer's chain must reach. It can be
// replaced while connections are made: during an issuer or anchor rotation
// it holds the old and the new anchor, so certificates from either verify.
// The zero value is an empty bundle that verifies nothing.
type Bundle struct {
	p atomic.Pointer[bundleState]
}

type bundleState struct {
	anchors []*x509.Certificate
	pool    *x509.CertPool
}

// NewBundle returns a bundle of anchors; see Set.
func NewBundle(anchors ...*x509.Certificate) (*Bundle, error) {
	b := &Bundle{}
	if err := b.Set(anchors); err != nil {
		return nil, err
	}
	return b, nil
}

// ParseBundlePEM returns a bundle of the CERTIFICATE blocks in pemBytes.
func ParseBundlePEM(pemBytes []byte) (*Bundle, error) {
	certs, err := ParseCertsPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	return NewBundle(certs...)
}

// Set replaces the anchors. Every anchor must be a CA certificate; on error
// the bundle keeps its previous anchors.
func (b *Bundle) Set(anchors []*x509.Certificate) error {
	if len(anchors) == 0 {
		return errors.New("trust bundle: no anchors; give at least one CA certificate")
	}
	pool := x509.NewCertPool()
	for _, a := range anchors {
		if !a.BasicConstraintsValid || !a.IsCA {
			return fmt.Errorf("trust bundle: %q is not a CA certificate and cannot be a trust anchor", a.Subject)
		}
		pool.AddCert(a)
	}
	b.p.Store(&bundleState{anchors: append([]*x509.Certificate(nil), anchors...), pool: pool})
	return nil
}

// SetDER is Set with DER-encoded anchors.
func (b *Bundle) SetDER(ders [][]byte) error {
	certs := make([]*x509.Certificate, 0, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return fmt.Errorf("trust bundle: anchor %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	return b.Set(certs)
}

// Pool returns the anchors as a pool, or nil when the bundle is empty. The
// pool must not be modified.
func (b *Bundle) Pool() *x509.CertPool {
	if s := b.p.Load(); s != nil {
		return s.pool
	}
	return nil
}

// Anchors returns a copy of the anchors.
func (b *Bundle) Anchors() []*x509.Certificate {
	if s := b.p.Load(); s != nil {
		return append([]*x509.Certificate(nil), s.anchors...)
	}
	return nil
}

// PEM returns the anchors PEM-encoded.
func (b *Bundle) PEM() []byte {
	var out []byte
	for _, a := range b.Anchors() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	return out
}

// ParseCertsPEM returns every CERTIFICATE block of pemBytes, in order. Other
// block types are an error, so a key pasted in the wrong file is noticed.
func ParseCertsPEM(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, pemBytes = pem.Decode(pemBytes)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q where a CERTIFICATE was expected", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// Current holds the certificate a side presents and lets it be replaced
// atomically while handshakes run. The zero value holds nothing.
type Current struct {
	p atomic.Pointer[tls.Certificate]
}

var _ CertSource = (*Current)(nil)

// Store makes cert the current certificate. cert must not be modified later.
func (c *Current) Store(cert *tls.Certificate) { c.p.Store(cert) }

// Certificate returns the current certificate, or an error before Store.
func (c *Current) Certificate() (*tls.Certificate, error) {
	if cert := c.p.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("mtls: no certificate yet; the proxy has not been certified by the controller")
}
