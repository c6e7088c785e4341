package authz

import (
	"strings"
	"testing"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/metrics"
)

const (
	web      = "spiffe://cluster.local/ns/default/sa/web"
	webAdmin = "spiffe://cluster.local/ns/default/sa/web-admin"
	cmDot    = "spiffe://cluster.local/ns/default/sa/cert-manager.io"
	cmDash   = "spiffe://cluster.local/ns/default/sa/cert-manager-io"
	otherTD  = "spiffe://evil.local/ns/default/sa/web"
	shopSA   = "spiffe://cluster.local/ns/shop/sa/cart"
)

func compile(t *testing.T, p *meshv1.InboundPolicy) *Policy {
	t.Helper()
	c, err := Compile(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(path string) *Request { return &Request{Method: "GET", Path: path} }

func TestLookalikeIdentities(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{Server: "Server/default/api", DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/web", Identities: []string{web}},
		{Name: "default/cm", Identities: []string{cmDot}},
	}})
	tests := []struct {
		peer string
		want bool
	}{
		{web, true},
		{webAdmin, false},
		{"spiffe://cluster.local/ns/default/sa/we", false},
		{web + "/", false},
		{"SPIFFE://cluster.local/ns/default/sa/web", false},
		{otherTD, false},
		{cmDot, true},
		{cmDash, false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			got := p.Request(tt.peer, get("/")).Allowed
			if got != tt.want {
				t.Errorf("Request from %q allowed = %v, want %v", tt.peer, got, tt.want)
			}
			if got := p.Connection(tt.peer, false).Allowed; got != tt.want {
				t.Errorf("Connection from %q allowed = %v, want %v", tt.peer, got, tt.want)
			}
		})
	}
}

func TestNamespaceRuleBindsTrustDomain(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{DefaultPolicy: meshv1.InboundPolicy_DENY, TrustDomain: "cluster.local",
		Rules: []*meshv1.AuthzRule{{Name: "shop/ns", Namespaces: []string{"shop"}}}})
	tests := []struct {
		peer string
		want bool
	}{
		{shopSA, true},
		{"spiffe://evil.local/ns/shop/sa/cart", false},
		{"spiffe://cluster.local/ns/shop-x/sa/cart", false},
		{"spiffe://cluster.local/ns/shop/sa/", false},
		{"spiffe://cluster.local/ns/shop/sa/a/b", false},
		{web, false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			if got := p.Request(tt.peer, get("/")).Allowed; got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		def                  meshv1.InboundPolicy_Default
		wantUnauth, wantAuth bool
		wantAudit            bool
		wantBy               string
	}{
		{meshv1.InboundPolicy_ALL_UNAUTHENTICATED, true, true, false, "default policy all-unauthenticated"},
		{meshv1.InboundPolicy_ALL_AUTHENTICATED, false, true, false, "default policy all-authenticated"},
		{meshv1.InboundPolicy_DENY, false, false, false, "default policy deny"},
		{meshv1.InboundPolicy_AUDIT, true, true, true, "default policy audit"},
	}
	for _, tt := range tests {
		t.Run(DefaultName(tt.def), func(t *testing.T) {
			p := compile(t, &meshv1.InboundPolicy{DefaultPolicy: tt.def})
			u := p.Request("", get("/x"))
			a := p.Request(web, get("/x"))
			if u.Allowed != tt.wantUnauth || a.Allowed != tt.wantAuth {
				t.Errorf("unauthenticated %v authenticated %v, want %v %v", u.Allowed, a.Allowed, tt.wantUnauth, tt.wantAuth)
			}
			if u.Audit != tt.wantAudit || a.Audit != tt.wantAudit {
				t.Errorf("audit %v %v, want %v", u.Audit, a.Audit, tt.wantAudit)
			}
			if u.By != tt.wantBy {
				t.Errorf("by %q, want %q", u.By, tt.wantBy)
			}
			if got := p.Connection("", false).Allowed; got != tt.wantUnauth {
				t.Errorf("tcp unauthenticated allowed = %v, want %v", got, tt.wantUnauth)
			}
		})
	}
}

