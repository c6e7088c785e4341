// Package policy holds the authorization kinds of group policy.weft.dev
// (v1alpha1) as decoded, validated Go values: Server (a workload's port
// and protocol), AuthorizationPolicy (allow rules by client identity,
// namespace, and for HTTP by path, method, host and headers) and
// InboundPolicyDefault (the default inbound policy of the mesh, a
// namespace or a workload). It also says which workloads and ports a
// document selects, the part of the semantics the memory store (to check
// references) and the push compiler (to build each port's
// meshv1.InboundPolicy) share.
//
// config/file decodes the kinds, config/memory checks them against the
// mesh, control/push compiles them; the proxy never imports policy. Values
// are immutable once decoded; functions are pure and safe for concurrent
// use.
package policy

import (
	"weft.dev/weft/internal/config"
)

// The group and kinds.
const (
	Group      = "policy.weft.dev"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version

	KindServer               = "Server"
	KindAuthorizationPolicy  = "AuthorizationPolicy"
	KindInboundPolicyDefault = "InboundPolicyDefault"
)

// TLS modes of a port.
const (
	TLSPermissive = "permissive"
	TLSStrict     = "strict"
)

// Server selects ports of workloads. Once a Server selects a port, only
// AuthorizationPolicy rules targeting it allow traffic there; what no rule
// allows is decided by AccessPolicy (deny unless set).
type Server struct {
	// Service selects the workloads serving this service, in the
	// Server's namespace (spec.podSelector.service or
	// spec.workloadSelector.service).
	Service string
	// MatchLabels selects workloads by labels (spec.podSelector.
	// matchLabels). In local mode a workload has the labels app and
	// service (its service name) and version (when it has one).
	MatchLabels map[string]string
	// Port is the application port; 0 with PortName "" means every port
	// of the selected workloads.
	Port uint32
	// PortName is a named port (Kubernetes container ports); local-mode
	// workloads have no named ports.
	PortName string
	// Protocol declared for the port (spec.proxyProtocol); zero means
	// detect.
	Protocol config.Protocol
	// AccessPolicy decides what no rule allows: deny (the default),
	// audit, all-authenticated or all-unauthenticated.
	AccessPolicy string
	// TLSMode is permissive, strict, or "" to inherit the default.
	TLSMode string
}

// AuthorizationPolicy allows clients to reach the ports of its target.
type AuthorizationPolicy struct {
	// TargetKind is Server, Service or Namespace.
	TargetKind string
	// TargetName names the Server or Service in the policy's namespace,
	// or the namespace itself.
	TargetName string
	Rules      []Rule
}

// Rule allows what matches both From and To.
type Rule struct {
	// From: nil means any client, authenticated or not.
	From *From
	// To: nil means any request and any opaque connection.
	To *To
}

// From matches a client when any of its conditions holds.
type From struct {
	// Identities are exact SPIFFE IDs; "*" is any authenticated client.
	Identities []string
	// ServiceAccounts become SPIFFE IDs of the mesh's trust domain; an
	// empty namespace is the policy's.
	ServiceAccounts []ServiceAccount
	// Namespaces match authenticated clients of those namespaces.
	Namespaces []string
	// Unauthenticated matches clients without identity.
	Unauthenticated bool
}

// ServiceAccount names a workload identity.
type ServiceAccount struct {
	Name      string
	Namespace string
}

// To matches an HTTP request when every set condition holds. A rule with
// a To never allows an opaque TCP connection.
type To struct {
	// Paths are exact ("/exact") or prefixes ("/api/*"), compared with
	// the normalised request path, case-sensitively.
	Paths []string
	// Methods, upper case.
	Methods []string
	// Hosts are compared case-insensitively without port or trailing dot.
	Hosts []string
	// Headers must all match, on every value of the header.
	Headers []Header
}

// Header is a header condition.
type Header struct {
	Name  string
	Value string
	// Regex: Value is an RE2 expression matched against the whole value.
	Regex bool
}

// InboundPolicyDefault sets the default inbound policy (and TLS mode) of
// a namespace, of one workload in it, or of the whole mesh.
type InboundPolicyDefault struct {
	// Policy is all-unauthenticated, all-authenticated, deny or audit.
	Policy string
	// TLSMode is permissive, strict, or "" to inherit.
	TLSMode string
	// Workload, if set, limits the default to the workloads of this
	// service in the document's namespace.
	Workload string
	// MeshWide applies the default to every namespace (below namespace
	// and workload defaults). Workload must be empty.
	MeshWide bool
}

// Labels returns the labels a local-mode workload has.
func Labels(p *config.Proxy) map[string]string {
	l := map[string]string{"app": p.Service, "service": p.Service}
	if p.Version != "" {
		l["version"] = p.Version
	}
	return l
}

// SelectsWorkload reports whether s (applied in namespace ns) selects the
// workload of proxy p.
func (s *Server) SelectsWorkload(ns string, p *config.Proxy) bool {
	if p.Namespace != ns {
		return false
	}
	if s.Service != "" && p.Service != s.Service {
		return false
	}
	if len(s.MatchLabels) > 0 {
		l := Labels(p)
		for k, v := range s.MatchLabels {
			if l[k] != v {
				return false
			}
		}
	}
	return s.Service != "" || len(s.MatchLabels) > 0
}

// SelectsPort reports whether s selects the application port of a
// selected workload.
func (s *Server) SelectsPort(port uint32) bool {
	if s.PortName != "" {
		return false // local-mode ports have no names
	}
	return s.Port == 0 || s.Port == port
}
