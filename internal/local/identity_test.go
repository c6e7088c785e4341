package local

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft.dev/weft/internal/control/identity"
)

func TestLoadIdentityGeneratesOnceAndKeepsTokens(t *testing.T) {
	dir := t.TempDir()
	first, err := loadIdentity(dir, IdentityFiles{}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.Stat(filepath.Join(dir, "identity", "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	if key.Mode().Perm() != 0o600 {
		t.Errorf("issuer key mode %v, want 0600", key.Mode().Perm())
	}
	path, err := first.tokenFile("web-0", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	tf, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if tf.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", tf.Mode().Perm())
	}
	tok, _ := os.ReadFile(path)

	// A restart: same roots, the same token file proves the same identity
	// again, and a token never proves another workload.
	second, err := loadIdentity(dir, IdentityFiles{}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(second.issuer.Cert().Raw, first.issuer.Cert().Raw) {
		t.Error("restart generated a new issuer")
	}
	if p2, err := second.tokenFile("web-0", "default", "web"); err != nil || p2 != path {
		t.Fatalf("tokenFile after restart: %q, %v", p2, err)
	}
	if tok2, _ := os.ReadFile(path); !bytes.Equal(tok, tok2) {
		t.Error("restart replaced the token")
	}
	id, err := second.tokens.Authenticate(context.Background(), strings.TrimSpace(string(tok)))
	want := identity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web"}
	if err != nil || id != want {
		t.Errorf("token proves %v, %v; want %v", id, err, want)
	}
	args, err := second.proxyArgs("web-0", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(args, " "), "--trust-anchors "+filepath.Join(dir, "identity", "ca.crt")+" --token-file "+path+" --trust-domain cluster.local"; got != want {
		t.Errorf("proxy args %q, want %q", got, want)
	}
}

func TestLoadIdentityUserFiles(t *testing.T) {
	anchor, cert, key, err := identity.GenerateRoots("cluster.local", 0)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	files := IdentityFiles{
		TrustAnchors: filepath.Join(src, "ca.crt"), IssuerCert: filepath.Join(src, "issuer.crt"), IssuerKey: filepath.Join(src, "issuer.key"),
	}
	for p, b := range map[string][]byte{files.TrustAnchors: anchor, files.IssuerCert: cert, files.IssuerKey: key} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		files   IdentityFiles
		wantErr string
	}{
		{"all three", files, ""},
		{"only anchors", IdentityFiles{TrustAnchors: files.TrustAnchors}, "give all of --identity-trust-anchors"},
		{"key of another issuer", IdentityFiles{TrustAnchors: files.TrustAnchors, IssuerCert: files.IssuerCert, IssuerKey: files.TrustAnchors}, "--identity-* files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mi, err := loadIdentity(t.TempDir(), tt.files, "cluster.local")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mi.anchorsPath != files.TrustAnchors {
				t.Errorf("proxies read anchors from %s, want the user's %s", mi.anchorsPath, files.TrustAnchors)
			}
		})
	}
}
