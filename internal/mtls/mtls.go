// Package mtls holds the TLS configurations and the certificate checks of
// the mesh: proxy-to-proxy mutual TLS, and the TLS between proxies and the
// controller. Identities are SPIFFE IDs carried in one URI SAN, so the
// standard hostname verification does not apply; every configuration here
// turns it off and verifies the chain, the key usages and the SPIFFE ID
// itself, in VerifyConnection, on every handshake including resumed ones.
//
// How the pieces fit:
//   - outbound, per destination endpoint: tls.Client over the TCP connection
//     with ClientConfig(cert, bundle, endpoint's SPIFFE ID, []string{ALPN of
//     the protocol}); the handshake fails unless the server is that identity;
//   - inbound: peek until HelloRecordComplete; if IsMeshHello, tls.Server
//     with ServerConfig, then ConnectionState().NegotiatedProtocol is the
//     protocol and PeerIdentity the caller; otherwise the bytes are plaintext
//     or the application's own TLS, for detection (permissive) or refusal
//     (strict);
//   - proxy to controller: ControlClientConfig, or ControlCredentials for
//     gRPC; controller: ControlServerConfig, or ControlServerCredentials for
//     gRPC, which complete a proxy's chain with the controller's own issuer
//     so that a proxy may present its leaf alone.
//
// Both weft-proxy and weft-controller may import mtls; it must never import
// Kubernetes libraries or other weft packages. Every function and every
// method of Bundle and Current is safe to call concurrently.
package mtls

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// ALPN protocol names of proxy-to-proxy connections. The protocol of a
// meshed connection is negotiated in the TLS handshake; there is no preamble.
const (
	// ALPNHTTP1 carries HTTP/1.1.
	ALPNHTTP1 = "weft/h1"
	// ALPNHTTP2 carries HTTP/2, including gRPC.
	ALPNHTTP2 = "weft/h2"
	// ALPNTCP carries opaque TCP bytes.
	ALPNTCP = "weft/tcp"
)

// MeshALPN lists every protocol a proxy's inbound side accepts.
var MeshALPN = []string{ALPNHTTP2, ALPNHTTP1, ALPNTCP}

// CertSource yields the certificate a side presents. It is called on every
// handshake, so a renewed certificate is used without a restart.
type CertSource interface {
	// Certificate returns the current certificate with its private key and
	// the issuer chain. It returns an error when there is none yet.
	Certificate() (*tls.Certificate, error)
}

// curves are the key exchanges offered. X25519 first, P-256 for peers that
// only speak NIST curves. The post-quantum hybrid X25519MLKEM768 is not
// offered yet (it adds about 1.1 KB to every ClientHello); putting it first
// here enables it.
var curves = []tls.CurveID{tls.X25519, tls.CurveP256}

func base(src CertSource) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: curves,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
	}
}

// ServerConfig is the inbound side of a proxy-to-proxy connection. It
// requires a client certificate that chains to an anchor of bundle, is meant
// for client authentication and names exactly one SPIFFE ID; it does not
// decide which IDs may connect (authorization happens after the handshake,
// with PeerIdentity). The client must negotiate one of MeshALPN; the
// negotiated protocol is in ConnectionState().NegotiatedProtocol. src must
// not be nil; while it has no certificate every handshake fails, so a proxy
// that is not certified refuses mesh connections.
func ServerConfig(src CertSource, bundle *Bundle) *tls.Config {
	c := base(src)
	c.GetClientCertificate = nil
	c.NextProtos = append([]string(nil), MeshALPN...)
	// RequireAnyClientCert: the standard verification would also check a
	// hostname-free chain, but we need the chain, the EKU and the SAN shape
	// checked together against a bundle that can change, so we do it below.
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.NegotiatedProtocol == "" {
			return errors.New("mtls: client negotiated no application protocol; a weft proxy offers one of weft/h1, weft/h2, weft/tcp")
		}
		_, err := VerifyPeer(cs.PeerCertificates, bundle, ClientAuth, "")
		return err
	}
	return c
}

// ClientConfig is the outbound side of a proxy-to-proxy connection towards a
// proxy whose workload must be expectedID (the identity discovery gave for
// the endpoint). It presents src's certificate, offers alpn and accepts the
// server only if its certificate chains to an anchor of bundle, is meant for
// server authentication, and names exactly expectedID. src must not be nil.
func ClientConfig(src CertSource, bundle *Bundle, expectedID string, alpn []string) *tls.Config {
	c := base(src)
	c.GetCertificate = nil
	c.NextProtos = append([]string(nil), alpn...)
	// InsecureSkipVerify turns off hostname verification only; the chain is
	// verified in VerifyConnection, which Go runs regardless.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(alpn) > 0 && cs.NegotiatedProtocol == "" {
			return fmt.Errorf("mtls: server %s negotiated no application protocol (offered %v)", expectedID, alpn)
		}
		_, err := VerifyPeer(cs.PeerCertificates, bundle, ServerAuth, expectedID)
		return err
	}
	return c
}

// PeerIdentity returns the SPIFFE ID of the peer of a completed handshake
// made with a configuration from this package, which verified the peer's
// certificate during the handshake. It re-checks the leaf's shape but not
// its chain, so never use it on connections made with other configurations.
func PeerIdentity(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errors.New("mtls: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("mtls: peer presented no certificate")
	}
	return leafID(cs.PeerCertificates[0], false)
}
