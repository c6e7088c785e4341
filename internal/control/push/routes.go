package push

import (
	"cmp"
	"slices"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/route"
)

// Routes compiles the HTTPRoutes and GRPCRoutes whose parent is service
// key into rules in Gateway API precedence order. Each match of a rule
// becomes one RouteRule (a rule without matches one that matches every
// request), sorted by: exact path before path prefix before regular
// expression, longer paths first; then a method match; then more header
// matches; then more query matches; then the route applied first; then
// namespace/name; then the rule's and the match's order. Backends carry
// their ready endpoints.
func Routes(snap *config.Snapshot, key config.ServiceKey) []*meshv1.RouteRule {
	type entry struct {
		rule   *meshv1.RouteRule
		order  int // position of the route in snap.Resources
		id     string
		ruleIx int
		match  int
		m      route.Match
	}
	var entries []entry
	for order := range snap.Resources {
		res := &snap.Resources[order]
		rt, ok := res.Spec.(*route.Route)
		if !ok || !hasParent(rt, res.Namespace, key) {
			continue
		}
		id := res.Kind + "/" + res.Namespace + "/" + res.Name
		for ri := range rt.Rules {
			rule := &rt.Rules[ri]
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []route.Match{{}}
			}
			for mi, m := range matches {
				pr := compileRule(snap, res.Namespace, id, ri, rule)
				pr.Matches = []*meshv1.RouteMatch{compileMatch(m)}
				entries = append(entries, entry{rule: pr, order: order, id: res.Namespace + "/" + res.Name, ruleIx: ri, match: mi, m: m})
			}
		}
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		if c := comparePrecedence(a.m, b.m); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.id, b.id), cmp.Compare(a.ruleIx, b.ruleIx), cmp.Compare(a.match, b.match))
	})
	out := make([]*meshv1.RouteRule, len(entries))
	for i, e := range entries {
		out[i] = e.rule
	}
	return out
}

func hasParent(rt *route.Route, ns string, key config.ServiceKey) bool {
	for _, p := range rt.Parents {
		pns := p.Namespace
		if pns == "" {
			pns = ns
		}
		if config.Key(p.Name, pns) == key {
			return true
		}
	}
	return false
}

// comparePrecedence orders a before b (negative) when a takes precedence.
func comparePrecedence(a, b route.Match) int {
	// Exact paths rank 3, prefixes 2 (except the catch-all "/"), regular
	// expressions and the catch-all 1; within a rank longer values come
	// first, so a regular expression still precedes the catch-all.
	rank := func(m route.Match) (int, int) {
		switch {
		case m.Path == nil:
			return 1, 0
		case m.Path.Type == route.PathExact:
			return 3, len(m.Path.Value)
		case m.Path.Type == route.PathPrefix && m.Path.Value != "/":
			return 2, len(m.Path.Value)
		case m.Path.Type == route.PathRegex:
			return 1, 1 + len(m.Path.Value)
		}
		return 1, 0
	}
	ra, la := rank(a)
	rb, lb := rank(b)
	bool2int := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	return cmp.Or(
		cmp.Compare(rb, ra),
		cmp.Compare(lb, la),
		cmp.Compare(bool2int(b.Method != ""), bool2int(a.Method != "")),
		cmp.Compare(len(b.Headers), len(a.Headers)),
		cmp.Compare(len(b.Query), len(a.Query)),
	)
}

func compileMatch(m route.Match) *meshv1.RouteMatch {
	out := &meshv1.RouteMatch{Method: m.Method}
	if m.Path != nil {
		t := meshv1.PathMatch_PREFIX
		switch m.Path.Type {
		case route.PathExact:
			t = meshv1.PathMatch_EXACT
		case route.PathRegex:
			t = meshv1.PathMatch_REGEX
		}
		out.Path = &meshv1.PathMatch{Type: t, Value: m.Path.Value}
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, &meshv1.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex})
	}
	for _, q := range m.Query {
		out.Query = append(out.Query, &meshv1.QueryMatch{Name: q.Name, Value: q.Value, Regex: q.Regex})
	}
	return out
}

func refKey(ref route.Ref, ns string) config.ServiceKey {
	if ref.Namespace != "" {
		ns = ref.Namespace
	}
	return config.Key(ref.Name, ns)
}

func compileRule(snap *config.Snapshot, ns, id string, index int, r *route.Rule) *meshv1.RouteRule {
	out := &meshv1.RouteRule{
		Route:            id,
		Rule:             uint32(index),
		RequestTimeoutMs: r.RequestTimeout.Milliseconds(),
		BackendTimeoutMs: r.BackendTimeout.Milliseconds(),
	}
	for _, b := range r.Backends {
		out.Backends = append(out.Backends, backend(snap, refKey(b.Ref, ns), uint32(max(b.Ref.Port, 0)), b.Weight))
	}
	for _, f := range r.Filters {
		var pf *meshv1.RouteFilter
		switch {
		case f.RequestHeaders != nil:
			pf = &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaders)}}
		case f.ResponseHeaders != nil:
			pf = &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaders)}}
		case f.Mirror != nil:
			pf = &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_RequestMirror{RequestMirror: &meshv1.RequestMirror{
				Backend: backend(snap, refKey(f.Mirror.Backend, ns), uint32(max(f.Mirror.Backend.Port, 0)), 1),
				Percent: f.Mirror.Percent,
			}}}
		case f.Rewrite != nil:
			pf = &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_UrlRewrite{UrlRewrite: &meshv1.URLRewrite{
				Hostname:           f.Rewrite.Hostname,
				ReplaceFullPath:    deref(f.Rewrite.FullPath),
				ReplacePrefixMatch: prefixValue(f.Rewrite.PrefixMatch),
			}}}
		case f.Redirect != nil:
			rd := f.Redirect
			pf = &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_RequestRedirect{RequestRedirect: &meshv1.RequestRedirect{
				Scheme:             rd.Scheme,
				Hostname:           rd.Hostname,
				ReplaceFullPath:    deref(rd.FullPath),
				ReplacePrefixMatch: prefixValue(rd.PrefixMatch),
				Port:               uint32(rd.Port),
				StatusCode:         uint32(rd.StatusCode),
			}}}
		}
		if pf != nil {
			out.Filters = append(out.Filters, pf)
		}
	}
	if rt := r.Retry; rt != nil {
		p := &meshv1.RetryPolicy{Retryable: true, BackoffBaseMs: rt.Backoff.Milliseconds()}
		if rt.Attempts > 0 {
			// Gateway API counts retries; max_attempts counts the first try.
			p.MaxAttempts = uint32(rt.Attempts) + 1
		}
		for _, c := range rt.Codes {
			p.OnStatus = append(p.OnStatus, uint32(c))
		}
		out.Retry = p
	}
	return out
}

func headerModifier(h *route.HeaderModifier) *meshv1.HeaderModifier {
	out := &meshv1.HeaderModifier{Remove: slices.Clone(h.Remove)}
	for _, s := range h.Set {
		out.Set = append(out.Set, &meshv1.Header{Name: s.Name, Value: s.Value})
	}
	for _, s := range h.Add {
		out.Add = append(out.Add, &meshv1.Header{Name: s.Name, Value: s.Value})
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// prefixValue encodes a ReplacePrefixMatch for the proto, where "" means
// unset: replacing the prefix by nothing is replacing it by "/".
func prefixValue(s *string) string {
	if s == nil {
		return ""
	}
	if *s == "" {
		return "/"
	}
	return *s
}
