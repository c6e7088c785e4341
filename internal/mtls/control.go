package mtls

import (
	"crypto/tls"
	"time"
)

// ControlServerConfig is the controller's gRPC serving side. A client
// certificate is optional: the first Identity.Certify call of a proxy has
// none and proves itself with a token; later calls and the mesh API present
// the proxy's certificate, which is then verified like a mesh client's
// (chain to bundle, clientAuth, one SPIFFE ID) and available through
// PeerIdentity. A presented but invalid certificate fails the handshake.
func ControlServerConfig(src CertSource, bundle *Bundle) *tls.Config {
	c := base(src)
	c.GetClientCertificate = nil
	c.ClientAuth = tls.RequestClientCert
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := VerifyPeer(cs.PeerCertificates, bundle, ClientAuth, "")
		return err
	}
	return c
}

// ControlClientConfig is a proxy's side of its connection to the controller.
// The controller is verified against bundle and must be controllerID (its
// certificate may also carry DNS and IP SANs). src may be nil, or have no
// certificate yet: the handshake is then server-authenticated only, as the
// first Identity.Certify is; once src holds a certificate, new connections
// present it, unless it is expired or not yet valid.
func ControlClientConfig(src CertSource, bundle *Bundle, controllerID string) *tls.Config {
	c := base(src)
	c.GetCertificate = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
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
		return cert, nil
	}
	// Hostname verification off; VerifyController checks the chain and the
	// controller's SPIFFE ID.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := VerifyController(cs.PeerCertificates, bundle, controllerID)
		return err
	}
	return c
}
