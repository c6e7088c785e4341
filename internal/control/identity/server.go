package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/identityv1"
	"weft.dev/weft/internal/mtls"
)

// maxCSRSize bounds a CSR; a P-256 CSR is a few hundred bytes.
const maxCSRSize = 16 << 10

// Server implements identityv1.IdentityServer. Serve it only over TLS made
// with mtls.ControlServerConfig and ca.ServingCerts: the token must never
// travel in plaintext.
type Server struct {
	identityv1.UnimplementedIdentityServer
	ca   *CA
	auth Authenticator
	log  *slog.Logger
}

// NewServer returns the Identity API backed by ca and auth.
func NewServer(ca *CA, auth Authenticator, logger *slog.Logger) *Server {
	return &Server{ca: ca, auth: auth, log: logger.With("component", "identity")}
}

// Certify authenticates req.Token, and signs req.CsrDer for the identity
// the token proves.
func (s *Server) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	id, err := s.auth.Authenticate(ctx, req.GetToken())
	if err != nil {
		s.log.WarnContext(ctx, "identity request refused", "proxy", req.GetProxyId(), "err", err)
		if errors.Is(err, ErrUnauthenticated) {
			return nil, status.Errorf(codes.Unauthenticated,
				"proof of identity refused: %v; give the proxy the token issued for its workload", err)
		}
		return nil, status.Errorf(codes.Unavailable, "proof of identity could not be checked: %v; retry later", err)
	}
	if peerID, err := PeerID(ctx); err == nil && peerID != id.String() {
		// A renewal over mutual TLS: the certificate and the token must
		// name the same workload, else one of them was stolen or mixed up.
		s.log.WarnContext(ctx, "certificate and token disagree", "proxy", req.GetProxyId(), "certificate", peerID, "token", id.String())
		return nil, status.Errorf(codes.PermissionDenied,
			"the client certificate is %s but the token proves %s; give each proxy its own workload's token", peerID, id)
	}
	if id == ControllerIdentity(s.ca.TrustDomain()) {
		// A workload holding the controller's identity could impersonate
		// the controller to every proxy: it is never issued through the API.
		s.log.WarnContext(ctx, "controller identity requested", "proxy", req.GetProxyId())
		return nil, status.Errorf(codes.PermissionDenied,
			"identity %s is reserved for the controller; run workloads under another service account", id)
	}
	if len(req.GetCsrDer()) == 0 || len(req.GetCsrDer()) > maxCSRSize {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request of %d bytes; send a DER PKCS#10 request under %d bytes", len(req.GetCsrDer()), maxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsrDer())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request does not parse: %v", err)
	}
	chain, err := s.ca.Sign(csr, id, 0)
	if err != nil {
		s.log.WarnContext(ctx, "certificate refused", "proxy", req.GetProxyId(), "identity", id.String(), "err", err)
		if errors.Is(err, ErrBadRequest) {
			return nil, status.Errorf(codes.InvalidArgument, "certificate for %s refused: %v", id, err)
		}
		return nil, status.Errorf(codes.Internal, "certificate for %s not issued: %v", id, err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issued certificate does not parse: %v", err)
	}
	s.log.InfoContext(ctx, "certificate issued", "proxy", req.GetProxyId(), "identity", id.String(),
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return &identityv1.CertifyResponse{
		ChainDer:        chain,
		TrustAnchorsDer: s.ca.Anchors(),
		NotAfterUnix:    leaf.NotAfter.Unix(),
	}, nil
}

// PeerID returns the SPIFFE ID of the proxy calling a gRPC method, from
// the client certificate it presented (verified during the handshake by
// mtls.ControlServerConfig). It returns an error when the call came without
// a certificate (a proxy's first Certify) or not over TLS. Use it to let a
// proxy watch only its own configuration.
func PeerID(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", errors.New("no peer in the call context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", errors.New("call did not come over TLS")
	}
	return mtls.PeerIdentity(info.State)
}
