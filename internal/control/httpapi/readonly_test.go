package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
)

// readOnly hides the memory store's apply methods, like a Kubernetes
// source.
type readOnly struct{ config.Source }

func TestReadOnlySource(t *testing.T) {
	store := memory.New("")
	store.SetService(config.Service{Name: "web"})
	h, err := New(Config{Token: token, Source: readOnly{store}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	auth := "Bearer " + token
	doc := "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: s}\nspec: {service: web, backends: [{service: web, weight: 1}]}\n"
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"status reads the source", http.MethodGet, "/api/v1/status", "", http.StatusOK},
		{"apply is refused", http.MethodPost, "/api/v1/apply", doc, http.StatusMethodNotAllowed},
		{"dry run is refused", http.MethodPost, "/api/v1/apply?dry_run=true", doc, http.StatusMethodNotAllowed},
		{"delete is refused", http.MethodDelete, "/api/v1/resources/TrafficSplit/default/s", "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, srv, tt.method, tt.path, auth, tt.body)
			if code != tt.want {
				t.Fatalf("got %d %v, want %d", code, body, tt.want)
			}
			if code == http.StatusMethodNotAllowed && !strings.Contains(body["error"].(string), "kubectl apply") {
				t.Fatalf("got error %q, want it to point to kubectl apply", body["error"])
			}
		})
	}
	code, body := do(t, srv, http.MethodGet, "/api/v1/status", auth, "")
	if svcs, _ := body["services"].([]any); code != http.StatusOK || len(svcs) != 1 {
		t.Fatalf("status: got %d %v, want the source's one service", code, body)
	}
	if _, err := New(Config{Token: token}); err == nil {
		t.Fatal("New without store or source: got nil error")
	}
}
