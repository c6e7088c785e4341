package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// ControlServerConfig is the controller's TLS serving side. A client
// certificate is optional: the first Identity.Certify call of a proxy has
// none and proves itself with a token; later calls and the mesh API present
// the proxy's certificate, which is then verified like a mesh client's
// (chain to bundle, clientAuth, one SPIFFE ID) and available through
// PeerIdentity. A presented but invalid certificate fails the handshake.
// The gRPC server uses it through ControlServerCredentials.
func ControlServerConfig(src CertSource, bundle *Bundle) *tls.Config {
	c := base(src)
	c.GetClientCertificate = nil
	c.ClientAuth = tls.RequestClientCert
	c.VerifyConnection = verifyControlClient(bundle, nil)
	return c
}

// ControlServerCredentials is ControlServerConfig as gRPC transport
// credentials, which also complete a client's chain with the issuer chain
// of the certificate served in the same handshake, and name those issuers
// in the certificate request (the acceptable certificate authorities of
// TLS 1.3): a proxy whose leaf that very issuer signed may then present
// its leaf alone (see ControlCredentials). The issuers are only
// intermediates: the chain must still verify to an anchor of bundle. A
// connection keeps the certificates its client presented for its whole
// life, so a leaf alone is one parsed certificate less per connected
// proxy.
func ControlServerCredentials(src CertSource, bundle *Bundle) credentials.TransportCredentials {
	c := ControlServerConfig(src, bundle)
	return &controlServerCreds{
		TransportCredentials: credentials.NewTLS(c),
		src:                  src, bundle: bundle, base: c,
	}
}

// controlServerCreds is ControlServerCredentials: one set of credentials
// per serving certificate, made on its first handshake (src renews its
// certificate now and then). The embedded credentials answer everything
// but ServerHandshake.
type controlServerCreds struct {
	credentials.TransportCredentials
	src    CertSource
	bundle *Bundle
	base   *tls.Config
	last   atomic.Pointer[servedCreds]
}

// servedCreds are the credentials serving cert.
type servedCreds struct {
	cert  *tls.Certificate
	creds credentials.TransportCredentials
}

func (c *controlServerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cert, err := c.src.Certificate()
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: no serving certificate: %w", err)
	}
	s := c.last.Load()
	if s == nil || s.cert != cert {
		s = &servedCreds{cert: cert, creds: credentials.NewTLS(servingWith(c.base, cert, c.bundle))}
		c.last.Store(s)
	}
	return s.creds.ServerHandshake(conn)
}

func (c *controlServerCreds) Clone() credentials.TransportCredentials {
	return ControlServerCredentials(c.src, c.bundle)
}

// servingWith is the configuration c serves cert with: cert in every
// handshake, and its issuer chain named as acceptable authorities and
// used to complete the client's chain.
func servingWith(c *tls.Config, cert *tls.Certificate, bundle *Bundle) *tls.Config {
	var issuers []*x509.Certificate
	for _, der := range cert.Certificate[1:] {
		// The source's own chain; were a certificate unreadable, the
		// client would just have to send it itself.
		if ic, err := x509.ParseCertificate(der); err == nil {
			issuers = append(issuers, ic)
		}
	}
	cfg := c.Clone()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	if len(issuers) > 0 {
		pool := x509.NewCertPool()
		for _, ic := range issuers {
			pool.AddCert(ic)
		}
		// With RequestClientCert, Go does not verify against ClientCAs:
		// it only names them in the certificate request.
		cfg.ClientCAs = pool
	}
	cfg.VerifyConnection = verifyControlClient(bundle, issuers)
	return cfg
}

// verifyControlClient verifies a client certificate, if one was presented,
// with issuers as further intermediates.
func verifyControlClient(bundle *Bundle, issuers []*x509.Certificate) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := verify(cs.PeerCertificates, bundle, ClientAuth, "", false, issuers)
		return err
	}
}

