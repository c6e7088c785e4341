package local

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadIdentityKeepsRootsAndTokens(t *testing.T) {
	state := t.TempDir()
	first, err := loadIdentity(state, IdentityFiles{}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(state, "identity", "issuer.key")
	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("issuer.key mode %v, want 0600", st.Mode().Perm())
	}
	tok, err := first.tokenFile("web-0", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	tokBytes, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(tok); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}

	// The next weft up in the same state directory keeps roots and tokens.
	second, err := loadIdentity(state, IdentityFiles{}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !second.issuer.Cert().Equal(first.issuer.Cert()) {
		t.Error("a second run generated a new issuer")
	}
	tok2, err := second.tokenFile("web-0", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	tok2Bytes, _ := os.ReadFile(tok2)
	if tok2 != tok || string(tok2Bytes) != string(tokBytes) {
		t.Errorf("token changed between runs: %q %q", tokBytes, tok2Bytes)
	}

	// The user's own roots are used as given.
	dir := filepath.Join(state, "identity")
	given, err := loadIdentity(t.TempDir(), IdentityFiles{
		TrustAnchors: filepath.Join(dir, "ca.crt"), IssuerCert: filepath.Join(dir, "issuer.crt"), IssuerKey: key,
	}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !given.issuer.Cert().Equal(first.issuer.Cert()) || given.anchorsPath != filepath.Join(dir, "ca.crt") {
		t.Errorf("given roots not used: anchors %q", given.anchorsPath)
	}
}

func TestLoadIdentityWantsAllThreeFiles(t *testing.T) {
	_, err := loadIdentity(t.TempDir(), IdentityFiles{TrustAnchors: "ca.crt"}, "cluster.local")
	want := "give all of --identity-trust-anchors, --identity-issuer-cert and --identity-issuer-key, or none (weft up then generates them)"
	if err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}

func TestPlanGivesProxiesTheirIdentity(t *testing.T) {
	state := t.TempDir()
	mi, err := loadIdentity(state, IdentityFiles{}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	m := &Mesh{Path: "m.yaml", Dir: "/m", Expose: []Expose{{Service: "web", Port: 8080}},
		Workloads: []Workload{{Name: "web", Command: []string{"/bin/web"}}}}
	p, err := buildPlan(m, planEnv{ProxyBin: "/bin/weft-proxy", LogDir: "/logs", ControllerGRPC: "127.0.0.1:1",
		TrustDomain: "cluster.local", Identity: mi, FreePort: counter()})
	if err != nil {
		t.Fatal(err)
	}
	anchors := filepath.Join(state, "identity", "ca.crt")
	for _, u := range []unitPlan{p.instances[0].proxy, p.ingresses[0]} {
		args := strings.Join(u.spec.Args, " ")
		id := strings.TrimSuffix(u.name, ".proxy")
		tokenFile := filepath.Join(state, "identity", "tokens", id+".token")
		if !strings.Contains(args, "--trust-anchors "+anchors) || !strings.Contains(args, "--token-file "+tokenFile) {
			t.Errorf("%s args lack its identity: %s", u.name, args)
		}
		if _, err := os.Stat(tokenFile); err != nil {
			t.Errorf("%s: %v", u.name, err)
		}
	}
	if slices.Contains(p.instances[0].app.spec.Args, "--token-file") {
		t.Error("the application got the proxy's token")
	}
}
