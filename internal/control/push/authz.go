package push

import (
	"slices"
	"strings"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/policy"
	"weft.dev/weft/internal/proxy/authz"
)

// This file compiles the authorization documents (package control/policy)
// into the meshv1.InboundPolicy of each port of a workload.
//
// Precedence of the default (what no rule allows), lowest first: the
// controller's --default-inbound-policy, a mesh-wide InboundPolicyDefault,
// the namespace's, the workload's; once a Server selects the port, its
// accessPolicy (deny unless set) replaces them all. The TLS mode follows
// the same chain (permissive unless set). When several Servers select one
// port, the first by name decides, as a stable choice; `weft authz check`
// names it.

// MeshDefault is the source name of the controller's own default.
const MeshDefault = "mesh"

// PortPolicy compiles the policy of application port port of proxy p.
// meshDefault is the controller's default. The returned protocol is the
// one a Server declares for the port (zero when none does).
func PortPolicy(snap *config.Snapshot, p *config.Proxy, port uint32, meshDefault meshv1.InboundPolicy_Default) (*meshv1.InboundPolicy, config.Protocol) {
	pol := &meshv1.InboundPolicy{DefaultPolicy: meshDefault, DefaultSource: MeshDefault, TrustDomain: snap.TrustDomain}
	// Defaults: mesh-wide, then namespace, then workload.
	var meshR, nsR, wlR *config.Resource
	for i := range snap.Resources {
		r := &snap.Resources[i]
		d, ok := r.Spec.(*policy.InboundPolicyDefault)
		switch {
		case !ok:
		case d.MeshWide:
			meshR = r
		case r.Namespace != p.Namespace:
		case d.Workload == "":
			nsR = r
		case d.Workload == p.Service:
			wlR = r
		}
	}
	for _, r := range []*config.Resource{meshR, nsR, wlR} {
		if r == nil {
			continue
		}
		d := r.Spec.(*policy.InboundPolicyDefault)
		if d.Policy != "" {
			if v, err := authz.ParseDefault(d.Policy); err == nil {
				pol.DefaultPolicy, pol.DefaultSource = v, r.ID()
			}
		}
		if d.TLSMode != "" {
			pol.TlsMode = tlsMode(d.TLSMode)
		}
	}
	// The Server selecting the port, if any.
	var server *config.Resource
	for i := range snap.Resources {
		r := &snap.Resources[i]
		s, ok := r.Spec.(*policy.Server)
		if ok && r.Namespace == p.Namespace && s.SelectsWorkload(r.Namespace, p) && s.SelectsPort(port) &&
			(server == nil || r.Name < server.Name) {
			server = r
		}
	}
	var protocol config.Protocol
	if server != nil {
		s := server.Spec.(*policy.Server)
		pol.Server = server.ID()
		pol.DefaultSource = server.ID()
		pol.DefaultPolicy = meshv1.InboundPolicy_DENY
		if v, err := authz.ParseDefault(s.AccessPolicy); err == nil {
			pol.DefaultPolicy = v
		}
		if s.TLSMode != "" {
			pol.TlsMode = tlsMode(s.TLSMode)
		}
		protocol = s.Protocol
	}
	// Rules of the policies targeting the Server, the workload's
	// service, or the namespace.
	for i := range snap.Resources {
		r := &snap.Resources[i]
		ap, ok := r.Spec.(*policy.AuthorizationPolicy)
		if !ok || r.Namespace != p.Namespace {
			continue
		}
		switch {
		case ap.TargetKind == policy.KindServer && server != nil && ap.TargetName == server.Name:
		case ap.TargetKind == "Service" && ap.TargetName == p.Service:
		case ap.TargetKind == "Namespace" && ap.TargetName == p.Namespace:
		default:
			continue
		}
		for _, rule := range ap.Rules {
			pol.Rules = append(pol.Rules, compileAuthzRule(snap.TrustDomain, r.Namespace+"/"+r.Name, r.Namespace, rule))
		}
	}
	if r := probeRule(p, port); r != nil {
		pol.Rules = append(pol.Rules, r)
	}
	return pol, protocol
}

