package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/pathnorm"
)

// This file serves POST /api/v1/authz/check: would the live policy allow
// a client to reach a service (a connection, or one HTTP request)? It
// compiles the port's policy exactly as proxies receive it and evaluates
// it with the proxy's own evaluator (package authz), after the same path
// normalisation.

// Policies computes the inbound configuration of a service with the
// controller's default policy (push.Server implements it). When Config.Sent
// implements Policies it is used; otherwise the default is
// all-unauthenticated.
type Policies interface {
	InboundFor(snap *config.Snapshot, key config.ServiceKey) *meshv1.InboundSnapshot
}

// AuthzCheckRequest is the body of POST /api/v1/authz/check.
type AuthzCheckRequest struct {
	// From is the client: a SPIFFE ID, "sa/NAME" (in the target's
	// namespace), "ns/NS/sa/NAME", a service name (the identity of its
	// workloads) or "unauthenticated".
	From string `json:"from"`
	// To is the service, "api" or "api.shop".
	To string `json:"to"`
	// Port of the workload; 0 means its first port.
	Port uint32 `json:"port,omitempty"`
	// Method and Path describe an HTTP request; both empty checks an
	// opaque TCP connection.
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Host of the request; Headers its header values.
	Host    string              `json:"host,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
}

// AuthzCheckResponse answers it.
type AuthzCheckResponse struct {
	Allowed bool `json:"allowed"`
	// Audit: allowed only because the policy audits.
	Audit bool `json:"audit,omitempty"`
	// DecidedBy is the AuthorizationPolicy, Server or default policy.
	DecidedBy string `json:"decided_by"`
	// Rule is the index of the matching rule in DecidedBy, -1 for a
	// default.
	Rule int    `json:"rule"`
	Why  string `json:"why"`
	// Reason is what a denied client reads in Weft-Proxy-Error.
	Reason string `json:"reason,omitempty"`
	// Identity is the client identity evaluated, "" when unauthenticated.
	Identity string `json:"identity"`
	Service  string `json:"service"`
	Port     uint32 `json:"port"`
	// Server selecting the port, if any; DefaultPolicy and DefaultSource
	// describe what applies when no rule allows.
	Server        string `json:"server,omitempty"`
	DefaultPolicy string `json:"default_policy"`
	DefaultSource string `json:"default_source,omitempty"`
	TLSMode       string `json:"tls_mode"`
	// Path is the normalised path the policy judged.
	Path string `json:"path,omitempty"`
}

type headerMap map[string][]string

func (h headerMap) Values(name string) []string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func (h *Handler) authzCheck(w http.ResponseWriter, r *http.Request) {
	var req AuthzCheckRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid check request: %v", err), nil)
		return
	}
	snap := h.src.Snapshot()
	if req.To == "" {
		writeError(w, http.StatusBadRequest, "to is required: name the service, e.g. \"api\"", nil)
		return
	}
	key := config.ParseAuthority(req.To, config.DefaultNamespace)
	if _, ok := snap.Services[key]; !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("service %s not found (services: %s)", key, serviceNames(snap)), nil)
		return
	}
	peer, err := resolveFrom(snap, req.From, key.Namespace())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if (req.Method == "") != (req.Path == "") {
		writeError(w, http.StatusBadRequest, "give both a method and a path (an HTTP request), or neither (a TCP connection)", nil)
		return
	}
	var in *meshv1.InboundSnapshot
	if p, ok := h.sent.(Policies); ok {
		in = p.InboundFor(snap, key)
	} else {
		in = push.InboundWithDefault(snap, &meshv1.ProxyInfo{Workload: key.Name(), Namespace: key.Namespace()}, meshv1.InboundPolicy_ALL_UNAUTHENTICATED)
	}
	var port *meshv1.InboundPort
	for _, p := range in.GetPorts() {
		if req.Port == 0 || p.GetPort() == req.Port {
			port = p
			break
		}
	}
	if port == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("service %s has no port %d", key, req.Port), nil)
		return
	}
	pol, err := authz.Compile(port.GetPolicy(), nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("the policy of %s port %d does not compile: %v", key, port.GetPort(), err), nil)
		return
	}
	def, source := pol.DefaultPolicy()
	resp := AuthzCheckResponse{Identity: peer, Service: string(key), Port: port.GetPort(), Server: pol.Server(),
		DefaultPolicy: def, DefaultSource: source, TLSMode: "permissive"}
	if pol.Strict() {
		resp.TLSMode = "strict"
	}
	var d authz.Decision
	if req.Method == "" {
		d = pol.Connection(peer, false)
	} else {
		path, err := pathnorm.Normalize(req.Path)
		if err != nil {
			resp.Why = err.Error()
			resp.Reason = err.Error()
			resp.DecidedBy = "path normalisation"
			resp.Rule = -1
			writeJSON(w, http.StatusOK, resp)
			return
		}
		resp.Path = path
		if pol.Strict() && peer == "" {
			d = pol.Connection(peer, true)
		} else {
			d = pol.Request(peer, &authz.Request{Method: req.Method, Path: path, Host: req.Host, Header: headerMap(req.Headers)})
		}
	}
	resp.Allowed, resp.Audit, resp.DecidedBy, resp.Rule, resp.Why = d.Allowed, d.Audit, d.By, d.Rule, d.Why()
	if !d.Allowed {
		resp.Reason = d.Reason()
	}
	writeJSON(w, http.StatusOK, resp)
}

// resolveFrom turns the --from of `weft authz check` into an identity.
func resolveFrom(snap *config.Snapshot, from, ns string) (string, error) {
	td := snap.TrustDomain
	switch {
	case from == "":
		return "", fmt.Errorf("from is required: a SPIFFE ID, sa/NAME, ns/NS/sa/NAME, a service name or unauthenticated")
	case from == "unauthenticated":
		return "", nil
	case strings.HasPrefix(from, "spiffe://"):
		return from, nil
	case strings.HasPrefix(from, "sa/"):
		name := strings.TrimPrefix(from, "sa/")
		if name == "" || strings.Contains(name, "/") {
			return "", fmt.Errorf("from %q: write sa/NAME", from)
		}
		return config.SpiffeID(td, ns, name), nil
	case strings.HasPrefix(from, "ns/"):
		parts := strings.Split(from, "/")
		if len(parts) != 4 || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
			return "", fmt.Errorf("from %q: write ns/NAMESPACE/sa/NAME", from)
		}
		return config.SpiffeID(td, parts[1], parts[3]), nil
	}
	key := config.ParseAuthority(from, ns)
	svc, ok := snap.Services[key]
	if !ok {
		return "", fmt.Errorf("from %q is neither a SPIFFE ID, sa/NAME, ns/NS/sa/NAME, unauthenticated, nor a service of the mesh (services: %s)", from, serviceNames(snap))
	}
	for _, ep := range svc.Endpoints {
		if ep.Identity != "" {
			return ep.Identity, nil
		}
	}
	return config.SpiffeID(td, svc.Namespace, svc.Name), nil
}

func serviceNames(snap *config.Snapshot) string {
	var names []string
	for k := range snap.Services {
		names = append(names, string(k))
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
