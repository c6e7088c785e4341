// Package tokenreview is the proxies' proof of identity on Kubernetes: an
// identity.Authenticator that checks a projected ServiceAccount token with
// the Kubernetes TokenReview API, for Weft's own audience, and maps the
// service account it proves to the workload's identity.
//
// Only the controller imports tokenreview (it pulls in client-go). An
// Authenticator is safe for concurrent use.
package tokenreview

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/identity"
)

// Audience is the audience of the tokens proxies present: a token issued
// for the API server (or anything else) cannot be replayed to Weft.
const Audience = "weft.dev/identity"

// serviceAccountPrefix starts the user name of a service account.
const serviceAccountPrefix = "system:serviceaccount:"

// Authenticator reviews tokens with the API server.
type Authenticator struct {
	client      kubernetes.Interface
	audience    string
	trustDomain string
}

var _ identity.Authenticator = (*Authenticator)(nil)

// New returns an Authenticator that creates TokenReviews with client (the
// controller needs RBAC permission to create tokenreviews). audience ""
// means Audience; trustDomain "" means config.DefaultTrustDomain.
func New(client kubernetes.Interface, audience, trustDomain string) *Authenticator {
	if audience == "" {
		audience = Audience
	}
	if trustDomain == "" {
		trustDomain = config.DefaultTrustDomain
	}
	return &Authenticator{client: client, audience: audience, trustDomain: trustDomain}
}

// Authenticate returns the identity of the service account token proves.
// Errors wrap identity.ErrUnauthenticated when the token proves nothing for
// Weft's audience (invalid, expired, for another audience, not a service
// account); other errors mean the API server could not be asked.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (identity.Identity, error) {
	if strings.TrimSpace(token) == "" {
		return identity.Identity{}, fmt.Errorf("%w: the token is empty", identity.ErrUnauthenticated)
	}
	review, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return identity.Identity{}, fmt.Errorf("token review: %w", err)
	}
	st := review.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return identity.Identity{}, fmt.Errorf("%w: the API server says: %s (a token projected with audience %q is expected)",
			identity.ErrUnauthenticated, reason, a.audience)
	}
	// The API server answers with the audiences the token is valid for
	// among those asked; an empty list means the server's own, which are
	// not Weft's.
	if !slices.Contains(st.Audiences, a.audience) {
		return identity.Identity{}, fmt.Errorf("%w: the token is not valid for audience %q (it is for %v)",
			identity.ErrUnauthenticated, a.audience, st.Audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return identity.Identity{}, fmt.Errorf("%w: the token belongs to user %q, not a service account; give the proxy its pod's projected service-account token",
			identity.ErrUnauthenticated, st.User.Username)
	}
	id := identity.Identity{TrustDomain: a.trustDomain, Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return identity.Identity{}, fmt.Errorf("%w: %v", identity.ErrUnauthenticated, err)
	}
	return id, nil
}
