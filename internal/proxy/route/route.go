// Package route is the proxy's route table for one destination: the
// HTTPRoute and GRPCRoute rules the controller sends in a
// DestinationSnapshot (already flattened and sorted in Gateway API
// precedence order), compiled once per snapshot, regular expressions
// included, so that matching a request allocates nothing.
//
// A Table answers which rule a request takes (the first that matches) and
// carries each rule's filters in the shapes the forwarding paths use
// (http1.Edit, redirects, rewrites, mirrors, timeouts). Balancing among a
// rule's backends is the caller's (internal/proxy/outbound).
//
// Only proxy packages import route. A Table is immutable: safe for
// concurrent use.
package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/http1"
)

// Table is the compiled route rules of one destination.
type Table struct {
	// Rules in precedence order.
	Rules []*Rule
}

// Rule is one compiled rule (one match of a route's rule, as the
// controller flattens them).
type Rule struct {
	// Pos is the rule's index in Table.Rules.
	Pos int
	// Name is the route ("HTTPRoute/default/books") and Index the rule's
	// index inside it.
	Name  string
	Index uint32
	// Backends of the rule; empty means the destination's own.
	Backends []*meshv1.Backend
	// Edit holds the header modifiers and a host rewrite; nil when the
	// rule has none. A path rewrite is per request: see Target.
	Edit *http1.Edit
	// RequestHeaders and ResponseHeaders are the header modifiers, also
	// for HTTP/2 (nil when none).
	RequestHeaders, ResponseHeaders *http1.HeaderEdit
	// Host replaces the request's authority when not "".
	Host string
	// Redirect, when not nil, answers the request.
	Redirect *meshv1.RequestRedirect
	// Mirror, when not nil, copies requests to its backend.
	Mirror *meshv1.RequestMirror
	// RequestTimeout bounds the request (0: none); TimeoutReason is the
	// 504's reason.
	RequestTimeout time.Duration
	TimeoutReason  string
	// BackendTimeout bounds each try (0: none).
	BackendTimeout time.Duration
	// Proto is the rule as received.
	Proto *meshv1.RouteRule

	matches  []match
	fullPath *string
	prefix   *string
}

type match struct {
	pathType meshv1.PathMatch_Type
	path     string // prefix without its trailing '/', or the exact path
	anyPath  bool
	pathRE   *regexp.Regexp
	method   string
	headers  []valueMatch
	query    []valueMatch
}

type valueMatch struct {
	name  string // canonical header name, or the query parameter
	value string
	re    *regexp.Regexp
}

func (v *valueMatch) matches(s string, ok bool) bool {
	if !ok {
		return false
	}
	if v.re != nil {
		return v.re.MatchString(s)
	}
	return s == v.value
}

// Compile compiles rules. A rule that cannot be compiled (a regular
// expression the controller should have refused) is left out and
// reported in the joined error; the table holds the others.
func Compile(rules []*meshv1.RouteRule) (*Table, error) {
	t := &Table{}
	var errs []error
	for _, pr := range rules {
		r, err := compileRule(pr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s rule %d: %w", pr.GetRoute(), pr.GetRule(), err))
			continue
		}
		r.Pos = len(t.Rules)
		t.Rules = append(t.Rules, r)
	}
	return t, errors.Join(errs...)
}

// whole compiles expr to match a whole value.
func whole(expr string) (*regexp.Regexp, error) { return regexp.Compile("^(?:" + expr + ")$") }

