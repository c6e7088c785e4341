package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/control/split"
	"weft.dev/weft/internal/control/viz"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "s3cret-token"

const canary = `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: mon-service-canary}
spec:
  service: mon-service
  backends:
  - service: mon-service-v1
    weight: 95
  - service: mon-service-v2
    weight: 5
`

type fakeSent map[string]push.ProxySent

func (f fakeSent) Sent() map[string]push.ProxySent { return f }

type fakeStats struct{ window time.Duration }

func (f *fakeStats) Stat(window time.Duration) []viz.ServiceStat {
	f.window = window
	return []viz.ServiceStat{{Name: "web", Namespace: "default", Instances: 2}}
}

func setup(t *testing.T, stats Stats) (*httptest.Server, *memory.Store) {
	t.Helper()
	store := memory.New("")
	for _, n := range []string{"mon-service", "mon-service-v1", "mon-service-v2"} {
		store.SetService(config.Service{Name: n})
	}
	store.UpsertEndpoint(config.Key("mon-service-v1", "default"), config.Endpoint{Address: "127.0.0.1:9001", Ready: true})
	store.UpsertEndpoint(config.Key("mon-service-v1", "default"), config.Endpoint{Address: "127.0.0.1:9002"})
	store.SetProxy(config.Proxy{ID: "mon-service-v1-0", Service: "mon-service-v1", Version: "v1", AdminAddr: "127.0.0.1:4191"})
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web"})
	h, err := New(Config{Token: token, Store: store, Stats: stats,
		Sent: fakeSent{
			"web-0":    {Streams: 2, Inbound: 4, Destinations: map[string]uint64{"mon-service.default": 7}},
			"stranger": {Streams: 1, Inbound: 1, Destinations: map[string]uint64{}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, store
}

func do(t *testing.T, srv *httptest.Server, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, path, data)
	}
	return resp.StatusCode, out
}

func TestAuth(t *testing.T) {
	srv, _ := setup(t, nil)
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token prefix only", "Bearer " + token[:4], http.StatusUnauthorized},
		{"basic scheme", "Basic " + token, http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusOK},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/v1/status", "/api/v1/resources"} {
			t.Run(tt.name+path, func(t *testing.T) {
				code, body := do(t, srv, http.MethodGet, path, tt.auth, "")
				if got, want := code, tt.want; got != want {
					t.Fatalf("status: got %d, want %d (body %v)", got, want, body)
				}
				if _, hasErr := body["error"]; hasErr != (tt.want != http.StatusOK) {
					t.Fatalf("body: got %v, want an error field only when refused", body)
				}
			})
		}
	}
	// Even an unknown path or a refused method is not revealed without the token.
	if code, _ := do(t, srv, http.MethodDelete, "/api/v1/apply", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("unauthenticated DELETE: got %d, want 401", code)
	}
}

func TestStatus(t *testing.T) {
	srv, _ := setup(t, nil)
	code, body := do(t, srv, http.MethodGet, "/api/v1/status", "Bearer "+token, "")
	if code != http.StatusOK {
		t.Fatalf("status: got %d", code)
	}
	var got StatusResponse
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version == 0 || len(got.Proxies) != 3 || len(got.Services) != 3 {
		t.Fatalf("got %+v, want a version, 3 proxies and 3 services", got)
	}
	if s := got.Proxies[1]; s.ID != "stranger" || !s.Connected || s.Service != "" {
		t.Fatalf("unregistered proxy: got %+v, want stranger connected without service", s)
	}
	web := got.Proxies[2]
	if web.ID != "web-0" || !web.Connected || web.SentInboundVersion != 4 || web.Sent["mon-service.default"] != 7 {
		t.Fatalf("web-0: got %+v, want connected, inbound 4, mon-service.default 7", web)
	}
	if p := got.Proxies[0]; p.Connected || p.AdminAddr != "127.0.0.1:4191" || p.Version != "v1" {
		t.Fatalf("mon-service-v1-0: got %+v, want not connected with its admin address", p)
	}
	if s := got.Services[1]; s.Name != "mon-service-v1" || s.Endpoints != 2 || s.Ready != 1 {
		t.Fatalf("service: got %+v, want mon-service-v1 with 2 endpoints, 1 ready", s)
	}
}

