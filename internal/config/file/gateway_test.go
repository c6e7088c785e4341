package file

import (
	"strings"
	"testing"

	"weft.dev/weft/internal/control/route"
)

const httpRouteDoc = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{group: "", kind: Service, name: books, port: 8080}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-canary, value: "true"}]
      queryParams: [{name: v, type: RegularExpression, value: "[0-9]+"}]
      method: GET
    backendRefs: [{name: books-v1, weight: 90}, {name: books-v2, weight: 10}]
    timeouts: {request: 2s, backendRequest: 500ms}
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow}, percent: 50}
`

func TestDecodeHTTPRoute(t *testing.T) {
	for _, v := range []string{"v1", "v1beta1"} {
		t.Run(v, func(t *testing.T) {
			rs, err := Decode([]byte(strings.Replace(httpRouteDoc, "/v1\n", "/"+v+"\n", 1)))
			if err != nil {
				t.Fatal(err)
			}
			r := rs[0].Spec.(*route.Route)
			if got, want := rs[0].ID(), "HTTPRoute/default/books"; got != want {
				t.Errorf("id: got %s, want %s", got, want)
			}
			if got := r.Parents[0]; got.Name != "books" || got.Port != 8080 {
				t.Errorf("parent: got %+v", got)
			}
			rule := r.Rules[0]
			if got := rule.Backends; len(got) != 2 || got[0].Weight != 90 || got[1].Name != "books-v2" {
				t.Errorf("backends: got %+v", got)
			}
			m := rule.Matches[0]
			if m.Path.Type != route.PathPrefix || m.Path.Value != "/api" || m.Method != "GET" || m.Headers[0].Name != "X-Canary" || !m.Query[0].Regex {
				t.Errorf("match: got %+v", m)
			}
			if rule.RequestTimeout.String() != "2s" || rule.BackendTimeout.String() != "500ms" {
				t.Errorf("timeouts: got %s %s", rule.RequestTimeout, rule.BackendTimeout)
			}
			if f := rule.Filters[0].Mirror; f == nil || f.Backend.Name != "shadow" || f.Percent != 50 {
				t.Errorf("mirror: got %+v", f)
			}
		})
	}
}

func TestDecodeGRPCRoute(t *testing.T) {
	rs, err := Decode([]byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: api}]
  rules:
  - matches: [{method: {service: pkg.Svc, method: Get}}]
  - matches: [{method: {service: pkg.Svc}}]
  - matches: [{method: {type: RegularExpression, method: "Get.*"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0].Spec.(*route.Route)
	want := []route.PathMatch{
		{Type: route.PathExact, Value: "/pkg.Svc/Get"},
		{Type: route.PathPrefix, Value: "/pkg.Svc"},
		{Type: route.PathRegex, Value: "/[^/]+/(?:Get.*)"},
	}
	for i, w := range want {
		m := r.Rules[i].Matches[0]
		if *m.Path != w || m.Method != "POST" {
			t.Errorf("rule %d: got %+v %s, want %+v POST", i, *m.Path, m.Method, w)
		}
	}
}

func TestDecodeRouteRefused(t *testing.T) {
	rule := func(s string) string {
		return "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{kind: Service, name: books}]\n  rules:\n  - " + s + "\n"
	}
	grpc := func(doc string) string { return strings.Replace(doc, "kind: HTTPRoute", "kind: GRPCRoute", 1) }
	tests := []struct {
		name, doc, want string
	}{
		{"negative weight", rule("backendRefs: [{name: v1, weight: -1}]"), "spec.rules[0].backendRefs[0].weight: must not be negative"},
		{"unknown field", rule("backendRefz: [{name: v1}]"), `unknown field "spec.rules[0].backendRefz" (did you mean "backendRefs"?)`},
		{"unknown nested field", rule("backendRefs: [{name: v1, wieght: 1}]"), `unknown field "spec.rules[0].backendRefs[0].wieght"`},
		{"bad regex", rule("matches: [{path: {type: RegularExpression, value: '/a(['}}]"), "spec.rules[0].matches[0].path.value: invalid regular expression"},
		{"bad header regex", rule("matches: [{headers: [{name: x, type: RegularExpression, value: '('}]}]"), "spec.rules[0].matches[0].headers[0].value: invalid regular expression"},
		{"path type", rule("matches: [{path: {type: Glob, value: /a}}]"), `spec.rules[0].matches[0].path.type: "Glob" is not a path match type`},
		{"relative path", rule("matches: [{path: {value: a}}]"), `spec.rules[0].matches[0].path.value: "a" must start with '/'`},
		{"method", rule("matches: [{method: FETCH}]"), `spec.rules[0].matches[0].method: "FETCH" is not an HTTP method`},
		{"redirect status", rule("filters: [{type: RequestRedirect, requestRedirect: {statusCode: 307}}]"), "spec.rules[0].filters[0].requestRedirect.statusCode: must be 301 or 302"},
		{"rewrite both paths", rule("filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /a, replacePrefixMatch: /b}}}]"), "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: set only replaceFullPath"},
		{"prefix rewrite without prefix match", rule("matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]"), "needs every match of the rule to have a PathPrefix path match"},
		{"redirect and rewrite", rule("filters: [{type: RequestRedirect, requestRedirect: {hostname: a}}, {type: URLRewrite, urlRewrite: {hostname: b}}]"), "spec.rules[0].filters: RequestRedirect and URLRewrite cannot be combined"},
		{"filter without its field", rule("filters: [{type: RequestMirror}]"), "spec.rules[0].filters[0].requestMirror: required with type RequestMirror"},
		{"unsupported filter", rule("filters: [{type: CORS, cors: {}}]"), `spec.rules[0].filters[0].type: "CORS" is not supported`},
		{"timeout", rule("timeouts: {request: soon}"), `spec.rules[0].timeouts.request: "soon" is not a duration`},
		{"backend kind", rule("backendRefs: [{kind: Pod, name: p}]"), `spec.rules[0].backendRefs[0].kind: backend Pod "p"`},
		{"gateway parent", strings.Replace(rule("backendRefs: [{name: v1}]"), "{kind: Service, name: books}", "{name: gw}", 1), `spec.parentRefs[0]: parent Gateway "gw"`},
		{"no parent", strings.Replace(rule("backendRefs: [{name: v1}]"), "  parentRefs: [{kind: Service, name: books}]\n", "", 1), "spec.parentRefs: required"},
		{"backend filters", rule("backendRefs: [{name: v1, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]}]"),
			"spec.rules[0].backendRefs[0].filters: filters per backend are not supported; put them on the rule (spec.rules[0].filters)"},
		{"default gateways", strings.Replace(rule("backendRefs: [{name: v1}]"), "spec:\n", "spec:\n  useDefaultGateways: All\n", 1),
			"spec.useDefaultGateways: not supported for mesh routes"},
		{"grpc backend filters", grpc(rule("backendRefs: [{name: v1, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]}]")),
			"spec.rules[0].backendRefs[0].filters: filters per backend are not supported"},
		{"grpc default gateways", grpc(strings.Replace(rule("backendRefs: [{name: v1}]"), "spec:\n", "spec:\n  useDefaultGateways: All\n", 1)),
			"spec.useDefaultGateways: not supported for mesh routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			if err == nil {
				t.Fatal("accepted, want an error")
			}
			kind := "HTTPRoute"
			if strings.Contains(tt.doc, "kind: GRPCRoute") {
				kind = "GRPCRoute"
			}
			if got := err.Error(); !strings.Contains(got, tt.want) || !strings.HasPrefix(got, "document 1 ("+kind+" r): ") {
				t.Errorf("got %q, want it to start with the document and contain %q", got, tt.want)
			}
		})
	}
}

func FuzzDecodeRoutes(f *testing.F) {
	f.Add([]byte(httpRouteDoc))
	f.Add([]byte(strings.Replace(httpRouteDoc, "/v1\n", "/v1beta1\n", 1)))
	f.Add([]byte("apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec:\n  parentRefs: [{kind: Service, name: a}]\n  rules: [{matches: [{method: {type: RegularExpression, service: 'a.*'}}]}]\n"))
	f.Add([]byte("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{kind: Service, name: a}]\n  rules: [{filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			rt, ok := r.Spec.(*route.Route)
			if !ok {
				continue
			}
			if len(rt.Parents) == 0 {
				t.Fatalf("route %s accepted without a parent", r.ID())
			}
			for _, rule := range rt.Rules {
				for _, m := range rule.Matches {
					if m.Path != nil && m.Path.Type != route.PathRegex && !strings.HasPrefix(m.Path.Value, "/") {
						t.Fatalf("path %q accepted", m.Path.Value)
					}
				}
			}
		}
	})
}
