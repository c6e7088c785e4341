package push

import (
	"testing"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/route"
)

func TestRoutesPrecedence(t *testing.T) {
	prefix := func(v string) *route.PathMatch { return &route.PathMatch{Type: route.PathPrefix, Value: v} }
	parent := []route.Ref{{Name: "books"}}
	older := &route.Route{Kind: route.KindHTTP, Parents: parent, Rules: []route.Rule{
		{Matches: []route.Match{{Path: prefix("/a")}}},                                           // 0: prefix /a
		{Matches: []route.Match{{Path: prefix("/a"), Method: "GET"}}},                            // 1: + method
		{Matches: []route.Match{{Path: prefix("/a"), Headers: []route.ValueMatch{{Name: "X"}}}}}, // 2: + header
		{}, // 3: catch-all
		{Matches: []route.Match{{Path: &route.PathMatch{Type: route.PathRegex, Value: "/r.*"}}}}, // 4: regex
	}}
	newer := &route.Route{Kind: route.KindHTTP, Parents: parent, Rules: []route.Rule{
		{Matches: []route.Match{{Path: &route.PathMatch{Type: route.PathExact, Value: "/a"}}}}, // exact
		{Matches: []route.Match{{Path: prefix("/a/b")}}},                                       // longer prefix
		{Matches: []route.Match{{Path: prefix("/a")}}},                                         // same as older 0: after it
	}}
	other := &route.Route{Kind: route.KindHTTP, Parents: []route.Ref{{Name: "other"}}, Rules: []route.Rule{{}}}
	snap := &config.Snapshot{
		Services: map[config.ServiceKey]*config.Service{"books.default": {Name: "books", Namespace: "default"}},
		Resources: []config.Resource{
			{Kind: "HTTPRoute", Namespace: "default", Name: "older", Spec: older},
			{Kind: "HTTPRoute", Namespace: "default", Name: "newer", Spec: newer},
			{Kind: "HTTPRoute", Namespace: "default", Name: "other", Spec: other},
		},
	}
	got := Routes(snap, "books.default")
	want := []struct {
		route string
		rule  uint32
	}{
		{"HTTPRoute/default/newer", 0},
		{"HTTPRoute/default/newer", 1},
		{"HTTPRoute/default/older", 1},
		{"HTTPRoute/default/older", 2},
		{"HTTPRoute/default/older", 0},
		{"HTTPRoute/default/newer", 2},
		{"HTTPRoute/default/older", 4},
		{"HTTPRoute/default/older", 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].GetRoute() != w.route || got[i].GetRule() != w.rule {
			t.Errorf("position %d: got %s rule %d, want %s rule %d", i, got[i].GetRoute(), got[i].GetRule(), w.route, w.rule)
		}
	}
	if m := got[0].GetMatches()[0]; m.GetPath().GetType() != meshv1.PathMatch_EXACT {
		t.Errorf("first rule's match: got %v, want an exact path", m)
	}
}