// ControlClientConfig is a proxy's side of its connection to the controller.
// The controller is verified against bundle and must be controllerID (its
// certificate may also carry DNS and IP SANs). src may be nil, or have no
// certificate yet: the handshake is then server-authenticated only, as the
// first Identity.Certify is; once src holds a certificate, new connections
// present it, unless it is expired or not yet valid.
func ControlClientConfig(src CertSource, bundle *Bundle, controllerID string) *tls.Config {
	return controlClientConfig(src, bundle, controllerID, false)
}

// ControlCredentials is ControlClientConfig as gRPC transport credentials,
// with a configuration made afresh for every handshake so that it can
// present the leaf alone when the controller already holds the rest of
// the chain: when the controller's own chain, as it presented it in the
// handshake, holds every certificate of src's chain after the leaf, byte
// for byte, and the controller names the leaf's issuer among its
// acceptable certificate authorities (which says it completes chains with
// the issuers it serves with, see ControlServerCredentials). Otherwise, as with
// an older controller or after the controller's issuer changed, it
// presents the whole chain.
func ControlCredentials(src CertSource, bundle *Bundle, controllerID string) credentials.TransportCredentials {
	return &controlCreds{
		TransportCredentials: credentials.NewTLS(ControlClientConfig(src, bundle, controllerID)),
		src:                  src, bundle: bundle, controllerID: controllerID,
	}
}

// controlCreds is ControlCredentials. The embedded credentials answer
// everything but ClientHandshake.
type controlCreds struct {
	credentials.TransportCredentials
	src          CertSource
	bundle       *Bundle
	controllerID string
}

func (c *controlCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(controlClientConfig(c.src, c.bundle, c.controllerID, true)).ClientHandshake(ctx, authority, conn)
}

func (c *controlCreds) Clone() credentials.TransportCredentials {
	cp := *c
	cp.TransportCredentials = c.TransportCredentials.Clone()
	return &cp
}

// controlClientConfig is ControlClientConfig; with trim, the configuration
// serves one handshake and presents the leaf alone when the controller
// holds the rest of the chain (see ControlCredentials).
func controlClientConfig(src CertSource, bundle *Bundle, controllerID string, trim bool) *tls.Config {
	c := base(src)
	c.GetCertificate = nil
	// served is the controller's chain after its leaf, as presented in
	// this handshake: VerifyConnection runs before GetClientCertificate,
	// both on the handshake's goroutine.
	var served [][]byte
	c.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if src == nil {
			return &tls.Certificate{}, nil
		}
		cert, err := src.Certificate()
		if err != nil {
			// No certificate yet: send none; the token authenticates.
			return &tls.Certificate{}, nil
		}
		if now := time.Now(); cert.Leaf != nil && (now.After(cert.Leaf.NotAfter) || now.Before(cert.Leaf.NotBefore)) {
			// An expired certificate would fail the handshake and lock
			// the proxy out; without one, the token still authenticates.
			return &tls.Certificate{}, nil
		}
		if trim && controllerHolds(cert, cri.AcceptableCAs, served) {
			leaf := *cert
			leaf.Certificate = cert.Certificate[:1]
			return &leaf, nil
		}
		return cert, nil
	}
	// Hostname verification off; VerifyController checks the chain and the
	// controller's SPIFFE ID.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if _, err := VerifyController(cs.PeerCertificates, bundle, controllerID); err != nil {
			return err
		}
		served = served[:0]
		for _, pc := range cs.PeerCertificates[1:] {
			served = append(served, pc.Raw)
		}
		return nil
	}
	return c
}

// controllerHolds reports whether the controller completes cert's chain
// itself: it names the leaf's issuer in acceptable and served every
// certificate of the chain after the leaf.
func controllerHolds(cert *tls.Certificate, acceptable, served [][]byte) bool {
	if cert.Leaf == nil || len(cert.Certificate) < 2 {
		return false
	}
	if !slices.ContainsFunc(acceptable, func(dn []byte) bool { return bytes.Equal(dn, cert.Leaf.RawIssuer) }) {
		return false
	}
	for _, der := range cert.Certificate[1:] {
		if !slices.ContainsFunc(served, func(s []byte) bool { return bytes.Equal(s, der) }) {
			return false
		}
	}
	return true
}