func compileRule(pr *meshv1.RouteRule) (*Rule, error) {
	r := &Rule{
		Name:           pr.GetRoute(),
		Index:          pr.GetRule(),
		Backends:       pr.GetBackends(),
		RequestTimeout: time.Duration(pr.GetRequestTimeoutMs()) * time.Millisecond,
		BackendTimeout: time.Duration(pr.GetBackendTimeoutMs()) * time.Millisecond,
		Proto:          pr,
	}
	if r.RequestTimeout > 0 {
		r.TimeoutReason = fmt.Sprintf("request timeout %s exceeded for %s", r.RequestTimeout, r.Name)
	}
	ms := pr.GetMatches()
	if len(ms) == 0 {
		ms = []*meshv1.RouteMatch{{}}
	}
	for _, pm := range ms {
		m := match{method: pm.GetMethod(), anyPath: pm.GetPath() == nil}
		if p := pm.GetPath(); p != nil {
			m.pathType = p.GetType()
			switch p.GetType() {
			case meshv1.PathMatch_EXACT:
				m.path = p.GetValue()
			case meshv1.PathMatch_PREFIX:
				m.path = strings.TrimRight(p.GetValue(), "/")
				m.anyPath = m.path == ""
			case meshv1.PathMatch_REGEX:
				re, err := whole(p.GetValue())
				if err != nil {
					return nil, fmt.Errorf("path regex: %w", err)
				}
				m.pathRE = re
			default:
				return nil, fmt.Errorf("unknown path match type %v", p.GetType())
			}
		}
		for _, h := range pm.GetHeaders() {
			v := valueMatch{name: http.CanonicalHeaderKey(h.GetName()), value: h.GetValue()}
			if h.GetRegex() {
				re, err := whole(h.GetValue())
				if err != nil {
					return nil, fmt.Errorf("header %s regex: %w", h.GetName(), err)
				}
				v.re = re
			}
			m.headers = append(m.headers, v)
		}
		for _, q := range pm.GetQuery() {
			v := valueMatch{name: q.GetName(), value: q.GetValue()}
			if q.GetRegex() {
				re, err := whole(q.GetValue())
				if err != nil {
					return nil, fmt.Errorf("query %s regex: %w", q.GetName(), err)
				}
				v.re = re
			}
			m.query = append(m.query, v)
		}
		r.matches = append(r.matches, m)
	}
	for _, f := range pr.GetFilters() {
		switch {
		case f.GetRequestHeaderModifier() != nil:
			r.RequestHeaders = headerEdit(f.GetRequestHeaderModifier())
		case f.GetResponseHeaderModifier() != nil:
			r.ResponseHeaders = headerEdit(f.GetResponseHeaderModifier())
		case f.GetRequestMirror() != nil:
			r.Mirror = f.GetRequestMirror()
		case f.GetRequestRedirect() != nil:
			r.Redirect = f.GetRequestRedirect()
		case f.GetUrlRewrite() != nil:
			rw := f.GetUrlRewrite()
			r.Host = rw.GetHostname()
			if v := rw.GetReplaceFullPath(); v != "" {
				r.fullPath = &v
			} else if v := rw.GetReplacePrefixMatch(); v != "" {
				r.prefix = &v
			}
		}
	}
	if r.RequestHeaders != nil || r.ResponseHeaders != nil || r.Host != "" {
		r.Edit = &http1.Edit{Host: r.Host}
		if r.RequestHeaders != nil {
			r.Edit.Request = *r.RequestHeaders
		}
		if r.ResponseHeaders != nil {
			r.Edit.Response = *r.ResponseHeaders
		}
	}
	return r, nil
}

func headerEdit(h *meshv1.HeaderModifier) *http1.HeaderEdit {
	e := &http1.HeaderEdit{Remove: h.GetRemove()}
	for _, s := range h.GetSet() {
		e.Set = append(e.Set, http1.HeaderField{Name: s.GetName(), Value: s.GetValue()})
	}
	for _, s := range h.GetAdd() {
		e.Add = append(e.Add, http1.HeaderField{Name: s.GetName(), Value: s.GetValue()})
	}
	return e
}

// request is what matching reads of a request, without copying it.
type request interface {
	method() string
	path() string
	rawQuery() string
	header(canonical string) (string, bool)
}

type h1Request struct{ h *http1.RequestHead }

func (r h1Request) method() string { return r.h.Method() }
func (r h1Request) path() string   { return r.h.Path() }
func (r h1Request) rawQuery() string {
	t := r.h.Target()
	if i := strings.IndexByte(t, '?'); i >= 0 {
		return t[i+1:]
	}
	return ""
}
func (r h1Request) header(name string) (string, bool) {
	v := r.h.Header(name)
	return v, v != "" || hasField(r.h, name)
}

// hasField tells an empty header value from an absent field (rare: only
// asked when the value is empty).
func hasField(h *http1.RequestHead, name string) bool {
	found := false
	h.VisitHeaders(func(n, _ string) {
		if strings.EqualFold(n, name) {
			found = true
		}
	})
	return found
}

type h2Request struct{ r *http.Request }

