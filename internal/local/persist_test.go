package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
)

const splitDoc = `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata:
  name: %[1]s
spec:
  service: %[2]s
  backends:
  - service: %[2]s-v1
    weight: 95
  - service: %[2]s-v2
    weight: 5
`

// split is a TrafficSplit name of service svc: 95% v1, 5% v2.
func split(name, svc string) string { return fmt.Sprintf(splitDoc, name, svc) }

func storeWith(services ...string) *memory.Store {
	s := memory.New("")
	for _, name := range services {
		s.SetService(config.Service{Name: name, Namespace: "default"})
	}
	return s
}

func resourceIDs(s *memory.Store) []string {
	var ids []string
	for _, r := range s.Snapshot().Resources {
		ids = append(ids, r.ID())
	}
	slices.Sort(ids)
	return ids
}

func TestPersistAndRestoreResources(t *testing.T) {
	path := filepath.Join(t.TempDir(), appliedFile)
	store := storeWith("api", "api-v1", "api-v2", "books", "books-v1", "books-v2")
	rs, err := file.Decode([]byte(split("api-canary", "api") + "---\n" + split("books-canary", "books")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(rs); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { persistResources(ctx, path, store, slog.New(slog.DiscardHandler)); close(done) }()
	waitFile := func(want func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			data, _ := os.ReadFile(path)
			if want(string(data)) {
				return string(data)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the expected content; last:\n%s", path, data)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFile(func(s string) bool { return strings.Contains(s, "books-canary") && strings.Contains(s, "api-canary") })
	if err := store.Delete("TrafficSplit/default/books-canary"); err != nil {
		t.Fatal(err)
	}
	waitFile(func(s string) bool { return strings.Contains(s, "api-canary") && !strings.Contains(s, "books-canary") })
	if _, err := store.Apply(rs[1:]); err != nil {
		t.Fatal(err)
	}
	waitFile(func(s string) bool { return strings.Contains(s, "books-canary") })
	cancel()
	<-done

	// The next run: books is gone from the mesh, and the mesh file declares
	// api-canary itself (with other weights).
	next := storeWith("api", "api-v1", "api-v2")
	own, err := file.Decode([]byte(strings.Replace(split("api-canary", "api"), "weight: 95", "weight: 50", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.Apply(own); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	n := restoreResources(path, next, func(s string) { warnings = append(warnings, s) })
	if n != 0 || len(warnings) != 1 || !strings.HasPrefix(warnings[0], "TrafficSplit default/books-canary of the last run dropped: ") {
		t.Errorf("restored %d, warnings %q; want 0 and one about books-canary", n, warnings)
	}
	if got := resourceIDs(next); !slices.Equal(got, []string{"TrafficSplit/default/api-canary"}) {
		t.Errorf("resources %v", got)
	}
	if raw := string(next.Snapshot().Resources[0].Raw); !strings.Contains(raw, "50") {
		t.Errorf("the mesh file's api-canary was replaced by the last run's: %s", raw)
	}

	// A run with both services gets both back.
	full := storeWith("api", "api-v1", "api-v2", "books", "books-v1", "books-v2")
	warnings = nil
	if n := restoreResources(path, full, func(s string) { warnings = append(warnings, s) }); n != 2 || warnings != nil {
		t.Errorf("restored %d, warnings %q; want 2, none", n, warnings)
	}
	if n := restoreResources(filepath.Join(t.TempDir(), "none.yaml"), full, func(s string) { t.Error(s) }); n != 0 {
		t.Errorf("restored %d from a missing file", n)
	}
}
