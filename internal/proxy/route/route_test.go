package route

import (
	"net/http"
	"net/url"
	"testing"

	meshv1 "weft.dev/weft/api/meshv1"
)

func rule(name string, m *meshv1.RouteMatch, filters ...*meshv1.RouteFilter) *meshv1.RouteRule {
	r := &meshv1.RouteRule{Route: name, Filters: filters}
	if m != nil {
		r.Matches = []*meshv1.RouteMatch{m}
	}
	return r
}

func path(t meshv1.PathMatch_Type, v string) *meshv1.PathMatch {
	return &meshv1.PathMatch{Type: t, Value: v}
}

func newRequest(t testing.TB, method, target string, hdr map[string]string) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

func table(t testing.TB) *Table {
	t.Helper()
	tb, err := Compile([]*meshv1.RouteRule{
		rule("exact", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_EXACT, "/a")}),
		rule("prefix", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_PREFIX, "/p/")}),
		rule("regex", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_REGEX, "/r/[0-9]+")}),
		rule("header", &meshv1.RouteMatch{Headers: []*meshv1.HeaderMatch{{Name: "x-group", Value: "beta"}}}),
		rule("header-regex", &meshv1.RouteMatch{Headers: []*meshv1.HeaderMatch{{Name: "Cookie", Value: "(.*; )?g=b(;.*)?", Regex: true}}}),
		rule("query", &meshv1.RouteMatch{Query: []*meshv1.QueryMatch{{Name: "q", Value: "a b"}}}),
		rule("method", &meshv1.RouteMatch{Method: "PUT"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMatch(t *testing.T) {
	tb := table(t)
	tests := []struct {
		name, method, target string
		hdr                  map[string]string
		want                 string
	}{
		{"exact", "GET", "/a", nil, "exact"},
		{"exact only", "GET", "/a/", nil, ""},
		{"prefix with trailing slash", "GET", "/p", nil, "prefix"},
		{"prefix segment", "GET", "/p/x", nil, "prefix"},
		{"prefix not partial", "GET", "/px", nil, ""},
		{"regex whole", "GET", "/r/12", nil, "regex"},
		{"regex partial", "GET", "/r/12x", nil, ""},
		{"header", "GET", "/z", map[string]string{"X-Group": "beta"}, "header"},
		{"header value", "GET", "/z", map[string]string{"X-Group": "alpha"}, ""},
		{"cookie", "GET", "/z", map[string]string{"Cookie": "a=1; g=b; c=2"}, "header-regex"},
		{"cookie other", "GET", "/z", map[string]string{"Cookie": "g=bb"}, ""},
		{"query escaped", "GET", "/z?x=1&q=a%20b", nil, "query"},
		{"query plus", "GET", "/z?q=a+b", nil, "query"},
		{"query other", "GET", "/z?q=ab", nil, ""},
		{"method", "PUT", "/z", nil, "method"},
		{"first match wins", "PUT", "/a", nil, "exact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if r := tb.MatchHTTP(newRequest(t, tt.method, tt.target, tt.hdr)); r != nil {
				got = r.Name
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	tb := table(t)
	req := newRequest(t, "GET", "/z?x=1", map[string]string{"Cookie": "a=1", "X-Group": "alpha"})
	if n := testing.AllocsPerRun(100, func() { tb.MatchHTTP(req) }); n != 0 {
		t.Errorf("a miss through every rule allocates %v times, want 0", n)
	}
}

func TestCompileRefusesBadRegex(t *testing.T) {
	tb, err := Compile([]*meshv1.RouteRule{
		rule("bad", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_REGEX, "(")}),
		rule("good", nil),
	})
	if err == nil {
		t.Error("no error for a bad regex")
	}
	if len(tb.Rules) != 1 || tb.Rules[0].Name != "good" || tb.Rules[0].Pos != 0 {
		t.Errorf("got %d rules, want only the good one at position 0", len(tb.Rules))
	}
}

func TestRewriteAndRedirect(t *testing.T) {
	prefixRule := func(prefix string, f *meshv1.RouteFilter) *Rule {
		tb, err := Compile([]*meshv1.RouteRule{rule("r", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_PREFIX, prefix)}, f)})
		if err != nil {
			t.Fatal(err)
		}
		return tb.Rules[0]
	}
	rewrite := func(repl string) *meshv1.RouteFilter {
		return &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_UrlRewrite{UrlRewrite: &meshv1.URLRewrite{ReplacePrefixMatch: repl}}}
	}
	tests := []struct {
		name, prefix, repl, path, want string
	}{
		{"replace", "/foo", "/bar", "/foo/x", "/bar/x"},
		{"replace exact", "/foo", "/bar", "/foo", "/bar"},
		{"to root", "/foo", "/", "/foo/x", "/x"},
		{"root of root", "/foo", "/", "/foo", "/"},
		{"trailing slash prefix", "/foo/", "/bar", "/foo/x", "/bar/x"},
		{"repl with slash", "/foo", "/bar/", "/foo/x", "/bar/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := prefixRule(tt.prefix, rewrite(tt.repl)).RewritePath(tt.path)
			if !ok || got != tt.want {
				t.Errorf("got %q %v, want %q", got, ok, tt.want)
			}
		})
	}
	redirect := func(rd *meshv1.RequestRedirect) *Rule {
		return prefixRule("/old", &meshv1.RouteFilter{Kind: &meshv1.RouteFilter_RequestRedirect{RequestRedirect: rd}})
	}
	locs := []struct {
		name string
		rd   *meshv1.RequestRedirect
		host string
		want string
	}{
		{"host only", &meshv1.RequestRedirect{Hostname: "b.test"}, "a.test:8080", "http://b.test:8080/old/x?q=1"},
		{"scheme drops port", &meshv1.RequestRedirect{Scheme: "https"}, "a.test:8080", "https://a.test/old/x?q=1"},
		{"port", &meshv1.RequestRedirect{Port: 9000}, "a.test", "http://a.test:9000/old/x?q=1"},
		{"path", &meshv1.RequestRedirect{ReplacePrefixMatch: "/new"}, "a.test", "http://a.test/new/x?q=1"},
	}
	for _, tt := range locs {
		t.Run(tt.name, func(t *testing.T) {
			if got := redirect(tt.rd).RedirectLocation(tt.host, "/old/x", "q=1"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("/p/x", "q=a%20b&x", "g=b", "PUT", "/p", "q", "(.*; )?g=b")
	f.Add("/", "", "", "GET", "/", "", "")
	f.Fuzz(func(t *testing.T, p, rawQuery, cookie, method, prefix, qname, re string) {
		tb, _ := Compile([]*meshv1.RouteRule{
			rule("a", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_PREFIX, prefix), Method: method,
				Query:   []*meshv1.QueryMatch{{Name: qname, Value: "x"}},
				Headers: []*meshv1.HeaderMatch{{Name: "Cookie", Value: re, Regex: true}}}),
			rule("b", &meshv1.RouteMatch{Path: path(meshv1.PathMatch_REGEX, re)}),
			rule("c", nil),
		})
		req := &http.Request{Method: method, URL: &url.URL{Path: p, RawQuery: rawQuery}, Header: http.Header{"Cookie": {cookie}}}
		r := tb.MatchHTTP(req)
		if r == nil {
			t.Fatal("the catch-all rule did not match")
		}
		if got, ok := r.RewritePath(p); ok && got == "" {
			t.Fatal("empty rewritten path")
		}
	})
}
