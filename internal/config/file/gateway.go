package file

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"weft.dev/weft/internal/control/route"
)

// The Gateway API kinds, decoded with the upstream Go types and converted
// to route.Route (the controller and the proxy never see the Kubernetes
// types).
const (
	GatewayGroup = "gateway.networking.k8s.io"
)

func gatewayKinds() []kind {
	return []kind{
		{apiVersion: GatewayGroup + "/v1", kind: route.KindHTTP, decode: decodeHTTPRoute},
		{apiVersion: GatewayGroup + "/v1beta1", kind: route.KindHTTP, decode: decodeHTTPRoute},
		{apiVersion: GatewayGroup + "/v1", kind: route.KindGRPC, decode: decodeGRPCRoute},
	}
}

// fieldErrs collects errors naming fields.
type fieldErrs []error

func (e *fieldErrs) add(field, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// routeBackendRef is an HTTPRoute's or a GRPCRoute's backend reference:
// the reference and the number of its own filters.
type routeBackendRef interface {
	gwv1.HTTPBackendRef | gwv1.GRPCBackendRef
}

// ruleBackends decodes the backendRefs of the rule at field; filters per
// backend are refused.
func ruleBackends[B routeBackendRef](fe *fieldErrs, field string, refs []B) []route.Backend {
	var out []route.Backend
	for j, b := range refs {
		var ref gwv1.BackendRef
		var filters int
		switch b := any(b).(type) {
		case gwv1.HTTPBackendRef:
			ref, filters = b.BackendRef, len(b.Filters)
		case gwv1.GRPCBackendRef:
			ref, filters = b.BackendRef, len(b.Filters)
		}
		bf := fmt.Sprintf("%s.backendRefs[%d]", field, j)
		out = append(out, backendRef(fe, bf, ref))
		if filters > 0 {
			fe.add(bf+".filters", "filters per backend are not supported; put them on the rule (%s.filters)", field)
		}
	}
	return out
}

// checkDefaultGateways refuses spec.useDefaultGateways: a mesh route's
// parent is a Service.
func checkDefaultGateways(fe *fieldErrs, v gwv1.GatewayDefaultScope) {
	if v != "" {
		fe.add("spec.useDefaultGateways", "not supported for mesh routes: the parent is a Service; remove it")
	}
}

func decodeHTTPRoute(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[gwv1.HTTPRouteSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	var fe fieldErrs
	r := &route.Route{Kind: route.KindHTTP, Parents: parentRefs(&fe, spec.ParentRefs)}
	checkDefaultGateways(&fe, spec.UseDefaultGateways)
	for i, rule := range spec.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		rr := route.Rule{Field: field}
		for j, m := range rule.Matches {
			rr.Matches = append(rr.Matches, httpMatch(&fe, fmt.Sprintf("%s.matches[%d]", field, j), m))
		}
		rr.Backends = ruleBackends(&fe, field, rule.BackendRefs)
		for j, f := range rule.Filters {
			if rf, ok := httpFilter(&fe, fmt.Sprintf("%s.filters[%d]", field, j), f, rr.Matches); ok {
				rr.Filters = append(rr.Filters, rf)
			}
		}
		checkFilterSet(&fe, field, rr.Filters)
		if t := rule.Timeouts; t != nil {
			rr.RequestTimeout = duration(&fe, field+".timeouts.request", t.Request)
			rr.BackendTimeout = duration(&fe, field+".timeouts.backendRequest", t.BackendRequest)
			if rr.RequestTimeout > 0 && rr.BackendTimeout > rr.RequestTimeout {
				fe.add(field+".timeouts.backendRequest", "%s is longer than timeouts.request (%s); it must not be", rr.BackendTimeout, rr.RequestTimeout)
			}
		}
		if rt := rule.Retry; rt != nil {
			rr.Retry = &route.Retry{}
			for k, c := range rt.Codes {
				if c < 400 || c > 599 {
					fe.add(fmt.Sprintf("%s.retry.codes[%d]", field, k), "%d is not a 4xx or 5xx status", c)
				}
				rr.Retry.Codes = append(rr.Retry.Codes, int(c))
			}
			if rt.Attempts != nil {
				if *rt.Attempts < 0 {
					fe.add(field+".retry.attempts", "must not be negative")
				}
				rr.Retry.Attempts = *rt.Attempts
			}
			rr.Retry.Backoff = duration(&fe, field+".retry.backoff", rt.Backoff)
		}
		if rule.SessionPersistence != nil {
			fe.add(field+".sessionPersistence", "not supported by Weft; remove it")
		}
		r.Rules = append(r.Rules, rr)
	}
	if len(fe) > 0 {
		return nil, fe
	}
	return r, nil
}

func decodeGRPCRoute(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[gwv1.GRPCRouteSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	var fe fieldErrs
	r := &route.Route{Kind: route.KindGRPC, Parents: parentRefs(&fe, spec.ParentRefs)}
	checkDefaultGateways(&fe, spec.UseDefaultGateways)
	for i, rule := range spec.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		rr := route.Rule{Field: field}
		for j, m := range rule.Matches {
			rr.Matches = append(rr.Matches, grpcMatch(&fe, fmt.Sprintf("%s.matches[%d]", field, j), m))
		}
		rr.Backends = ruleBackends(&fe, field, rule.BackendRefs)
		for j, f := range rule.Filters {
			hf := gwv1.HTTPRouteFilter{
				Type:                   gwv1.HTTPRouteFilterType(f.Type),
				RequestHeaderModifier:  f.RequestHeaderModifier,
				ResponseHeaderModifier: f.ResponseHeaderModifier,
				RequestMirror:          f.RequestMirror,
				ExtensionRef:           f.ExtensionRef,
			}
			if rf, ok := httpFilter(&fe, fmt.Sprintf("%s.filters[%d]", field, j), hf, nil); ok {
				rr.Filters = append(rr.Filters, rf)
			}
		}
		checkFilterSet(&fe, field, rr.Filters)
		if rule.SessionPersistence != nil {
			fe.add(field+".sessionPersistence", "not supported by Weft; remove it")
		}
		r.Rules = append(r.Rules, rr)
	}
	if len(fe) > 0 {
		return nil, fe
	}
	return r, nil
}

// isServiceRef reports whether group and kind name a core Service (the
// Gateway API default for backends; parents must say so).
func isServiceRef(group *gwv1.Group, kind *gwv1.Kind, kindDefault string) (string, string, bool) {
	g, k := "", kindDefault
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	return g, k, (g == "" || g == "core") && k == "Service"
}

func parentRefs(fe *fieldErrs, refs []gwv1.ParentReference) []route.Ref {
	if len(refs) == 0 {
		fe.add("spec.parentRefs", "required: name the Service whose traffic the route governs (kind: Service, group: \"\")")
		return nil
	}
	var out []route.Ref
	for i, p := range refs {
		field := fmt.Sprintf("spec.parentRefs[%d]", i)
		g, k, ok := isServiceRef(p.Group, p.Kind, "Gateway")
		if !ok {
			fe.add(field, "parent %s %q (group %q) is not a Service: Weft governs mesh traffic (GAMMA); set kind: Service and group: \"\"", k, p.Name, g)
			continue
		}
		if p.SectionName != nil {
			fe.add(field+".sectionName", "not supported for a Service parent; use port")
		}
		ref := route.Ref{Name: string(p.Name), Field: field}
		if p.Namespace != nil {
			ref.Namespace = string(*p.Namespace)
		}
		if p.Port != nil {
			ref.Port = *p.Port
			if ref.Port < 1 || ref.Port > 65535 {
				fe.add(field+".port", "%d is not a port (1..65535)", ref.Port)
			}
		}
		checkRefName(fe, field+".name", ref.Name)
		out = append(out, ref)
	}
	return out
}

func checkRefName(fe *fieldErrs, field, name string) {
	if name == "" {
		fe.add(field, "required: name the Service")
	} else if !dnsSubdomain.MatchString(name) || strings.Contains(name, ".") {
		fe.add(field, "%q is not a service name: use lowercase letters, digits and '-' (namespace goes in the namespace field)", name)
	}
}

func objectRef(fe *fieldErrs, field string, b gwv1.BackendObjectReference) route.Ref {
	ref := route.Ref{Name: string(b.Name), Field: field}
	if g, k, ok := isServiceRef(b.Group, b.Kind, "Service"); !ok {
		fe.add(field+".kind", "backend %s %q (group %q) is not supported; only Services are", k, b.Name, g)
	}
	if b.Namespace != nil {
		ref.Namespace = string(*b.Namespace)
	}
	if b.Port != nil {
		ref.Port = *b.Port
		if ref.Port < 1 || ref.Port > 65535 {
			fe.add(field+".port", "%d is not a port (1..65535)", ref.Port)
		}
	}
	checkRefName(fe, field+".name", ref.Name)
	return ref
}

func backendRef(fe *fieldErrs, field string, b gwv1.BackendRef) route.Backend {
	be := route.Backend{Ref: objectRef(fe, field, b.BackendObjectReference), Weight: 1}
	if b.Weight != nil {
		switch w := *b.Weight; {
		case w < 0:
			fe.add(field+".weight", "must not be negative (0 sends no traffic), not %d", w)
		case w > 1_000_000:
			fe.add(field+".weight", "at most 1000000, not %d", w)
		default:
			be.Weight = uint32(w)
		}
	}
	return be
}

var (
	headerName = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`)
	methods    = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true}
)

func compileRE(fe *fieldErrs, field, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		fe.add(field, "invalid regular expression (RE2 syntax): %v", err)
	}
}

func httpMatch(fe *fieldErrs, field string, m gwv1.HTTPRouteMatch) route.Match {
	var out route.Match
	if p := m.Path; p != nil {
		pm := &route.PathMatch{Type: route.PathPrefix, Value: "/"}
		if p.Value != nil {
			pm.Value = *p.Value
		}
		t := gwv1.PathMatchPathPrefix
		if p.Type != nil {
			t = *p.Type
		}
		switch t {
		case gwv1.PathMatchPathPrefix, gwv1.PathMatchExact:
			pm.Type = route.PathPrefix
			if t == gwv1.PathMatchExact {
				pm.Type = route.PathExact
			}
			if !strings.HasPrefix(pm.Value, "/") {
				fe.add(field+".path.value", "%q must start with '/'", pm.Value)
			} else if strings.Contains(pm.Value, "//") || strings.ContainsAny(pm.Value, "?#") {
				fe.add(field+".path.value", "%q must not contain '//', '?' or '#'", pm.Value)
			}
		case gwv1.PathMatchRegularExpression:
			pm.Type = route.PathRegex
			compileRE(fe, field+".path.value", pm.Value)
		default:
			fe.add(field+".path.type", "%q is not a path match type (Exact, PathPrefix or RegularExpression)", t)
		}
		out.Path = pm
	}
	for i, h := range m.Headers {
		regex := false
		if h.Type != nil {
			switch *h.Type {
			case gwv1.HeaderMatchExact:
			case gwv1.HeaderMatchRegularExpression:
				regex = true
			default:
				fe.add(fmt.Sprintf("%s.headers[%d].type", field, i), "%q is not a header match type (Exact or RegularExpression)", *h.Type)
			}
		}
		out.Headers = append(out.Headers, valueMatch(fe, fmt.Sprintf("%s.headers[%d]", field, i), string(h.Name), h.Value, regex))
	}
	for i, q := range m.QueryParams {
		regex := false
		if q.Type != nil {
			switch *q.Type {
			case gwv1.QueryParamMatchExact:
			case gwv1.QueryParamMatchRegularExpression:
				regex = true
			default:
				fe.add(fmt.Sprintf("%s.queryParams[%d].type", field, i), "%q is not a query match type (Exact or RegularExpression)", *q.Type)
			}
		}
		vm := valueMatch(fe, fmt.Sprintf("%s.queryParams[%d]", field, i), string(q.Name), q.Value, regex)
		vm.Name = string(q.Name) // query names are case-sensitive
		out.Query = append(out.Query, vm)
	}
	if m.Method != nil {
		if !methods[string(*m.Method)] {
			fe.add(field+".method", "%q is not an HTTP method (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)", *m.Method)
		}
		out.Method = string(*m.Method)
	}
	return out
}

func valueMatch(fe *fieldErrs, field, name, value string, regex bool) route.ValueMatch {
	if !headerName.MatchString(name) {
		fe.add(field+".name", "%q is not a valid name", name)
	}
	if regex {
		compileRE(fe, field+".value", value)
	}
	return route.ValueMatch{Name: http.CanonicalHeaderKey(name), Value: value, Regex: regex}
}

// grpcName is a gRPC service or method name as GRPCRoute allows it.
var grpcName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

func grpcMatch(fe *fieldErrs, field string, m gwv1.GRPCRouteMatch) route.Match {
	out := route.Match{Method: http.MethodPost}
	if mm := m.Method; mm != nil {
		svc, meth := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			meth = *mm.Method
		}
		if svc == "" && meth == "" {
			fe.add(field+".method", "give service, method or both")
		}
		exact := mm.Type == nil || *mm.Type == gwv1.GRPCMethodMatchExact
		switch {
		case exact:
			if svc != "" && !grpcName.MatchString(svc) {
				fe.add(field+".method.service", "%q is not a gRPC service name", svc)
			}
			if meth != "" && !grpcName.MatchString(meth) || strings.Contains(meth, ".") {
				fe.add(field+".method.method", "%q is not a gRPC method name", meth)
			}
			switch {
			case svc != "" && meth != "":
				out.Path = &route.PathMatch{Type: route.PathExact, Value: "/" + svc + "/" + meth}
			case svc != "":
				out.Path = &route.PathMatch{Type: route.PathPrefix, Value: "/" + svc}
			default:
				out.Path = &route.PathMatch{Type: route.PathRegex, Value: "/[^/]+/" + regexp.QuoteMeta(meth)}
			}
		case *mm.Type == gwv1.GRPCMethodMatchRegularExpression:
			s, me := "[^/]+", "[^/]+"
			if svc != "" {
				compileRE(fe, field+".method.service", svc)
				s = "(?:" + svc + ")"
			}
			if meth != "" {
				compileRE(fe, field+".method.method", meth)
				me = "(?:" + meth + ")"
			}
			out.Path = &route.PathMatch{Type: route.PathRegex, Value: "/" + s + "/" + me}
		default:
			fe.add(field+".method.type", "%q is not a method match type (Exact or RegularExpression)", *mm.Type)
		}
	}
	for i, h := range m.Headers {
		regex := false
		if h.Type != nil {
			switch *h.Type {
			case gwv1.GRPCHeaderMatchExact:
			case gwv1.GRPCHeaderMatchRegularExpression:
				regex = true
			default:
				fe.add(fmt.Sprintf("%s.headers[%d].type", field, i), "%q is not a header match type (Exact or RegularExpression)", *h.Type)
			}
		}
		out.Headers = append(out.Headers, valueMatch(fe, fmt.Sprintf("%s.headers[%d]", field, i), string(h.Name), h.Value, regex))
	}
	return out
}

func headerModifier(fe *fieldErrs, field string, h *gwv1.HTTPHeaderFilter) *route.HeaderModifier {
	out := &route.HeaderModifier{}
	seen := map[string]string{}
	check := func(f, name string) {
		if !headerName.MatchString(name) {
			fe.add(f, "%q is not a valid header name", name)
			return
		}
		k := http.CanonicalHeaderKey(name)
		if prev, dup := seen[k]; dup {
			fe.add(f, "header %q is already modified by %s; name each header once", name, prev)
		}
		seen[k] = f
	}
	for i, s := range h.Set {
		f := fmt.Sprintf("%s.set[%d].name", field, i)
		check(f, string(s.Name))
		if !validHeaderValue(s.Value) {
			fe.add(fmt.Sprintf("%s.set[%d].value", field, i), "must not contain control characters")
		}
		out.Set = append(out.Set, route.Header{Name: http.CanonicalHeaderKey(string(s.Name)), Value: s.Value})
	}
	for i, s := range h.Add {
		f := fmt.Sprintf("%s.add[%d].name", field, i)
		check(f, string(s.Name))
		if !validHeaderValue(s.Value) {
			fe.add(fmt.Sprintf("%s.add[%d].value", field, i), "must not contain control characters")
		}
		out.Add = append(out.Add, route.Header{Name: http.CanonicalHeaderKey(string(s.Name)), Value: s.Value})
	}
	for i, name := range h.Remove {
		check(fmt.Sprintf("%s.remove[%d]", field, i), name)
		out.Remove = append(out.Remove, http.CanonicalHeaderKey(name))
	}
	if len(out.Set)+len(out.Add)+len(out.Remove) == 0 {
		fe.add(field, "give set, add or remove")
	}
	return out
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// pathModifier checks a URLRewrite or RequestRedirect path.
func pathModifier(fe *fieldErrs, field string, p *gwv1.HTTPPathModifier, matches []route.Match, rw *route.Rewrite) {
	if p == nil {
		return
	}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplacePrefixMatch != nil {
			fe.add(field+".replacePrefixMatch", "set only replaceFullPath with type ReplaceFullPath")
		}
		if p.ReplaceFullPath == nil {
			fe.add(field+".replaceFullPath", "required with type ReplaceFullPath")
			return
		}
		if !strings.HasPrefix(*p.ReplaceFullPath, "/") {
			fe.add(field+".replaceFullPath", "%q must start with '/'", *p.ReplaceFullPath)
		}
		rw.FullPath = p.ReplaceFullPath
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplaceFullPath != nil {
			fe.add(field+".replaceFullPath", "set only replacePrefixMatch with type ReplacePrefixMatch")
		}
		if p.ReplacePrefixMatch == nil {
			fe.add(field+".replacePrefixMatch", "required with type ReplacePrefixMatch")
			return
		}
		for _, m := range matches {
			if m.Path == nil || m.Path.Type != route.PathPrefix {
				fe.add(field+".replacePrefixMatch", "needs every match of the rule to have a PathPrefix path match")
				break
			}
		}
		rw.PrefixMatch = p.ReplacePrefixMatch
	default:
		fe.add(field+".type", "%q is not a path modifier type (ReplaceFullPath or ReplacePrefixMatch)", p.Type)
	}
}

func httpFilter(fe *fieldErrs, field string, f gwv1.HTTPRouteFilter, matches []route.Match) (route.Filter, bool) {
	set := map[string]bool{
		"requestHeaderModifier":  f.RequestHeaderModifier != nil,
		"responseHeaderModifier": f.ResponseHeaderModifier != nil,
		"requestMirror":          f.RequestMirror != nil,
		"requestRedirect":        f.RequestRedirect != nil,
		"urlRewrite":             f.URLRewrite != nil,
		"cors":                   f.CORS != nil,
		"externalAuth":           f.ExternalAuth != nil,
		"extensionRef":           f.ExtensionRef != nil,
	}
	want := map[gwv1.HTTPRouteFilterType]string{
		gwv1.HTTPRouteFilterRequestHeaderModifier:  "requestHeaderModifier",
		gwv1.HTTPRouteFilterResponseHeaderModifier: "responseHeaderModifier",
		gwv1.HTTPRouteFilterRequestMirror:          "requestMirror",
		gwv1.HTTPRouteFilterRequestRedirect:        "requestRedirect",
		gwv1.HTTPRouteFilterURLRewrite:             "urlRewrite",
	}[f.Type]
	if want == "" {
		fe.add(field+".type", "%q is not supported (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite)", f.Type)
		return route.Filter{}, false
	}
	ok := true
	for name, isSet := range set {
		if isSet && name != want {
			fe.add(field+"."+name, "must not be set with type %s", f.Type)
			ok = false
		}
	}
	if !set[want] {
		fe.add(field+"."+want, "required with type %s", f.Type)
		return route.Filter{}, false
	}
	var out route.Filter
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		out.RequestHeaders = headerModifier(fe, field+".requestHeaderModifier", f.RequestHeaderModifier)
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		out.ResponseHeaders = headerModifier(fe, field+".responseHeaderModifier", f.ResponseHeaderModifier)
	case gwv1.HTTPRouteFilterRequestMirror:
		m := f.RequestMirror
		mf := field + ".requestMirror"
		out.Mirror = &route.Mirror{Backend: objectRef(fe, mf+".backendRef", m.BackendRef), Percent: 100}
		switch {
		case m.Percent != nil && m.Fraction != nil:
			fe.add(mf, "set percent or fraction, not both")
		case m.Percent != nil:
			if *m.Percent < 0 || *m.Percent > 100 {
				fe.add(mf+".percent", "must be 0..100, not %d", *m.Percent)
			}
			out.Mirror.Percent = float64(*m.Percent)
		case m.Fraction != nil:
			den := int32(100)
			if m.Fraction.Denominator != nil {
				den = *m.Fraction.Denominator
			}
			if den <= 0 || m.Fraction.Numerator < 0 || m.Fraction.Numerator > den {
				fe.add(mf+".fraction", "numerator must be 0..denominator and denominator positive")
			} else {
				out.Mirror.Percent = 100 * float64(m.Fraction.Numerator) / float64(den)
			}
		}
	case gwv1.HTTPRouteFilterURLRewrite:
		rw := &route.Rewrite{}
		if f.URLRewrite.Hostname != nil {
			rw.Hostname = string(*f.URLRewrite.Hostname)
		}
		pathModifier(fe, field+".urlRewrite.path", f.URLRewrite.Path, matches, rw)
		out.Rewrite = rw
	case gwv1.HTTPRouteFilterRequestRedirect:
		r := f.RequestRedirect
		rf := field + ".requestRedirect"
		rd := &route.Redirect{StatusCode: http.StatusFound}
		if r.Scheme != nil {
			if *r.Scheme != "http" && *r.Scheme != "https" {
				fe.add(rf+".scheme", "%q must be http or https", *r.Scheme)
			}
			rd.Scheme = *r.Scheme
		}
		if r.Hostname != nil {
			rd.Hostname = string(*r.Hostname)
		}
		if r.Port != nil {
			if *r.Port < 1 || *r.Port > 65535 {
				fe.add(rf+".port", "%d is not a port (1..65535)", *r.Port)
			}
			rd.Port = *r.Port
		}
		if r.StatusCode != nil {
			if *r.StatusCode != http.StatusMovedPermanently && *r.StatusCode != http.StatusFound {
				fe.add(rf+".statusCode", "must be 301 or 302, not %d", *r.StatusCode)
			}
			rd.StatusCode = *r.StatusCode
		}
		pathModifier(fe, rf+".path", r.Path, matches, &rd.Rewrite)
		out.Redirect = rd
	}
	return out, ok
}

// checkFilterSet applies the Gateway API rules across a rule's filters:
// a redirect excludes a rewrite, and each header modifier appears once.
func checkFilterSet(fe *fieldErrs, field string, fs []route.Filter) {
	var redirect, rewrite, req, resp int
	for _, f := range fs {
		switch {
		case f.Redirect != nil:
			redirect++
		case f.Rewrite != nil:
			rewrite++
		case f.RequestHeaders != nil:
			req++
		case f.ResponseHeaders != nil:
			resp++
		}
	}
	if redirect > 0 && rewrite > 0 {
		fe.add(field+".filters", "RequestRedirect and URLRewrite cannot be combined in one rule")
	}
	for name, n := range map[string]int{"RequestRedirect": redirect, "URLRewrite": rewrite, "RequestHeaderModifier": req, "ResponseHeaderModifier": resp} {
		if n > 1 {
			fe.add(field+".filters", "%s appears %d times; give it once", name, n)
		}
	}
}

// duration parses a Gateway API duration (GEP-2257: e.g. "1s", "500ms",
// "1h30m"); nil is 0.
func duration(fe *fieldErrs, field string, d *gwv1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		fe.add(field, "%q is not a duration like \"500ms\", \"10s\" or \"1m\"", string(*d))
		return 0
	}
	return v
}