// ProbeRuleName names the rule that lets the kubelet's probes in, in 403s
// and `weft authz check`.
const ProbeRuleName = "kubelet-probes"

// probeRule allows the workload's own probe requests on port from any
// client: the kubelet has no mesh identity, and a pod whose probes fail is
// never ready. Only the probed paths and methods are allowed.
func probeRule(p *config.Proxy, port uint32) *meshv1.AuthzRule {
	var r *meshv1.AuthzRule
	for _, ip := range p.Ports {
		if ip.Port != port {
			continue
		}
		for _, pr := range ip.Probes {
			if r == nil {
				r = &meshv1.AuthzRule{Name: ProbeRuleName, Identities: []string{"*"}, Unauthenticated: true}
			}
			path, methods := pr.Path, []string{"GET", "HEAD"}
			if pr.GRPC {
				path, methods = "/grpc.health.v1.Health/Check", []string{"POST"}
			}
			if !slices.Contains(r.Paths, path) {
				r.Paths = append(r.Paths, path)
			}
			for _, m := range methods {
				if !slices.Contains(r.Methods, m) {
					r.Methods = append(r.Methods, m)
				}
			}
		}
	}
	return r
}

func tlsMode(s string) meshv1.InboundPolicy_TLSMode {
	if s == policy.TLSStrict {
		return meshv1.InboundPolicy_STRICT
	}
	return meshv1.InboundPolicy_PERMISSIVE
}

// compileAuthzRule turns one rule of policy name (in namespace ns) into its
// API form; service accounts become SPIFFE IDs of the trust domain.
func compileAuthzRule(td, name, ns string, r policy.Rule) *meshv1.AuthzRule {
	out := &meshv1.AuthzRule{Name: name}
	if r.From == nil {
		out.Identities = []string{"*"}
		out.Unauthenticated = true
	} else {
		out.Identities = slices.Clone(r.From.Identities)
		for _, sa := range r.From.ServiceAccounts {
			sns := sa.Namespace
			if sns == "" {
				sns = ns
			}
			out.Identities = append(out.Identities, config.SpiffeID(td, sns, sa.Name))
		}
		out.Namespaces = slices.Clone(r.From.Namespaces)
		out.Unauthenticated = r.From.Unauthenticated
	}
	if r.To != nil {
		out.Paths = slices.Clone(r.To.Paths)
		out.Methods = slices.Clone(r.To.Methods)
		for _, h := range r.To.Hosts {
			out.Hosts = append(out.Hosts, strings.ToLower(h))
		}
		for _, h := range r.To.Headers {
			out.Headers = append(out.Headers, &meshv1.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex})
		}
	}
	return out
}

// applyAuthz fills the policy of every port of m, the inbound snapshot of
// proxy p, and the protocol a Server declares.
func applyAuthz(snap *config.Snapshot, p *config.Proxy, m *meshv1.InboundSnapshot, meshDefault meshv1.InboundPolicy_Default) {
	for _, port := range m.Ports {
		pol, proto := PortPolicy(snap, p, port.GetPort(), meshDefault)
		port.Policy = pol
		if proto != config.ProtocolDetect {
			port.Protocol = Protocol(proto)
		}
	}
}

// InboundFor computes the inbound snapshot of a workload of service key
// with this server's default policy, for `weft authz check`: the first
// proxy (by ID) of the service, else a workload with one port 0 so that
// the policy can still be evaluated from the documents.
func (s *Server) InboundFor(snap *config.Snapshot, key config.ServiceKey) *meshv1.InboundSnapshot {
	m := InboundWithDefault(snap, &meshv1.ProxyInfo{Workload: key.Name(), Namespace: key.Namespace()}, s.defaultPolicy)
	if m.GetKnown() {
		return m
	}
	p := &config.Proxy{Service: key.Name(), Namespace: key.Namespace(), Ports: []config.InboundPort{{}}}
	m = &meshv1.InboundSnapshot{Version: snap.Version, Service: string(key), Ports: []*meshv1.InboundPort{{}}}
	applyAuthz(snap, p, m, s.defaultPolicy)
	return m
}
