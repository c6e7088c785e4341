package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/control/viz"
)

// RoutesResponse is the body of GET /api/v1/routes?service=NAME[.NS]: the
// service's route rules as its clients' proxies run them (in precedence
// order), its own backends, and its service-level statistics. Proxies do
// not count traffic per route, so Stat covers the whole service.
type RoutesResponse struct {
	// Service is the canonical name, "books.default".
	Service string `json:"service"`
	// Backends are the service's own (itself, or its TrafficSplit's);
	// rules without backends send their traffic there.
	Backends []RouteBackend `json:"backends"`
	Rules    []RouteRule    `json:"rules"`
	// Stat is the service's golden metrics over the window; nil when the
	// controller has no statistics.
	Stat   *viz.ServiceStat `json:"stat,omitempty"`
	Window string           `json:"window,omitempty"`
}

// RouteRule is one compiled rule: one match of a route's rule.
type RouteRule struct {
	// Route is "HTTPRoute/default/books-canary"; Rule its rule index.
	Route string `json:"route"`
	Rule  uint32 `json:"rule"`
	// Match describes the match: "path prefix /api, header X-Canary=true"
	// or "*" for every request.
	Match string `json:"match"`
	// Backends of the rule; empty means the service's own.
	Backends []RouteBackend `json:"backends"`
	// Filters describe the rule's filters in order.
	Filters []string `json:"filters"`
	// RequestTimeout is "" when none.
	RequestTimeout string `json:"request_timeout,omitempty"`
}

// RouteBackend is a weighted backend and its ready endpoints.
type RouteBackend struct {
	Service   string `json:"service"`
	Weight    uint32 `json:"weight"`
	Endpoints int    `json:"endpoints"`
}

func (h *Handler) routes(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("service")
	if name == "" {
		writeError(w, http.StatusBadRequest, "service is required: GET /api/v1/routes?service=NAME or NAME.NAMESPACE", nil)
		return
	}
	window, ok := parseWindow(w, r)
	if !ok {
		return
	}
	snap := h.src.Snapshot()
	key := config.ParseAuthority(name, config.DefaultNamespace)
	if _, ok := snap.Services[key]; !ok {
		var names []string
		for k := range snap.Services {
			names = append(names, string(k))
		}
		sort.Strings(names)
		writeError(w, http.StatusNotFound, fmt.Sprintf("no service %s in the mesh (services: %s)", key, strings.Join(names, ", ")), nil)
		return
	}
	d := push.Destination(snap, key, name)
	resp := RoutesResponse{Service: string(key), Backends: routeBackends(d.GetBackends()), Rules: []RouteRule{}}
	for _, rr := range d.GetRoutes() {
		out := RouteRule{Route: rr.GetRoute(), Rule: rr.GetRule(), Backends: routeBackends(rr.GetBackends()), Filters: []string{}}
		var ms []string
		for _, m := range rr.GetMatches() {
			ms = append(ms, describeMatch(m))
		}
		out.Match = strings.Join(ms, " | ")
		if out.Match == "" {
			out.Match = "*"
		}
		for _, f := range rr.GetFilters() {
			out.Filters = append(out.Filters, describeFilter(f))
		}
		if ms := rr.GetRequestTimeoutMs(); ms > 0 {
			out.RequestTimeout = (time.Duration(ms) * time.Millisecond).String()
		}
		resp.Rules = append(resp.Rules, out)
	}
	if h.stats != nil {
		resp.Window = window.String()
		for _, s := range h.stats.Stat(window) {
			if config.Key(s.Name, s.Namespace) == key {
				resp.Stat = &s
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func routeBackends(bs []*meshv1.Backend) []RouteBackend {
	out := []RouteBackend{}
	for _, b := range bs {
		out = append(out, RouteBackend{Service: b.GetService(), Weight: b.GetWeight(), Endpoints: len(b.GetEndpoints())})
	}
	return out
}

func describeMatch(m *meshv1.RouteMatch) string {
	var parts []string
	if p := m.GetPath(); p != nil {
		kind := map[meshv1.PathMatch_Type]string{meshv1.PathMatch_EXACT: "exact", meshv1.PathMatch_PREFIX: "prefix", meshv1.PathMatch_REGEX: "regex"}[p.GetType()]
		parts = append(parts, "path "+kind+" "+p.GetValue())
	}
	for _, hm := range m.GetHeaders() {
		op := "="
		if hm.GetRegex() {
			op = "~"
		}
		parts = append(parts, "header "+hm.GetName()+op+hm.GetValue())
	}
	for _, q := range m.GetQuery() {
		op := "="
		if q.GetRegex() {
			op = "~"
		}
		parts = append(parts, "query "+q.GetName()+op+q.GetValue())
	}
	if m.GetMethod() != "" {
		parts = append(parts, "method "+m.GetMethod())
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, ", ")
}

func describeFilter(f *meshv1.RouteFilter) string {
	headers := func(h *meshv1.HeaderModifier) string {
		var s []string
		for _, x := range h.GetSet() {
			s = append(s, "set "+x.GetName())
		}
		for _, x := range h.GetAdd() {
			s = append(s, "add "+x.GetName())
		}
		for _, x := range h.GetRemove() {
			s = append(s, "remove "+x)
		}
		return strings.Join(s, ", ")
	}
	switch {
	case f.GetRequestHeaderModifier() != nil:
		return "request headers: " + headers(f.GetRequestHeaderModifier())
	case f.GetResponseHeaderModifier() != nil:
		return "response headers: " + headers(f.GetResponseHeaderModifier())
	case f.GetRequestMirror() != nil:
		m := f.GetRequestMirror()
		pct := m.GetPercent()
		if pct == 0 {
			pct = 100
		}
		return fmt.Sprintf("mirror %g%% to %s", pct, m.GetBackend().GetService())
	case f.GetUrlRewrite() != nil:
		u := f.GetUrlRewrite()
		return strings.TrimSpace(fmt.Sprintf("rewrite %s%s%s", opt("host ", u.GetHostname()), opt("path ", u.GetReplaceFullPath()), opt("prefix ", u.GetReplacePrefixMatch())))
	case f.GetRequestRedirect() != nil:
		rd := f.GetRequestRedirect()
		code := rd.GetStatusCode()
		if code == 0 {
			code = http.StatusFound
		}
		return strings.TrimSpace(fmt.Sprintf("redirect %d %s%s%s%s", code, opt("scheme ", rd.GetScheme()), opt("host ", rd.GetHostname()), opt("path ", rd.GetReplaceFullPath()), opt("prefix ", rd.GetReplacePrefixMatch())))
	}
	return "unknown filter"
}

func opt(label, v string) string {
	if v == "" {
		return ""
	}
	return label + v + " "
}
