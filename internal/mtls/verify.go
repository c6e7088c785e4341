package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Usage is the extended key usage a peer certificate must carry.
type Usage = x509.ExtKeyUsage

// The usages a peer certificate is checked for: a server's certificate must
// carry ServerAuth, a client's ClientAuth.
const (
	ServerAuth Usage = x509.ExtKeyUsageServerAuth
	ClientAuth Usage = x509.ExtKeyUsageClientAuth
)

// VerifyPeer checks a mesh peer's certificate chain (leaf first, as sent in
// the handshake) and returns the peer's SPIFFE ID. The chain must verify to
// an anchor of bundle with usage; the leaf must not be a CA, must carry usage
// explicitly, must hold an ECDSA P-256 key and exactly one subject
// alternative name, a URI that is a valid SPIFFE ID, and the
// digitalSignature key usage. When expectedID is not empty, that ID must
// equal expectedID byte for byte.
func VerifyPeer(certs []*x509.Certificate, bundle *Bundle, usage Usage, expectedID string) (string, error) {
	return verify(certs, bundle, usage, expectedID, false, nil)
}

// VerifyController checks the controller's serving chain: like VerifyPeer
// with ServerAuth, except that DNS and IP SANs are allowed beside the one
// URI SAN (so the controller can also be reached by name), and expectedID is
// required.
func VerifyController(certs []*x509.Certificate, bundle *Bundle, expectedID string) (string, error) {
	if expectedID == "" {
		return "", errors.New("mtls: no controller identity to check the controller's certificate against")
	}
	return verify(certs, bundle, ServerAuth, expectedID, true, nil)
}

// verify is VerifyPeer and VerifyController; issuers are intermediates
// the verifier holds itself, besides those the peer sent.
func verify(certs []*x509.Certificate, bundle *Bundle, usage Usage, expectedID string, hostSANs bool, issuers []*x509.Certificate) (string, error) {
	if len(certs) == 0 {
		return "", errors.New("mtls: peer presented no certificate")
	}
	leaf := certs[0]
	id, err := leafID(leaf, hostSANs)
	if err != nil {
		return "", err
	}
	// Go treats a certificate without an EKU extension as good for any
	// usage; a mesh certificate must say what it is for, so that a
	// client-only certificate can't impersonate a server and vice versa.
	if !hasUsage(leaf, usage) {
		return "", fmt.Errorf("mtls: certificate of %s lacks extended key usage %s", id, usageName(usage))
	}
	if bundle == nil {
		return "", errors.New("mtls: no trust bundle to verify the peer against")
	}
	pool := bundle.Pool()
	if pool == nil {
		return "", errors.New("mtls: trust bundle is empty")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, c := range issuers {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return "", fmt.Errorf("mtls: certificate of %s does not verify against the trust anchors: %w", id, err)
	}
	// Exact comparison: no prefix match (sa/web vs sa/web-admin), no case
	// folding, no normalisation beyond what ParseID already rejected.
	if expectedID != "" && id != expectedID {
		return "", fmt.Errorf("mtls: peer is %s, want %s", id, expectedID)
	}
	return id, nil
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// GeneralName tags (RFC 5280 4.2.1.6).
const (
	tagEmail = 1
	tagDNS   = 2
	tagURI   = 6
	tagIP    = 7
)

// leafID returns the SPIFFE ID of a leaf after checking the leaf's shape.
// It reads the URI from the raw SAN extension, not from x509's parsed URL,
// so that no percent-decoding or other normalisation can change it.
func leafID(leaf *x509.Certificate, hostSANs bool) (string, error) {
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		// A CA leaf could sign certificates for any identity.
		return "", errors.New("mtls: peer certificate is a CA certificate, not a workload certificate")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		// TLS 1.3 authenticates with a signature; a key not meant for
		// signatures is not a workload key.
		return "", errors.New("mtls: peer certificate lacks the digitalSignature key usage")
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", fmt.Errorf("mtls: peer certificate key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	var raw []byte
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidSAN) {
			raw = e.Value
		}
	}
	if raw == nil {
		return "", errors.New("mtls: peer certificate has no subject alternative name; want one SPIFFE ID URI")
	}
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return "", errors.New("mtls: peer certificate has a malformed subject alternative name")
	}
	var uris []string
	for names := seq.Bytes; len(names) > 0; {
		var n asn1.RawValue
		names, err = asn1.Unmarshal(names, &n)
		if err != nil || n.Class != asn1.ClassContextSpecific {
			return "", errors.New("mtls: peer certificate has a malformed subject alternative name")
		}
		switch {
		case n.Tag == tagURI && !n.IsCompound:
			uris = append(uris, string(n.Bytes))
		case hostSANs && (n.Tag == tagDNS || n.Tag == tagIP):
		default:
			// A DNS name or e-mail address spelling the SPIFFE ID must
			// not pass for it, nor anything else a peer could read.
			return "", fmt.Errorf("mtls: peer certificate has a %s SAN; a workload certificate holds exactly one URI SAN", sanKind(n.Tag))
		}
	}
	if len(uris) != 1 {
		return "", fmt.Errorf("mtls: peer certificate has %d URI SANs, want exactly one SPIFFE ID", len(uris))
	}
	if err := ParseID(uris[0]); err != nil {
		return "", fmt.Errorf("mtls: peer certificate: %w", err)
	}
	return uris[0], nil
}

func hasUsage(c *x509.Certificate, u Usage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}

func usageName(u Usage) string {
	switch u {
	case ServerAuth:
		return "serverAuth"
	case ClientAuth:
		return "clientAuth"
	}
	return fmt.Sprintf("eku(%d)", u)
}

func sanKind(tag int) string {
	switch tag {
	case 0:
		return "otherName"
	case tagEmail:
		return "e-mail"
	case tagDNS:
		return "DNS"
	case 4:
		return "directoryName"
	case tagURI:
		return "URI"
	case tagIP:
		return "IP"
	}
	return fmt.Sprintf("tag %d", tag)
}

// ParseID checks that s is a SPIFFE ID as the SPIFFE standard spells it:
// "spiffe://" + a trust domain of lower-case letters, digits, '.', '-' and
// '_' + a path of one or more non-empty segments of letters, digits, '.',
// '-' and '_' (not "." or ".."). No port, user, query, fragment, trailing
// slash or percent-encoding: there is exactly one way to write an ID, so
// string equality is identity equality.
func ParseID(s string) error {
	const scheme = "spiffe://"
	if !strings.HasPrefix(s, scheme) {
		return fmt.Errorf("%q is not a SPIFFE ID: it must start with %q", s, scheme)
	}
	td, path, ok := strings.Cut(s[len(scheme):], "/")
	if td == "" {
		return fmt.Errorf("%q is not a SPIFFE ID: empty trust domain", s)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("%q is not a SPIFFE ID: trust domain may hold only a-z, 0-9, '.', '-', '_'", s)
		}
	}
	if !ok || path == "" {
		return fmt.Errorf("%q is not a workload SPIFFE ID: empty path", s)
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q is not a SPIFFE ID: empty, '.' or '..' path segment", s)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a SPIFFE ID: path may hold only letters, digits, '.', '-', '_'", s)
			}
		}
	}
	return nil
}
