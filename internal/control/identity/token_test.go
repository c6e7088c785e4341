package identity_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"weft.dev/weft/internal/control/identity"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestJoinTokens: each token proves exactly its own workload's identity,
// as often as it is presented, until revoked.
func TestJoinTokens(t *testing.T) {
	j := identity.NewJoinTokens()
	webTok, err := j.Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	adminTok, err := j.Issue(webAdminID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		want    identity.Identity
		wantErr error
	}{
		{"web", webTok, webID, nil},
		{"web again", webTok, webID, nil},
		{"web-admin", adminTok, webAdminID, nil},
		{"web's token with a suffix", webTok + "x", identity.Identity{}, identity.ErrUnauthenticated},
		{"prefix of web's token", webTok[:len(webTok)-1], identity.Identity{}, identity.ErrUnauthenticated},
		{"upper-cased", strings.ToUpper(webTok), identity.Identity{}, identity.ErrUnauthenticated},
		{"empty", "", identity.Identity{}, identity.ErrUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := j.Authenticate(context.Background(), tc.token)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("Authenticate = %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if webTok == adminTok {
		t.Fatal("two issues returned the same token")
	}
}

func TestJoinTokensRegister(t *testing.T) {
	j := identity.NewJoinTokens()
	tok, err := identity.NewJoinTokens().Issue(webID)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Register(tok, webID); err != nil {
		t.Fatal(err)
	}
	if got, err := j.Authenticate(context.Background(), tok); err != nil || got != webID {
		t.Fatalf("after Register: %v, %v", got, err)
	}
	tests := []struct {
		name  string
		token string
		id    identity.Identity
		want  string
	}{
		{"same token, other identity", tok, webAdminID, "already registered for " + webID.String()},
		{"short token", "weftjt1_abc", webID, "malformed"},
		{"foreign token", "hunter2", webID, "malformed"},
		{"invalid identity", tok, identity.Identity{TrustDomain: "cluster.local", Namespace: "a/b", ServiceAccount: "c"}, "hold no '/'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := j.Register(tc.token, tc.id)
			if got := errText(err); !strings.Contains(got, tc.want) {
				t.Errorf("Register error = %q, want it to contain %q", got, tc.want)
			}
		})
	}
	// The failed registration did not change what tok proves.
	if got, err := j.Authenticate(context.Background(), tok); err != nil || got != webID {
		t.Errorf("after refused Register: %v, %v; want %v", got, err, webID)
	}
}
