// Package authz evaluates the inbound authorization policy of one port:
// who may connect, and for HTTP which requests they may send. The
// controller compiles users' Server, AuthorizationPolicy and default-policy
// documents into a meshv1.InboundPolicy per port; Compile turns that into a
// Policy once per inbound snapshot, and the proxy asks it per connection
// (identity, opaque TCP) and per request (identity, method, normalised
// path, host, headers).
//
// Rules only allow. A request is allowed when any rule matches it;
// otherwise the port's default decides: all-unauthenticated (allow),
// all-authenticated (allow clients with a verified identity), deny, or
// audit (allow, but report and count what deny would have refused). Once a
// Server selects a port the controller sends deny (or the Server's
// accessPolicy) as that default.
//
// Identities are compared exactly, byte for byte: "spiffe://cluster.local/ns/
// default/sa/web" never matches ".../sa/web-admin" nor another trust
// domain. A namespace rule matches only identities of the policy's trust
// domain. Paths are compared case-sensitively against the path the caller
// normalised with package pathnorm; a header condition must hold for every
// value the request carries for that header; hosts are compared
// case-insensitively without port or trailing dot.
//
// The proxy (internal/proxy/inbound) and the controller (for `weft authz
// check`) import authz; it imports neither Kubernetes nor the controller.
// A Policy is immutable and safe for concurrent use; so is a Table.
package authz

