package memory

import (
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/route"
)

func routeResource(rt *route.Route) config.Resource {
	return config.Resource{APIVersion: "gateway.networking.k8s.io/v1", Kind: route.KindHTTP, Name: "r", Namespace: "default", Spec: rt}
}

func TestApplyRouteReferences(t *testing.T) {
	s := New("")
	for _, name := range []string{"books", "v1"} {
		s.SetService(config.Service{Name: name})
	}
	s.SetProxy(config.Proxy{ID: "books-0", Service: "books", Ports: []config.InboundPort{{Port: 8080}}})
	parent := []route.Ref{{Name: "books", Field: "spec.parentRefs[0]"}}
	tests := []struct {
		name string
		rt   *route.Route
		want string // "" = accepted
	}{
		{"valid", &route.Route{Parents: parent, Rules: []route.Rule{{Field: "spec.rules[0]", Backends: []route.Backend{{Ref: route.Ref{Name: "v1"}, Weight: 1}}}}}, ""},
		{"unknown parent", &route.Route{Parents: []route.Ref{{Name: "nope", Field: "spec.parentRefs[0]"}}}, `spec.parentRefs[0].name: parent service "nope" not found in namespace default (services: books, v1)`},
		{"unknown backend", &route.Route{Parents: parent, Rules: []route.Rule{{Field: "spec.rules[0]", Backends: []route.Backend{{Ref: route.Ref{Name: "v9"}, Weight: 1}}}}}, `spec.rules[0].backendRefs[0].name: backend service "v9" not found`},
		{"unknown mirror", &route.Route{Parents: parent, Rules: []route.Rule{{Field: "spec.rules[0]", Filters: []route.Filter{{Mirror: &route.Mirror{Backend: route.Ref{Name: "shadow"}}}}}}}, `spec.rules[0].filters[0].requestMirror.backendRef.name: mirror service "shadow" not found`},
		{"unknown port", &route.Route{Parents: []route.Ref{{Name: "books", Port: 9090, Field: "spec.parentRefs[0]"}}}, `spec.parentRefs[0].port: service "books" has no port 9090 (ports: 8080)`},
		{"known port", &route.Route{Parents: []route.Ref{{Name: "books", Port: 8080, Field: "spec.parentRefs[0]"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Plan([]config.Resource{routeResource(tt.rt)})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("accepted, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), "HTTPRoute/default/r: "+tt.want):
				t.Errorf("got %q, want %q", err, tt.want)
			}
		})
	}
}
