package identity_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps locks the import graph of the proxy's identity package: no
// Kubernetes libraries and nothing of the controller. (Its tests may use
// the controller's CA; go list -deps without -test ignores them.)
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "weft.dev/weft/internal/proxy/identity").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") ||
			strings.HasPrefix(dep, "weft.dev/weft/internal/control") {
			t.Errorf("proxy identity depends on %s", dep)
		}
	}
}