func TestApply(t *testing.T) {
	srv, store := setup(t, nil)
	auth := "Bearer " + token
	steps := []struct {
		name       string
		path, body string
		wantCode   int
		wantAction string
		wantErrors []string
	}{
		{"dry run", "/api/v1/apply?dry_run=true", canary, http.StatusOK, "created", nil},
		{"create", "/api/v1/apply", canary, http.StatusOK, "created", nil},
		{"again", "/api/v1/apply", canary, http.StatusOK, "unchanged", nil},
		{"configure", "/api/v1/apply", strings.Replace(canary, "95", "50", 1), http.StatusOK, "configured", nil},
		{"decode errors named", "/api/v1/apply", canary + "---\n" + strings.Replace(canary, "weight: 5", "weight: -5", 1) + "---\napiVersion: split.smi-spec.io/v9\nkind: TrafficSplit\n",
			http.StatusBadRequest, "", []string{
				"document 2 (TrafficSplit mon-service-canary): spec.backends[1].weight: must not be negative",
				"document 3: apiVersion/kind split.smi-spec.io/v9 TrafficSplit is not supported"}},
		{"unknown service", "/api/v1/apply", strings.Replace(canary, "mon-service-v2", "mon-service-v3", 1), http.StatusBadRequest, "",
			[]string{`TrafficSplit/default/mon-service-canary: spec.backends[1].service: service "mon-service-v3" not found in namespace default`}},
		{"dry run of a bad file", "/api/v1/apply?dry_run=true", "kind: Nope\n", http.StatusBadRequest, "", []string{"document 1: apiVersion and kind are required"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := store.Snapshot().Resources
			code, body := do(t, srv, http.MethodPost, st.path, auth, st.body)
			if code != st.wantCode {
				t.Fatalf("status: got %d, want %d (body %v)", code, st.wantCode, body)
			}
			if st.wantCode == http.StatusOK {
				applied := body["applied"].([]any)[0].(map[string]any)
				if got, want := applied["action"], st.wantAction; got != want {
					t.Fatalf("action: got %v, want %s", got, want)
				}
				if applied["kind"] != "TrafficSplit" || applied["namespace"] != "default" || applied["name"] != "mon-service-canary" {
					t.Fatalf("applied: got %v", applied)
				}
				return
			}
			var errs []string
			for _, e := range body["errors"].([]any) {
				errs = append(errs, e.(string))
			}
			joined := strings.Join(errs, "\n")
			for _, w := range st.wantErrors {
				if !strings.Contains(joined, w) {
					t.Errorf("errors:\n%s\nwant one containing %q", joined, w)
				}
			}
			if body["error"] == "" {
				t.Error("no error summary")
			}
			if got := store.Snapshot().Resources; len(got) != len(before) {
				t.Errorf("resources changed by a refused apply: got %d, want %d", len(got), len(before))
			}
		})
	}
	if got := len(store.Snapshot().Resources); got != 1 {
		t.Fatalf("resources: got %d, want 1 (the dry run must not apply)", got)
	}
	if w := store.Snapshot().Resources[0].Spec.(*split.TrafficSplit).Backends[0].Weight; w != 50 {
		t.Fatalf("weight: got %d, want 50", w)
	}
}

func TestDryRunAppliesNothing(t *testing.T) {
	srv, store := setup(t, nil)
	code, body := do(t, srv, http.MethodPost, "/api/v1/apply?dry_run=true", "Bearer "+token, canary)
	if code != http.StatusOK || body["dry_run"] != true {
		t.Fatalf("got %d %v, want 200 with dry_run", code, body)
	}
	if got := len(store.Snapshot().Resources); got != 0 {
		t.Fatalf("resources after dry run: got %d, want 0", got)
	}
}

