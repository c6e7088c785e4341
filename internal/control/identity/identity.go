// Package identity is the controller's certificate authority: it holds the
// trust anchors and the issuer, authenticates a proxy's proof of identity
// (a token), and signs a short-lived workload certificate whose identity
// comes from that proof, never from the certificate request. It serves the
// Identity gRPC API (api/identityv1) and makes the controller's own serving
// certificate.
//
// Only the controller (and the local-mode supervisor that embeds it) may
// import identity; the proxy must not. CA, JoinTokens and Server are safe
// for concurrent use.
package identity

import (
	"fmt"
	"strings"

	"weft.dev/weft/internal/mtls"
)

// Identity is a workload identity: the SPIFFE ID
// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String returns the SPIFFE ID.
func (id Identity) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// Validate reports whether the identity spells a valid SPIFFE ID with
// exactly the three parts given (no part may hold a '/').
func (id Identity) Validate() error {
	for _, p := range []struct{ name, v string }{
		{"trust domain", id.TrustDomain}, {"namespace", id.Namespace}, {"service account", id.ServiceAccount},
	} {
		if p.v == "" || strings.Contains(p.v, "/") {
			return fmt.Errorf("identity %s: %s %q must be non-empty and hold no '/'", id, p.name, p.v)
		}
	}
	if err := mtls.ParseID(id.String()); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// ControllerIdentity is the identity in the controller's serving
// certificate; proxies check the controller against it.
func ControllerIdentity(trustDomain string) Identity {
	return Identity{TrustDomain: trustDomain, Namespace: "weft", ServiceAccount: "weft-controller"}
}
