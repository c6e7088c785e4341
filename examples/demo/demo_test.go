// Package demo_test checks the demo's mesh files against the parser `weft up`
// and `weft apply` use, and against the programs under examples/demo.
package demo_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/control/split"
)

func TestMeshFile(t *testing.T) {
	data, err := os.ReadFile("mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mesh, rest, err := file.LoadMesh(data)
	if err != nil {
		t.Fatalf("mesh.yaml is invalid: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("mesh.yaml holds %d documents besides the Mesh, want none", len(rest))
	}
	var got []string
	for _, w := range mesh.Workloads {
		got = append(got, w.ServiceName())
		t.Run(w.ServiceName(), func(t *testing.T) {
			// Every command runs a program built from examples/demo/<name>.
			prog, ok := strings.CutPrefix(w.Command[0], "${WEFT_BIN}/")
			if !ok {
				t.Fatalf("command %q does not start with ${WEFT_BIN}/", w.Command)
			}
			if _, err := os.Stat(filepath.Join(prog, "main.go")); err != nil {
				t.Errorf("command %q: no program examples/demo/%s: %v", w.Command, prog, err)
			}
			// Servers listen where the supervisor says; the load generator
			// serves nothing.
			serves := slices.Contains(w.Command, "127.0.0.1:${PORT}")
			if serves == (w.Name == "load") {
				t.Errorf("command %q: --listen 127.0.0.1:${PORT} present = %v, want %v", w.Command, serves, w.Name != "load")
			}
		})
	}
	want := []string{"web", "api-v1", "api-v2", "quotes", "load"}
	if !slices.Equal(got, want) {
		t.Errorf("workloads = %q, want %q", got, want)
	}
	if len(mesh.Expose) != 1 || mesh.Expose[0].Service != "web" {
		t.Errorf("expose = %+v, want the web service only", mesh.Expose)
	}
}

func TestCanaryFile(t *testing.T) {
	data, err := os.ReadFile("canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := file.Decode(data)
	if err != nil {
		t.Fatalf("canary.yaml is invalid: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("canary.yaml holds %d documents, want 1", len(rs))
	}
	got, ok := rs[0].Spec.(*split.TrafficSplit)
	if !ok {
		t.Fatalf("canary.yaml holds a %T, want a TrafficSplit", rs[0].Spec)
	}
	want := &split.TrafficSplit{Service: "api", Backends: []split.Backend{{Service: "api-v1", Weight: 95}, {Service: "api-v2", Weight: 5}}}
	if got.Service != want.Service || !slices.Equal(got.Backends, want.Backends) {
		t.Errorf("canary split = %+v, want %+v", got, want)
	}
}
