package httpapi

import (
	"net/http"
	"time"
)

// IdentityStatus reports the mesh's certificate authority and workload
// identities (the controller).
type IdentityStatus interface {
	IdentityStatus() IdentityResponse
}

// IdentityResponse is the body of GET /api/v1/identity.
type IdentityResponse struct {
	TrustDomain string `json:"trust_domain"`
	// Anchors are the trust anchors proxies verify peers against.
	Anchors []CertInfo `json:"anchors"`
	// Issuer signs the workload certificates.
	Issuer CertInfo `json:"issuer"`
	// Workloads are the meshed workloads, by SPIFFE ID.
	Workloads []WorkloadIdentity `json:"workloads"`
}

// CertInfo is one CA certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// WorkloadIdentity is one workload and its proxies' certificates.
type WorkloadIdentity struct {
	Service   string      `json:"service"`
	Namespace string      `json:"namespace"`
	Identity  string      `json:"identity"`
	Proxies   []ProxyLeaf `json:"proxies"`
}

// ProxyLeaf is the newest certificate the controller issued to a proxy;
// the times are nil when it issued none since it started.
type ProxyLeaf struct {
	ID           string     `json:"id"`
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	IssuedAt     *time.Time `json:"issued_at,omitempty"`
}

func (h *Handler) identity(w http.ResponseWriter, _ *http.Request) {
	if h.ident == nil {
		writeError(w, http.StatusServiceUnavailable, "this controller runs no certificate authority", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.ident.IdentityStatus())
}
