package tokenreview_test

import (
	"context"
	"errors"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/identity/tokenreview"
)

// TestStatusMapping covers the answers of the API server that the real
// API server test cannot produce on demand (it runs under -short too).
func TestStatusMapping(t *testing.T) {
	tests := []struct {
		name    string
		status  authnv1.TokenReviewStatus
		want    string
		refused bool
	}{
		{name: "service account for weft", want: "spiffe://cluster.local/ns/shop/sa/web", status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{tokenreview.Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:shop:web"}}},
		{name: "not authenticated", refused: true, status: authnv1.TokenReviewStatus{Error: "token expired"}},
		{name: "authenticated for no audience of weft's", refused: true, status: authnv1.TokenReviewStatus{
			Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:shop:web"}}},
		{name: "a user, not a service account", refused: true, status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{tokenreview.Audience}, User: authnv1.UserInfo{Username: "alice"}}},
		{name: "malformed service account name", refused: true, status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{tokenreview.Audience}, User: authnv1.UserInfo{Username: "system:serviceaccount:shop"}}},
		{name: "service account name with a colon", refused: true, status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{tokenreview.Audience}, User: authnv1.UserInfo{Username: "system:serviceaccount:shop:web:x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			var asked []string
			client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
				asked = tr.Spec.Audiences
				return true, &authnv1.TokenReview{Status: tc.status}, nil
			})
			id, err := tokenreview.New(client, "", "").Authenticate(context.Background(), "a-token")
			if len(asked) != 1 || asked[0] != tokenreview.Audience {
				t.Errorf("audiences asked: got %v, want [%s]", asked, tokenreview.Audience)
			}
			if tc.refused {
				if !errors.Is(err, identity.ErrUnauthenticated) {
					t.Fatalf("got %v, %v; want an error wrapping ErrUnauthenticated", id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