import (
	"fmt"
	"regexp"
	"strings"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// Default policy names, as users write them.
const (
	AllUnauthenticated = "all-unauthenticated"
	AllAuthenticated   = "all-authenticated"
	Deny               = "deny"
	Audit              = "audit"
)

// DefaultName returns the user-facing name of a default policy.
func DefaultName(d meshv1.InboundPolicy_Default) string {
	switch d {
	case meshv1.InboundPolicy_ALL_AUTHENTICATED:
		return AllAuthenticated
	case meshv1.InboundPolicy_DENY:
		return Deny
	case meshv1.InboundPolicy_AUDIT:
		return Audit
	}
	return AllUnauthenticated
}

// ParseDefault turns a user-facing name into the API's enum.
func ParseDefault(s string) (meshv1.InboundPolicy_Default, error) {
	switch s {
	case AllUnauthenticated:
		return meshv1.InboundPolicy_ALL_UNAUTHENTICATED, nil
	case AllAuthenticated:
		return meshv1.InboundPolicy_ALL_AUTHENTICATED, nil
	case Deny:
		return meshv1.InboundPolicy_DENY, nil
	case Audit:
		return meshv1.InboundPolicy_AUDIT, nil
	}
	return 0, fmt.Errorf("unknown default inbound policy %q (want all-unauthenticated, all-authenticated, deny or audit)", s)
}

// Policy is the compiled authorization of one port.
type Policy struct {
	server    string
	def       meshv1.InboundPolicy_Default
	defSource string
	strict    bool
	rules     []rule
	// defaultBy names the default in decisions.
	defaultBy string
	counters  map[string]*counters // by Decision.By; nil without metrics
}

type rule struct {
	name     string
	anyAuth  bool
	ids      map[string]bool
	nsPrefix []string // "spiffe://<td>/ns/<ns>/sa/"
	unauth   bool
	http     bool
	paths    []pathMatch
	methods  []string
	hosts    []string
	headers  []headerMatch
}

type pathMatch struct {
	value  string
	prefix bool // value ends with "/": matches value and below, and value without its slash
}

type headerMatch struct {
	name  string
	value string
	re    *regexp.Regexp
}

// Decision is the outcome of an evaluation.
type Decision struct {
	// Allowed says whether the connection or request may proceed.
	Allowed bool
	// Audit is set when the request is allowed only because the policy
	// audits: enforcing would have denied it.
	Audit bool
	// By names what decided, bounded per port: the AuthorizationPolicy of
	// the matching rule ("default/web-reads"), the Server whose default
	// applied ("Server/default/api-http"), or the default policy
	// ("default policy deny").
	By string
	// Rule is the index of the matching rule among the rules named By, or
	// -1 when a default decided.
	Rule int
	// Strict is set when a plaintext connection was refused by a strict
	// port.
	Strict bool

	counters *counters
	// what the decision was about, for Why.
	peer, method, path string
	http, rule         bool
}

// Why explains the decision in a sentence, for logs and the CLI. It
// allocates; the request path never calls it for allowed requests.
func (d Decision) Why() string {
	what := "a connection"
	if d.http {
		what = d.method + " " + d.path
	}
	from := who(d.peer)
	switch {
	case d.Strict:
		return "plaintext " + what + " refused: the port is strict and the client presented no identity"
	case d.rule:
		return fmt.Sprintf("rule %d of %s allows %s from %s", d.Rule, d.By, what, from)
	}
	cond := "no rule allows "
	if !d.http {
		cond = "no rule without HTTP conditions allows "
	}
	why := cond + what + " from " + from + "; " + d.By
	switch {
	case d.Audit:
		why += " audits: allowed, but deny would refuse it"
	case d.Allowed:
		why += " allows it"
	default:
		why += " denies it"
	}
	return why
}

// Reason is the Weft-Proxy-Error value of a denial.
func (d Decision) Reason() string {
	if d.Strict {
		return "denied: plaintext connection to a strict port"
	}
	if strings.HasPrefix(d.By, "default policy ") {
		return "denied by " + d.By
	}
	return "denied by policy " + d.By
}

// AllowAll is the policy of a port the controller sent no policy for.
var AllowAll = mustCompile(nil)

func mustCompile(p *meshv1.InboundPolicy) *Policy {
	c, err := Compile(p, nil)
	if err != nil {
		panic(err) // only called with nil
	}
	return c
}

// DenyAll returns a policy denying everything with the given explanation,
// for a proxy without usable policy (fail closed).
func DenyAll(why string) *Policy {
	return &Policy{def: meshv1.InboundPolicy_DENY, defaultBy: "default policy deny (" + why + ")"}
}

// Compile checks and compiles p; nil means all-unauthenticated. m, if not
// nil, resolves the metrics of every decision the policy can make, so that
// Record costs no lookup.
func Compile(p *meshv1.InboundPolicy, m *Metrics) (*Policy, error) {
	c := &Policy{
		server:    p.GetServer(),
		def:       p.GetDefaultPolicy(),
		defSource: p.GetDefaultSource(),
		strict:    p.GetTlsMode() == meshv1.InboundPolicy_STRICT,
	}
	c.defaultBy = "default policy " + DefaultName(c.def)
	if c.server != "" {
		c.defaultBy = c.server
	}
	td := p.GetTrustDomain()
	if td == "" {
		td = config.DefaultTrustDomain
	}
	for i, r := range p.GetRules() {
		cr := rule{name: r.GetName(), unauth: r.GetUnauthenticated(), methods: r.GetMethods()}
		if cr.name == "" {
			return nil, fmt.Errorf("rule %d: no name", i)
		}
		for _, id := range r.GetIdentities() {
			if id == "*" {
				cr.anyAuth = true
				continue
			}
			if cr.ids == nil {
				cr.ids = map[string]bool{}
			}
			cr.ids[id] = true
		}
		for _, ns := range r.GetNamespaces() {
			if ns == "" || strings.Contains(ns, "/") {
				return nil, fmt.Errorf("rule %s: invalid namespace %q", cr.name, ns)
			}
			cr.nsPrefix = append(cr.nsPrefix, "spiffe://"+td+"/ns/"+ns+"/sa/")
		}
		for _, path := range r.GetPaths() {
			if !strings.HasPrefix(path, "/") {
				return nil, fmt.Errorf("rule %s: path %q must start with '/'", cr.name, path)
			}
			if v, ok := strings.CutSuffix(path, "/*"); ok {
				cr.paths = append(cr.paths, pathMatch{value: v + "/", prefix: true})
			} else {
				cr.paths = append(cr.paths, pathMatch{value: path})
			}
		}
		for _, h := range r.GetHosts() {
			cr.hosts = append(cr.hosts, canonicalHost(h))
		}
		for _, h := range r.GetHeaders() {
			hm := headerMatch{name: h.GetName(), value: h.GetValue()}
			if h.GetRegex() {
				re, err := regexp.Compile("^(?:" + h.GetValue() + ")$")
				if err != nil {
					return nil, fmt.Errorf("rule %s: header %s: %w", cr.name, h.GetName(), err)
				}
				hm.re = re
			}
			cr.headers = append(cr.headers, hm)
		}
		cr.http = len(cr.paths) > 0 || len(cr.methods) > 0 || len(cr.hosts) > 0 || len(cr.headers) > 0
		c.rules = append(c.rules, cr)
	}
	if m != nil {
		c.counters = map[string]*counters{}
		c.counters[c.defaultBy] = m.resolve(c.defaultBy)
		for _, r := range c.rules {
			if c.counters[r.name] == nil {
				c.counters[r.name] = m.resolve(r.name)
			}
		}
	}
	return c, nil
}

// Server returns the Server that selects the port, "" if none.
func (p *Policy) Server() string { return p.server }

// DefaultPolicy returns the name of the port's default and where it came
// from ("mesh", "InboundPolicyDefault/shop/strict", a Server).
func (p *Policy) DefaultPolicy() (name, source string) { return DefaultName(p.def), p.defSource }

// Strict reports whether plaintext connections are refused.
func (p *Policy) Strict() bool { return p.strict }

// Request is what an HTTP request is judged on.
type Request struct {
	// Method, e.g. "GET".
	Method string
	// Path normalised by pathnorm.Normalize, without query.
	Path string
	// Host is the request's authority (Host header or :authority).
	Host string
	// Header gives every value of a named header (any case); nil means
	// no headers. *http1.RequestHead and http.Header implement it.
	Header Headers
}

// Headers gives every value of a named header.
type Headers interface {
	Values(name string) []string
}

// Connection judges a new connection from peer ("" when unauthenticated).
// For an opaque TCP connection (http false) only rules without HTTP
// conditions can allow it; for HTTP the connection is refused only by a
// strict port, and each request is judged by Request.
func (p *Policy) Connection(peer string, http bool) Decision {
	if p.strict && peer == "" {
		return Decision{By: p.defaultBy, Rule: -1, Strict: true, counters: p.counters[p.defaultBy], peer: peer, http: http}
	}
	if http {
		return Decision{Allowed: true, By: p.defaultBy, Rule: -1, peer: peer, http: true}
	}
	for i := range p.rules {
		r := &p.rules[i]
		if !r.http && r.matchesPeer(peer) {
			return p.allowedBy(i, peer, "", "", false)
		}
	}
	return p.byDefault(peer, "", "", false)
}

// Request judges one HTTP request from peer ("" when unauthenticated).
func (p *Policy) Request(peer string, req *Request) Decision {
	for i := range p.rules {
		r := &p.rules[i]
		if r.matchesPeer(peer) && r.matchesRequest(req) {
			return p.allowedBy(i, peer, req.Method, req.Path, true)
		}
	}
	return p.byDefault(peer, req.Method, req.Path, true)
}

func (p *Policy) allowedBy(i int, peer, method, path string, http bool) Decision {
	name := p.rules[i].name
	n := 0
	for j := range i {
		if p.rules[j].name == name {
			n++
		}
	}
	return Decision{Allowed: true, By: name, Rule: n, counters: p.counters[name], peer: peer, method: method, path: path, http: http, rule: true}
}

func (p *Policy) byDefault(peer, method, path string, http bool) Decision {
	d := Decision{By: p.defaultBy, Rule: -1, counters: p.counters[p.defaultBy], peer: peer, method: method, path: path, http: http}
	switch p.def {
	case meshv1.InboundPolicy_ALL_UNAUTHENTICATED:
		d.Allowed = true
	case meshv1.InboundPolicy_ALL_AUTHENTICATED:
		d.Allowed = peer != ""
	case meshv1.InboundPolicy_AUDIT:
		d.Allowed, d.Audit = true, true
	}
	return d
}

func who(peer string) string {
	if peer == "" {
		return "an unauthenticated client"
	}
	return peer
}

func (r *rule) matchesPeer(peer string) bool {
	if peer == "" {
		return r.unauth
	}
	if r.anyAuth || r.ids[peer] {
		return true
	}
	for _, pre := range r.nsPrefix {
		if sa, ok := strings.CutPrefix(peer, pre); ok && sa != "" && !strings.Contains(sa, "/") {
			return true
		}
	}
	return false
}

func (r *rule) matchesRequest(req *Request) bool {
	if len(r.paths) > 0 && !anyPath(r.paths, req.Path) {
		return false
	}
	if len(r.methods) > 0 && !contains(r.methods, req.Method) {
		return false
	}
	if len(r.hosts) > 0 && !contains(r.hosts, canonicalHost(req.Host)) {
		return false
	}
	for _, h := range r.headers {
		var vals []string
		if req.Header != nil {
			vals = req.Header.Values(h.name)
		}
		// Every value must match: a client adding a second value the
		// application reads instead ("x-role: reader" then "x-role:
		// admin") does not slip past a rule that checked the first.
		if len(vals) == 0 {
			return false
		}
		for _, v := range vals {
			if h.re != nil && !h.re.MatchString(v) || h.re == nil && v != h.value {
				return false
			}
		}
	}
	return true
}

func anyPath(ps []pathMatch, path string) bool {
	for _, m := range ps {
		switch {
		case !m.prefix && path == m.value:
			return true
		case m.prefix && (strings.HasPrefix(path, m.value) || path+"/" == m.value):
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// canonicalHost lower-cases a host and drops its port and trailing dot:
// "API.Default.:8080" is "api.default".
func canonicalHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// Record counts d in the metrics the policy was compiled with; without
// metrics it does nothing.
func (p *Policy) Record(d Decision) {
	if d.counters == nil {
		return
	}
	if d.Allowed {
		d.counters.allow.Inc()
		if d.Audit {
			d.counters.audit.Inc()
		}
		return
	}
	d.counters.deny.Inc()
}
