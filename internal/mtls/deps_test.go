package mtls_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps locks the import graph: mtls is linked into weft-proxy, so it
// must not pull in Kubernetes libraries, and it stays free of other weft
// packages so both binaries can share it.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "weft.dev/weft/internal/mtls").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") ||
			(strings.HasPrefix(dep, "weft.dev/") && dep != "weft.dev/weft/internal/mtls") {
			t.Errorf("mtls depends on %s", dep)
		}
	}
}
