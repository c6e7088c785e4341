package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
)

const canaryRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: beta}
spec:
  parentRefs: [{kind: Service, name: mon-service}]
  rules:
  - matches: [{path: {value: /api}, headers: [{name: x-beta, value: "1"}]}]
    backendRefs: [{name: mon-service-v2}]
    timeouts: {request: 3s}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: beta}]}
`

func TestRoutes(t *testing.T) {
	srv, _ := setup(t, &fakeStats{})
	auth := "Bearer " + token
	if code, body := do(t, srv, http.MethodPost, "/api/v1/apply", auth, canary+"---\n"+canaryRoute); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, body)
	}
	code, body := do(t, srv, http.MethodGet, "/api/v1/routes?service=mon-service", auth, "")
	if code != http.StatusOK {
		t.Fatalf("routes: %d %v", code, body)
	}
	raw, _ := json.Marshal(body)
	var got RoutesResponse
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Service != "mon-service.default" || len(got.Backends) != 2 || got.Backends[0].Weight != 95 || got.Backends[0].Endpoints != 1 {
		t.Errorf("service %s backends %+v, want mon-service.default split 95/5 with one ready v1 endpoint", got.Service, got.Backends)
	}
	if len(got.Rules) != 1 {
		t.Fatalf("got %d rules, want 1", len(got.Rules))
	}
	r := got.Rules[0]
	for _, c := range []struct{ name, got, want string }{
		{"route", r.Route, "HTTPRoute/default/beta"},
		{"match", r.Match, "path prefix /api, header X-Beta=1"},
		{"backend", r.Backends[0].Service, "mon-service-v2.default"},
		{"filter", r.Filters[0], "request headers: set X-Route"},
		{"timeout", r.RequestTimeout, "3s"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if code, body := do(t, srv, http.MethodGet, "/api/v1/routes?service=nope", auth, ""); code != http.StatusNotFound {
		t.Errorf("unknown service: got %d %v, want 404", code, body)
	}
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/routes", auth, ""); code != http.StatusBadRequest {
		t.Errorf("no service: got %d, want 400", code)
	}
}
