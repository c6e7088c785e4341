package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps locks the proxy's import graph: the sidecar must not link
// Kubernetes client libraries, the control plane, the CLI or local mode,
// nor the Prometheus client library (close to 1 MB of resident code for
// what internal/proxy/metrics does itself; docs/performance.md).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "weft.dev/weft/cmd/weft-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"k8s.io/",
		"sigs.k8s.io/",
		"weft.dev/weft/internal/control",
		"weft.dev/weft/internal/cli",
		"weft.dev/weft/internal/local",
		"github.com/prometheus/",
	}
	var n int
	for _, pkg := range strings.Fields(string(out)) {
		n++
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("weft-proxy depends on %s (forbidden prefix %s)", pkg, f)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list returned %d packages; the check would prove nothing", n)
	}
}