func TestPathsMethodsHostsTCP(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{Server: "Server/default/api", DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/public", Identities: []string{"*"}, Unauthenticated: true, Paths: []string{"/public/*", "/exact"}, Methods: []string{"GET", "HEAD"}},
		{Name: "default/host", Identities: []string{web}, Hosts: []string{"api.default"}, Paths: []string{"/h"}},
	}})
	tests := []struct {
		name string
		peer string
		req  Request
		want bool
	}{
		{"prefix", "", Request{Method: "GET", Path: "/public/a/b"}, true},
		{"prefix itself", "", Request{Method: "GET", Path: "/public"}, true},
		{"prefix with slash", "", Request{Method: "GET", Path: "/public/"}, true},
		{"prefix lookalike", "", Request{Method: "GET", Path: "/publicity"}, false},
		{"exact", web, Request{Method: "HEAD", Path: "/exact"}, true},
		{"exact below", web, Request{Method: "GET", Path: "/exact/x"}, false},
		{"method", web, Request{Method: "POST", Path: "/public/a"}, false},
		{"admin", web, Request{Method: "GET", Path: "/admin"}, false},
		{"ADMIN", web, Request{Method: "GET", Path: "/ADMIN"}, false},
		{"host case port dot", web, Request{Method: "GET", Path: "/h", Host: "API.Default.:8080"}, true},
		{"other host", web, Request{Method: "GET", Path: "/h", Host: "api.default.evil"}, false},
		{"host rule other peer", webAdmin, Request{Method: "GET", Path: "/h", Host: "api.default"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Request(tt.peer, &tt.req).Allowed; got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
	// A rule with HTTP conditions never opens an opaque connection.
	if d := p.Connection(web, false); d.Allowed || d.By != "Server/default/api" {
		t.Errorf("tcp connection: %+v, want denied by the Server", d)
	}
	if d := p.Connection(web, false); !strings.HasPrefix(d.Reason(), "denied by policy Server/default/api") {
		t.Errorf("reason %q", d.Reason())
	}
}

func TestHeaderRuleMatchesEveryValue(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/readers", Identities: []string{"*"}, Headers: []*meshv1.HeaderMatch{{Name: "x-role", Value: "reader"}}},
		{Name: "default/re", Identities: []string{"*"}, Headers: []*meshv1.HeaderMatch{{Name: "x-team", Value: "a|b", Regex: true}}},
	}})
	tests := []struct {
		name string
		hdr  map[string][]string
		want bool
	}{
		{"one value", map[string][]string{"x-role": {"reader"}}, true},
		{"two matching", map[string][]string{"x-role": {"reader", "reader"}}, true},
		{"second value differs", map[string][]string{"x-role": {"reader", "admin"}}, false},
		{"first value differs", map[string][]string{"x-role": {"admin", "reader"}}, false},
		{"comma list", map[string][]string{"x-role": {"reader, admin"}}, false},
		{"absent", map[string][]string{}, false},
		{"regex all", map[string][]string{"x-team": {"a", "b"}}, true},
		{"regex anchored", map[string][]string{"x-team": {"ab"}}, false},
		{"regex one bad", map[string][]string{"x-team": {"a", "c"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{Method: "GET", Path: "/", Header: mapHeaders(tt.hdr)}
			if got := p.Request(web, req).Allowed; got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStrictRefusesPlaintext(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{TlsMode: meshv1.InboundPolicy_STRICT})
	for _, http := range []bool{true, false} {
		if d := p.Connection("", http); d.Allowed || !d.Strict {
			t.Errorf("http=%v plaintext: %+v, want refused as strict", http, d)
		}
		if d := p.Connection(web, http); !d.Allowed {
			t.Errorf("http=%v authenticated: %+v, want allowed", http, d)
		}
	}
}

func TestMetricsAndAudit(t *testing.T) {
	m := NewMetrics(metrics.New(), "api.default")
	p, err := Compile(&meshv1.InboundPolicy{Server: "Server/default/api", DefaultPolicy: meshv1.InboundPolicy_AUDIT, Rules: []*meshv1.AuthzRule{
		{Name: "default/public", Unauthenticated: true, Paths: []string{"/public/*"}},
	}}, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/public/a", "/admin", "/admin", "/public/b", "/public/c"} {
		d := p.Request("", get(path))
		if !d.Allowed {
			t.Fatalf("%s denied in audit mode", path)
		}
		p.Record(d)
	}
	tests := []struct {
		name string
		c    metrics.Counter
		want float64
	}{
		{"allow public", m.allow.With("inbound", "api.default", "default/public"), 3},
		{"allow server", m.allow.With("inbound", "api.default", "Server/default/api"), 2},
		{"audit server", m.auditDenies.With("inbound", "api.default", "Server/default/api"), 2},
		{"audit public", m.auditDenies.With("inbound", "api.default", "default/public"), 0},
		{"deny", m.deny.With("inbound", "api.default", "Server/default/api"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Value(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRuleIndexWithinPolicy(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/a", Identities: []string{web}, Paths: []string{"/a"}},
		{Name: "default/b", Identities: []string{web}, Paths: []string{"/b"}},
		{Name: "default/a", Identities: []string{web}, Paths: []string{"/c"}},
	}})
	d := p.Request(web, get("/c"))
	if d.By != "default/a" || d.Rule != 1 {
		t.Errorf("by %q rule %d, want default/a rule 1", d.By, d.Rule)
	}
}

func TestTable(t *testing.T) {
	var snap *meshv1.InboundSnapshot
	tb := NewTable(func() *meshv1.InboundSnapshot { return snap }, nil, nil)
	if d := tb.Port(80).Request("", get("/")); d.Allowed {
		t.Errorf("before any snapshot: allowed, want denied")
	}
	snap = &meshv1.InboundSnapshot{Ports: []*meshv1.InboundPort{{Port: 80, Policy: &meshv1.InboundPolicy{DefaultPolicy: meshv1.InboundPolicy_DENY}}}}
	first := tb.Port(80)
	if first.Request("", get("/")).Allowed {
		t.Errorf("deny port allowed")
	}
	if tb.Port(80) != first {
		t.Errorf("compiled twice for one snapshot")
	}
	if !tb.Port(81).Request("", get("/")).Allowed {
		t.Errorf("unlisted port denied, want the mesh default")
	}
	snap = &meshv1.InboundSnapshot{Ports: []*meshv1.InboundPort{{Port: 80, Policy: &meshv1.InboundPolicy{Rules: []*meshv1.AuthzRule{
		{Name: "x/bad", Headers: []*meshv1.HeaderMatch{{Name: "a", Value: "(", Regex: true}}}}}}}}
	if d := tb.Port(80).Request(web, get("/")); d.Allowed || !strings.Contains(d.By, "invalid policy") {
		t.Errorf("invalid policy: %+v, want denied naming the problem", d)
	}
}

type mapHeaders map[string][]string

func (m mapHeaders) Values(n string) []string { return m[n] }

func TestWhy(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{Server: "Server/default/api", DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/public", Unauthenticated: true, Paths: []string{"/public/*"}},
	}})
	tests := []struct {
		d    Decision
		want string
	}{
		{p.Request("", get("/public/a")), "rule 0 of default/public allows GET /public/a from an unauthenticated client"},
		{p.Request(web, get("/admin")), "no rule allows GET /admin from " + web + "; Server/default/api denies it"},
		{p.Connection(web, false), "no rule without HTTP conditions allows a connection from " + web + "; Server/default/api denies it"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.d.Why(); got != tt.want {
				t.Errorf("Why() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestDoesNotAllocate(t *testing.T) {
	p := compile(t, &meshv1.InboundPolicy{Server: "Server/default/api", DefaultPolicy: meshv1.InboundPolicy_DENY, Rules: []*meshv1.AuthzRule{
		{Name: "default/public", Identities: []string{web}, Paths: []string{"/public/*"}, Methods: []string{"GET"}},
	}})
	req := &Request{Method: "GET", Path: "/public/a"}
	got := testing.AllocsPerRun(100, func() {
		if !p.Request(web, req).Allowed {
			t.Fatal("denied")
		}
	})
	if got != 0 {
		t.Errorf("allocations = %v, want 0", got)
	}
}
