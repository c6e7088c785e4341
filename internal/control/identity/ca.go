package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/mtls"
)

// Defaults of CAConfig.
const (
	DefaultLifetime    = 24 * time.Hour
	DefaultMaxLifetime = 48 * time.Hour
	// clockSkew backdates NotBefore so a peer whose clock is slightly
	// behind still accepts a fresh certificate.
	clockSkew = time.Minute
)

// CAConfig configures a CA.
type CAConfig struct {
	// TrustDomain is the only trust domain the CA signs for. Empty means
	// "cluster.local".
	TrustDomain string
	// DefaultLifetime of a leaf when the caller asks for none. Zero means
	// DefaultLifetime (24h).
	DefaultLifetime time.Duration
	// MaxLifetime caps every leaf, whatever is asked. Zero means
	// DefaultMaxLifetime (48h).
	MaxLifetime time.Duration
}

// CA signs workload certificates with an issuer. Rotate swaps the issuer
// and the trust bundle without a restart.
type CA struct {
	td          string
	defLifetime time.Duration
	maxLifetime time.Duration
	issuer      atomic.Pointer[Issuer]
	bundle      *mtls.Bundle
}

// NewCA returns a CA signing with issuer.
func NewCA(issuer *Issuer, cfg CAConfig) (*CA, error) {
	if issuer == nil {
		return nil, errors.New("identity: no issuer; load one with LoadIssuer")
	}
	ca := &CA{td: cfg.TrustDomain, defLifetime: cfg.DefaultLifetime, maxLifetime: cfg.MaxLifetime}
	if ca.td == "" {
		ca.td = "cluster.local"
	}
	if ca.maxLifetime <= 0 {
		ca.maxLifetime = DefaultMaxLifetime
	}
	if ca.defLifetime <= 0 {
		ca.defLifetime = DefaultLifetime
	}
	ca.defLifetime = min(ca.defLifetime, ca.maxLifetime)
	if err := (Identity{TrustDomain: ca.td, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil {
		return nil, fmt.Errorf("identity: trust domain: %w", err)
	}
	b, err := mtls.NewBundle(issuer.anchors...)
	if err != nil {
		return nil, err
	}
	ca.bundle = b
	ca.issuer.Store(issuer)
	return ca, nil
}

// TrustDomain returns the trust domain the CA signs for.
func (ca *CA) TrustDomain() string { return ca.td }

// Bundle returns the CA's trust bundle; it follows Rotate.
func (ca *CA) Bundle() *mtls.Bundle { return ca.bundle }

// Rotate makes issuer sign from now on and its anchors the trust bundle.
// Proxies learn the bundle when they renew. To rotate without dropping a
// connection, rotate in three steps, each after every proxy has renewed:
//  1. the old issuer with the old and the new anchor (proxies learn the new
//     anchor before anything is signed by it);
//  2. the new issuer with both anchors;
//  3. the new issuer with the new anchor only.
//
// Replacing only the issuer under the same anchor needs step 2 alone.
func (ca *CA) Rotate(issuer *Issuer) error {
	if issuer == nil {
		return errors.New("identity: rotate: no issuer")
	}
	if err := ca.bundle.Set(issuer.anchors); err != nil {
		return fmt.Errorf("identity: rotate: %w", err)
	}
	ca.issuer.Store(issuer)
	return nil
}

// Anchors returns the trust bundle in DER, as sent to proxies.
func (ca *CA) Anchors() [][]byte {
	var out [][]byte
	for _, a := range ca.bundle.Anchors() {
		out = append(out, a.Raw)
	}
	return out
}

// Sign issues a leaf certificate for id with csr's public key and returns
// the chain in DER, leaf first. id must come from a verified proof of
// identity: of the CSR only the public key is used (after checking the
// CSR's signature), never its subject, SANs or extensions, so a CSR naming
// another workload, asking for extra SANs or for CA:TRUE gets none of that.
// The key must be ECDSA P-256. lifetime zero means the default; any
// lifetime is capped at the maximum and at the issuer's own expiry.
func (ca *CA) Sign(csr *x509.CertificateRequest, id Identity, lifetime time.Duration) ([][]byte, error) {
	if csr == nil {
		return nil, fmt.Errorf("no certificate request: %w", ErrBadRequest)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature does not verify (%w): %w", ErrBadRequest, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certificate request key is %s, want ECDSA P-256: %w", keyName(csr), ErrBadRequest)
	}
	return ca.sign(pub, id, lifetime, nil, nil)
}

func (ca *CA) sign(pub *ecdsa.PublicKey, id Identity, lifetime time.Duration, dns []string, ips []net.IP) ([][]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	if id.TrustDomain != ca.td {
		return nil, fmt.Errorf("identity %s is outside trust domain %s", id, ca.td)
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", id, err)
	}
	if lifetime <= 0 {
		lifetime = ca.defLifetime
	}
	lifetime = min(lifetime, ca.maxLifetime)
	is := ca.issuer.Load()
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(is.cert.NotAfter) {
		notAfter = is.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issuer %q expired at %s; rotate it", is.cert.Subject, is.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{u},
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.cert, pub, is.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	return append([][]byte{der}, is.chain...), nil
}

// ErrBadRequest is wrapped by Sign's error when the certificate request
// itself is unacceptable (bad signature, key type).
var ErrBadRequest = errors.New("bad certificate request")

func keyName(csr *x509.CertificateRequest) string {
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + k.Curve.Params().Name
	}
	return csr.PublicKeyAlgorithm.String()
}

// DefaultControllerDNS and DefaultControllerIPs are the names in the
// controller's serving certificate when none are given (local mode).
var (
	DefaultControllerDNS = []string{"localhost"}
	DefaultControllerIPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
)

// ServingCertificate issues the controller's own certificate: a fresh
// in-memory ECDSA P-256 key, the SPIFFE ID of ControllerIdentity, the DNS
// names and IP addresses given (nil means DefaultControllerDNS /
// DefaultControllerIPs), server and client authentication.
func (ca *CA) ServingCertificate(dns []string, ips []net.IP, lifetime time.Duration) (*tls.Certificate, error) {
	if dns == nil {
		dns = DefaultControllerDNS
	}
	if ips == nil {
		ips = DefaultControllerIPs
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("controller key: %w", err)
	}
	chain, err := ca.sign(&key.PublicKey, ControllerIdentity(ca.td), lifetime, dns, ips)
	if err != nil {
		return nil, fmt.Errorf("controller certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("controller certificate: %w", err)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// ServingCerts returns the controller's serving certificate source for
// mtls.ControlServerConfig: it issues a certificate on first use and a new
// one on the first handshake after 70% of the current one's lifetime, so
// the controller never serves an expired certificate and needs no timer.
func (ca *CA) ServingCerts(dns []string, ips []net.IP) mtls.CertSource {
	return &servingCerts{ca: ca, dns: dns, ips: ips}
}

type servingCerts struct {
	ca  *CA
	dns []string
	ips []net.IP

	// mu guards cur, renewAt and issuer.
	mu      sync.Mutex
	cur     *tls.Certificate
	renewAt time.Time
	// issuer signed cur; after a Rotate the certificate is issued again
	// at once, since proxies may stop trusting the old issuer's anchor.
	issuer *Issuer
}

func (s *servingCerts) Certificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	issuer := s.ca.issuer.Load()
	if s.cur != nil && now.Before(s.renewAt) && issuer == s.issuer {
		return s.cur, nil
	}
	c, err := s.ca.ServingCertificate(s.dns, s.ips, 0)
	if err != nil {
		if s.cur != nil && now.Before(s.cur.Leaf.NotAfter) {
			return s.cur, nil // keep serving the still valid one
		}
		return nil, err
	}
	// From now, not from NotBefore, which is backdated for clock skew.
	s.cur, s.renewAt, s.issuer = c, now.Add(c.Leaf.NotAfter.Sub(now)*7/10), issuer
	return c, nil
}

// CertStatus describes one CA certificate for `weft check` and the
// dashboard.
type CertStatus struct {
	Role     string // "anchor" or "issuer"
	Subject  string
	NotAfter time.Time
}

// Status lists the trust anchors and the issuer with their expiry, anchors
// first. `weft check` warns when one expires within 30 days.
func (ca *CA) Status() []CertStatus {
	var out []CertStatus
	for _, a := range ca.bundle.Anchors() {
		out = append(out, CertStatus{Role: "anchor", Subject: a.Subject.String(), NotAfter: a.NotAfter})
	}
	is := ca.issuer.Load()
	return append(out, CertStatus{Role: "issuer", Subject: is.cert.Subject.String(), NotAfter: is.cert.NotAfter})
}