func TestResourcesAndDelete(t *testing.T) {
	srv, _ := setup(t, nil)
	auth := "Bearer " + token
	if code, body := do(t, srv, http.MethodPost, "/api/v1/apply", auth, strings.Replace(canary, "weight: 5", `weight: "500m"`, 1)); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, body)
	}
	_, body := do(t, srv, http.MethodGet, "/api/v1/resources", auth, "")
	rs := body["resources"].([]any)
	if len(rs) != 1 {
		t.Fatalf("resources: got %v, want 1", rs)
	}
	r := rs[0].(map[string]any)
	backends := r["spec"].(map[string]any)["backends"].([]any)
	if r["apiVersion"] != "split.smi-spec.io/v1alpha1" || r["kind"] != "TrafficSplit" || backends[1].(map[string]any)["weight"] != "500m" {
		t.Fatalf("resource: got %v, want the spec as written", r)
	}
	if code, _ := do(t, srv, http.MethodDelete, "/api/v1/resources/trafficsplit/default/nope", auth, ""); code != http.StatusNotFound {
		t.Fatalf("delete unknown: got %d, want 404", code)
	}
	if code, _ := do(t, srv, http.MethodDelete, "/api/v1/resources/trafficsplit/default/mon-service-canary", auth, ""); code != http.StatusOK {
		t.Fatalf("delete: got %d, want 200", code)
	}
	if code, _ := do(t, srv, http.MethodDelete, "/api/v1/resources/TrafficSplit/default/mon-service-canary", auth, ""); code != http.StatusNotFound {
		t.Fatalf("delete again: got %d, want 404", code)
	}
}

func TestStat(t *testing.T) {
	stats := &fakeStats{}
	srv, _ := setup(t, stats)
	auth := "Bearer " + token
	code, body := do(t, srv, http.MethodGet, "/api/v1/stat?window=1m", auth, "")
	if code != http.StatusOK || body["window"] != "1m0s" || stats.window != time.Minute {
		t.Fatalf("got %d %v (window asked %v), want 200 for 1m", code, body, stats.window)
	}
	if svcs := body["services"].([]any); len(svcs) != 1 || svcs[0].(map[string]any)["name"] != "web" {
		t.Fatalf("services: got %v", svcs)
	}
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/stat", auth, ""); code != http.StatusOK || stats.window != DefaultWindow {
		t.Fatalf("default window: got %d %v", code, stats.window)
	}
	if code, body := do(t, srv, http.MethodGet, "/api/v1/stat?window=forever", auth, ""); code != http.StatusBadRequest {
		t.Fatalf("bad window: got %d %v, want 400", code, body)
	}
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/edges", auth, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("edges without Edges: got %d, want 503", code)
	}
	none, _ := setup(t, nil)
	if code, _ := do(t, none, http.MethodGet, "/api/v1/stat", auth, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("stat without Stats: got %d, want 503", code)
	}
}

func TestMethodsAndLimits(t *testing.T) {
	srv, _ := setup(t, nil)
	auth := "Bearer " + token
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/apply", auth, ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET apply: got %d, want 405", code)
	}
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/nothing", auth, ""); code != http.StatusNotFound {
		t.Fatalf("unknown path: got %d, want 404", code)
	}
	big := strings.Repeat("# padding\n", MaxApplyBytes/10+1)
	if code, _ := do(t, srv, http.MethodPost, "/api/v1/apply", auth, big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized apply: got %d, want 413", code)
	}
}

// TestCurl applies a file the way a user would script it.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	srv, store := setup(t, nil)
	out, err := exec.Command(curl, "-sS", "-w", "\n%{http_code}", "-X", "POST", "-H", "Authorization: Bearer "+token,
		"--data-binary", canary, srv.URL+"/api/v1/apply").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if !strings.HasSuffix(string(out), "\n200") || !strings.Contains(string(out), `"action": "created"`) {
		t.Fatalf("curl output: %s", out)
	}
	if len(store.Snapshot().Resources) != 1 {
		t.Fatal("nothing applied")
	}
	out, _ = exec.Command(curl, "-sS", "-w", "\n%{http_code}", srv.URL+"/api/v1/status").CombinedOutput()
	if !strings.HasSuffix(string(out), "\n401") {
		t.Fatalf("curl without token: %s", out)
	}
}