func (r h2Request) method() string   { return r.r.Method }
func (r h2Request) path() string     { return r.r.URL.Path }
func (r h2Request) rawQuery() string { return r.r.URL.RawQuery }
func (r h2Request) header(name string) (string, bool) {
	vs, ok := r.r.Header[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// MatchHTTP1 returns the first rule matching an HTTP/1 request, or nil.
func (t *Table) MatchHTTP1(h *http1.RequestHead) *Rule {
	if t == nil || len(t.Rules) == 0 {
		return nil
	}
	return matchIn(t, h1Request{h})
}

// MatchHTTP returns the first rule matching an HTTP/2 (or gRPC) request,
// or nil.
func (t *Table) MatchHTTP(r *http.Request) *Rule {
	if t == nil || len(t.Rules) == 0 {
		return nil
	}
	return matchIn(t, h2Request{r})
}

func matchIn[R request](t *Table, req R) *Rule {
	for _, r := range t.Rules {
		for i := range r.matches {
			if r.matches[i].matches(req) {
				return r
			}
		}
	}
	return nil
}

func (m *match) matches(req request) bool {
	if m.method != "" && req.method() != m.method {
		return false
	}
	if !m.anyPath && !m.matchPath(req.path()) {
		return false
	}
	for i := range m.headers {
		h := &m.headers[i]
		if !h.matches(req.header(h.name)) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := req.rawQuery()
		for i := range m.query {
			v := &m.query[i]
			if !v.matches(queryValue(q, v.name)) {
				return false
			}
		}
	}
	return true
}

func (m *match) matchPath(p string) bool {
	switch m.pathType {
	case meshv1.PathMatch_EXACT:
		return p == m.path
	case meshv1.PathMatch_REGEX:
		return m.pathRE.MatchString(p)
	}
	return prefixMatches(p, m.path)
}

// prefixMatches applies Gateway API path prefix semantics: prefix (without
// trailing slash) matches whole path elements, so "/foo" matches "/foo",
// "/foo/" and "/foo/bar" but not "/foobar".
func prefixMatches(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// queryValue returns the first value of parameter name in a raw query.
// Values are compared as sent unless they are escaped, which costs an
// allocation.
func queryValue(q, name string) (string, bool) {
	for q != "" {
		var kv string
		if i := strings.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			kv, q = q, ""
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if u, err := unescape(k); err == nil {
				k = u
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := unescape(v); err == nil {
				v = u
			}
		}
		return v, true
	}
	return "", false
}

func unescape(s string) (string, error) { return url.QueryUnescape(s) }

// Target returns the request-target to forward for path and raw query
// after the rule's URL rewrite, and whether it changed.
func (r *Rule) Target(path, rawQuery string) (string, bool) {
	p, ok := r.rewritePath(path, r.fullPath, r.prefix)
	if !ok {
		return "", false
	}
	if rawQuery != "" {
		p += "?" + rawQuery
	}
	return p, true
}

// RewritePath returns the path after the rule's URL rewrite, and whether
// it changed.
func (r *Rule) RewritePath(path string) (string, bool) {
	return r.rewritePath(path, r.fullPath, r.prefix)
}

func (r *Rule) rewritePath(path string, full, prefix *string) (string, bool) {
	switch {
	case full != nil:
		return *full, true
	case prefix != nil:
		return replacePrefix(path, r.matchedPrefix(path), *prefix), true
	}
	return "", false
}

// matchedPrefix returns the prefix of the rule's match that matches path.
func (r *Rule) matchedPrefix(path string) string {
	for _, m := range r.matches {
		if m.pathType == meshv1.PathMatch_PREFIX && (m.anyPath || prefixMatches(path, m.path)) {
			return m.path
		}
	}
	return ""
}

// replacePrefix replaces prefix (matched on whole elements) by repl:
// "/foo/bar" with prefix "/foo" and repl "/baz" is "/baz/bar"; with repl
// "/" it is "/bar".
func replacePrefix(path, prefix, repl string) string {
	rest := path[len(prefix):]
	if strings.HasSuffix(repl, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	out := repl + rest
	if out == "" {
		return "/"
	}
	return out
}

// RedirectLocation returns the Location of the rule's redirect for a
// request to host (the authority, maybe with a port), path and raw query.
func (r *Rule) RedirectLocation(host, path, rawQuery string) string {
	rd := r.Redirect
	scheme := rd.GetScheme()
	if scheme == "" {
		scheme = "http"
	}
	hostname, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		hostname, port = host[:i], host[i+1:]
	}
	if rd.GetHostname() != "" {
		hostname = rd.GetHostname()
	}
	switch {
	case rd.GetPort() != 0:
		port = strconv.Itoa(int(rd.GetPort()))
	case rd.GetScheme() != "":
		port = "" // the scheme's well-known port
	}
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	var full, prefix *string
	if v := rd.GetReplaceFullPath(); v != "" {
		full = &v
	} else if v := rd.GetReplacePrefixMatch(); v != "" {
		prefix = &v
	}
	if p, ok := r.rewritePath(path, full, prefix); ok {
		path = p
	}
	loc := scheme + "://" + hostname
	if port != "" {
		loc += ":" + port
	}
	loc += path
	if rawQuery != "" {
		loc += "?" + rawQuery
	}
	return loc
}

// RedirectStatus is the status of the rule's redirect: 301 or 302.
func (r *Rule) RedirectStatus() int {
	if s := int(r.Redirect.GetStatusCode()); s == http.StatusMovedPermanently {
		return s
	}
	return http.StatusFound
}
