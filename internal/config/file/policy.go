package file

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/policy"
	"weft.dev/weft/internal/control/split"
	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/pathnorm"
)

// This file decodes the authorization kinds of policy.weft.dev/v1alpha1:
// Server, AuthorizationPolicy and InboundPolicyDefault (see package
// control/policy for their meaning).

func policyKinds() []kind {
	return []kind{
		{apiVersion: policy.APIVersion, kind: policy.KindServer, decode: decodeServer},
		{apiVersion: policy.APIVersion, kind: policy.KindAuthorizationPolicy, decode: decodeAuthorizationPolicy},
		{apiVersion: policy.APIVersion, kind: policy.KindInboundPolicyDefault, decode: decodeInboundPolicyDefault},
	}
}

type serverSpec struct {
	PodSelector      *serverSelector `json:"podSelector"`
	WorkloadSelector *serverSelector `json:"workloadSelector"`
	// Port is a number or a name.
	Port          json.RawMessage `json:"port"`
	ProxyProtocol string          `json:"proxyProtocol"`
	AccessPolicy  string          `json:"accessPolicy"`
	TLSMode       string          `json:"tlsMode"`
}

type serverSelector struct {
	Service     string            `json:"service"`
	MatchLabels map[string]string `json:"matchLabels"`
}

type authzSpec struct {
	TargetRef *authzTarget `json:"targetRef"`
	Rules     []authzRule  `json:"rules"`
}

type authzTarget struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

type authzRule struct {
	From *authzFrom `json:"from"`
	To   *authzTo   `json:"to"`
}

type authzFrom struct {
	Identities      []string  `json:"identities"`
	ServiceAccounts []authzSA `json:"serviceAccounts"`
	Namespaces      []string  `json:"namespaces"`
	Unauthenticated bool      `json:"unauthenticated"`
}

type authzSA struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type authzTo struct {
	Paths   []string      `json:"paths"`
	Methods []string      `json:"methods"`
	Hosts   []string      `json:"hosts"`
	Headers []authzHeader `json:"headers"`
}

type authzHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Regex bool   `json:"regex"`
}

type defaultSpec struct {
	Policy   string `json:"policy"`
	TLSMode  string `json:"tlsMode"`
	Workload string `json:"workload"`
	MeshWide bool   `json:"meshWide"`
}

// errorList collects field errors.
type errorList []error

func (l *errorList) add(field, format string, args ...any) {
	*l = append(*l, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func policyNamespace(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	if ns == "" {
		ns = config.DefaultNamespace
	}
	return ns
}

var portName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// parseProxyProtocol accepts Linkerd's names (HTTP/1, HTTP/2, gRPC,
// opaque, unknown) and Weft's.
func parseProxyProtocol(s string) (config.Protocol, error) {
	switch s {
	case "HTTP/1":
		return config.ProtocolHTTP1, nil
	case "HTTP/2":
		return config.ProtocolHTTP2, nil
	case "gRPC":
		return config.ProtocolGRPC, nil
	case "unknown":
		return config.ProtocolDetect, nil
	}
	p, err := config.ParseProtocol(s)
	if err != nil {
		return "", fmt.Errorf("unknown protocol %q (want HTTP/1, HTTP/2, gRPC, opaque or unknown)", s)
	}
	return p, nil
}

func checkTLSMode(errs *errorList, field, s string) {
	if s != "" && s != policy.TLSPermissive && s != policy.TLSStrict {
		errs.add(field, "%q is not a TLS mode (want permissive or strict)", s)
	}
}

func decodeServer(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, decErrs := decodeSpec[serverSpec](obj, raw)
	if decErrs != nil {
		return nil, decErrs
	}
	var errs errorList
	s := &policy.Server{AccessPolicy: spec.AccessPolicy, TLSMode: spec.TLSMode}
	sel, field := spec.PodSelector, "spec.podSelector"
	switch {
	case spec.PodSelector != nil && spec.WorkloadSelector != nil:
		errs.add("spec.workloadSelector", "give podSelector or workloadSelector, not both")
	case spec.WorkloadSelector != nil:
		sel, field = spec.WorkloadSelector, "spec.workloadSelector"
	}
	if sel == nil || sel.Service == "" && len(sel.MatchLabels) == 0 {
		errs.add("spec.podSelector", "required: select the workload, e.g. podSelector: {service: api} or podSelector: {matchLabels: {app: api}}")
	} else {
		s.Service, s.MatchLabels = sel.Service, sel.MatchLabels
		if sel.Service != "" {
			if msg := split.CheckServiceName(sel.Service); msg != "" {
				errs.add(field+".service", "%s", msg)
			}
		}
		for _, k := range sortedUnique(keysOf(sel.MatchLabels)) {
			if k == "" || sel.MatchLabels[k] == "" {
				errs.add(field+".matchLabels", "labels need a non-empty name and value")
			}
		}
	}
	if p := strings.TrimSpace(string(spec.Port)); p != "" && p != "null" {
		var name string
		if err := json.Unmarshal(spec.Port, &name); err == nil {
			switch {
			case portName.MatchString(name) && len(name) <= 15 && strings.ContainsAny(name, "abcdefghijklmnopqrstuvwxyz"):
				s.PortName = name
			default:
				errs.add("spec.port", "%q is neither a port number nor a port name (lowercase letters, digits and '-', at most 15)", name)
			}
		} else if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
			s.Port = uint32(n)
		} else {
			errs.add("spec.port", "%s is not a port: give a number from 1 to 65535 or a port name", p)
		}
	}
	if spec.ProxyProtocol != "" {
		p, err := parseProxyProtocol(spec.ProxyProtocol)
		if err != nil {
			errs.add("spec.proxyProtocol", "%v", err)
		}
		s.Protocol = p
	}
	if s.AccessPolicy == "" {
		s.AccessPolicy = authz.Deny
	} else if _, err := authz.ParseDefault(s.AccessPolicy); err != nil {
		errs.add("spec.accessPolicy", "%v", err)
	}
	checkTLSMode(&errs, "spec.tlsMode", s.TLSMode)
	if errs != nil {
		return nil, errs
	}
	return s, nil
}

// methodToken is an upper-case method; header names use gateway.go's
// headerName.
var methodToken = regexp.MustCompile(`^[A-Z]+$`)

func decodeAuthorizationPolicy(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, decErrs := decodeSpec[authzSpec](obj, raw)
	if decErrs != nil {
		return nil, decErrs
	}
	ns := policyNamespace(obj)
	var errs errorList
	ap := &policy.AuthorizationPolicy{}
	if t := spec.TargetRef; t == nil || t.Kind == "" || t.Name == "" {
		errs.add("spec.targetRef", "required: the kind (Server, Service or Namespace) and name of what the policy opens, e.g. {kind: Server, name: api-http}")
	} else {
		ap.TargetKind, ap.TargetName = t.Kind, t.Name
		switch t.Kind {
		case policy.KindServer:
			if t.Group != "" && t.Group != policy.Group {
				errs.add("spec.targetRef.group", "a Server is in group %s, not %q", policy.Group, t.Group)
			}
		case "Service", "Namespace":
			if t.Group != "" && t.Group != "core" {
				errs.add("spec.targetRef.group", "a %s is in the core group: omit group, not %q", t.Kind, t.Group)
			}
			if t.Kind == "Namespace" && t.Name != ns {
				errs.add("spec.targetRef.name", "a policy can only open its own namespace %q, not %q", ns, t.Name)
			}
		default:
			errs.add("spec.targetRef.kind", "%q cannot be a target (want Server, Service or Namespace)", t.Kind)
		}
	}
	if len(spec.Rules) == 0 {
		errs.add("spec.rules", "at least one rule is required: a policy without rules allows nothing")
	}
	for i, r := range spec.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		var rule policy.Rule
		if r.From != nil {
			rule.From = decodeFrom(&errs, field+".from", r.From)
		}
		if r.To != nil {
			rule.To = decodeTo(&errs, field+".to", r.To)
		}
		ap.Rules = append(ap.Rules, rule)
	}
	if errs != nil {
		return nil, errs
	}
	return ap, nil
}

func decodeFrom(errs *errorList, field string, f *authzFrom) *policy.From {
	out := &policy.From{Unauthenticated: f.Unauthenticated, Namespaces: f.Namespaces}
	if len(f.Identities) == 0 && len(f.ServiceAccounts) == 0 && len(f.Namespaces) == 0 && !f.Unauthenticated {
		errs.add(field, "empty: give identities, serviceAccounts, namespaces or unauthenticated: true (omit from to allow any client)")
	}
	for j, id := range f.Identities {
		if msg := checkIdentity(id); msg != "" {
			errs.add(fmt.Sprintf("%s.identities[%d]", field, j), "%s", msg)
		}
		out.Identities = append(out.Identities, id)
	}
	for j, sa := range f.ServiceAccounts {
		sf := fmt.Sprintf("%s.serviceAccounts[%d]", field, j)
		switch {
		case sa.Name == "":
			errs.add(sf+".name", "required: the service account's name")
		case len(sa.Name) > 253 || !dnsSubdomain.MatchString(sa.Name):
			errs.add(sf+".name", "%q is not a service account name: use lowercase letters, digits, '-' and '.'", sa.Name)
		}
		if sa.Namespace != "" {
			if msg := split.CheckServiceName(sa.Namespace); msg != "" {
				errs.add(sf+".namespace", "%s", strings.Replace(msg, "service name", "namespace", 1))
			}
		}
		out.ServiceAccounts = append(out.ServiceAccounts, policy.ServiceAccount{Name: sa.Name, Namespace: sa.Namespace})
	}
	for j, n := range f.Namespaces {
		if msg := split.CheckServiceName(n); msg != "" {
			errs.add(fmt.Sprintf("%s.namespaces[%d]", field, j), "%s", strings.Replace(msg, "service name", "namespace", 1))
		}
	}
	return out
}

// checkIdentity returns why id is not a SPIFFE ID a rule can match, or "".
func checkIdentity(id string) string {
	if id == "*" {
		return ""
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return fmt.Sprintf("%q is not a SPIFFE ID: write spiffe://<trust-domain>/ns/<namespace>/sa/<name>, use serviceAccounts, or \"*\" for any authenticated client", id)
	}
	td, path, _ := strings.Cut(rest, "/")
	if td == "" || path == "" || strings.ContainsAny(id, " \t?#%") || strings.HasSuffix(id, "/") || strings.Contains(path, "//") {
		return fmt.Sprintf("%q is not a valid SPIFFE ID (spiffe://<trust-domain>/<path>, no query, fragment, percent-encoding or trailing '/')", id)
	}
	if td != strings.ToLower(td) {
		return fmt.Sprintf("%q: the trust domain must be lower case (identities are compared exactly)", id)
	}
	return ""
}

func decodeTo(errs *errorList, field string, t *authzTo) *policy.To {
	out := &policy.To{Methods: t.Methods, Hosts: t.Hosts}
	if len(t.Paths) == 0 && len(t.Methods) == 0 && len(t.Hosts) == 0 && len(t.Headers) == 0 {
		errs.add(field, "empty: give paths, methods, hosts or headers (omit to to allow every request)")
	}
	for j, p := range t.Paths {
		pf := fmt.Sprintf("%s.paths[%d]", field, j)
		base, prefix := strings.CutSuffix(p, "/*")
		if prefix && base == "" {
			base = "/"
		}
		switch {
		case !strings.HasPrefix(p, "/"):
			errs.add(pf, "%q must start with '/'", p)
		case strings.Contains(base, "*"):
			errs.add(pf, "%q: '*' is only allowed as a final \"/*\" (a prefix)", p)
		case strings.ContainsAny(p, "?#"):
			errs.add(pf, "%q: a path has no query or fragment", p)
		default:
			if n, err := pathnorm.Normalize(base); err != nil {
				errs.add(pf, "%q: %v", p, err)
			} else if n != base {
				want := n
				if prefix {
					want = strings.TrimSuffix(n, "/") + "/*"
				}
				errs.add(pf, "%q is not in normal form, so no request would match it (requests are normalised first): write %q", p, want)
			}
		}
		out.Paths = append(out.Paths, p)
	}
	for j, m := range t.Methods {
		if !methodToken.MatchString(m) {
			errs.add(fmt.Sprintf("%s.methods[%d]", field, j), "%q is not a method: methods are upper case, e.g. GET (they are compared exactly)", m)
		}
	}
	for j, h := range t.Hosts {
		if h == "" || strings.ContainsAny(h, "/ *") {
			errs.add(fmt.Sprintf("%s.hosts[%d]", field, j), "%q is not a host name", h)
		}
	}
	for j, h := range t.Headers {
		hf := fmt.Sprintf("%s.headers[%d]", field, j)
		if !headerName.MatchString(h.Name) {
			errs.add(hf+".name", "%q is not a header name", h.Name)
		}
		if h.Regex {
			if _, err := regexp.Compile(h.Value); err != nil {
				errs.add(hf+".value", "invalid regular expression: %v", err)
			}
		}
		out.Headers = append(out.Headers, policy.Header{Name: h.Name, Value: h.Value, Regex: h.Regex})
	}
	return out
}

func decodeInboundPolicyDefault(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, decErrs := decodeSpec[defaultSpec](obj, raw)
	if decErrs != nil {
		return nil, decErrs
	}
	var errs errorList
	d := &policy.InboundPolicyDefault{Policy: spec.Policy, TLSMode: spec.TLSMode, Workload: spec.Workload, MeshWide: spec.MeshWide}
	if d.Policy == "" && d.TLSMode == "" {
		errs.add("spec.policy", "required: all-unauthenticated, all-authenticated, deny or audit")
	} else if d.Policy != "" {
		if _, err := authz.ParseDefault(d.Policy); err != nil {
			errs.add("spec.policy", "%v", err)
		}
	}
	checkTLSMode(&errs, "spec.tlsMode", d.TLSMode)
	if d.Workload != "" {
		if msg := split.CheckServiceName(d.Workload); msg != "" {
			errs.add("spec.workload", "%s", msg)
		}
		if d.MeshWide {
			errs.add("spec.meshWide", "a mesh-wide default names no workload: remove spec.workload or spec.meshWide")
		}
	}
	if errs != nil {
		return nil, errs
	}
	return d, nil
}

// MeshDefaultName is the name of the InboundPolicyDefault a Mesh document's
// spec.defaultInboundPolicy becomes.
const MeshDefaultName = "mesh-default"

// meshDefaultResource turns a Mesh's spec.defaultInboundPolicy into a
// mesh-wide InboundPolicyDefault, applied with the file's other documents.
func meshDefaultResource(m *Mesh) (config.Resource, bool) {
	if m.DefaultInboundPolicy == "" {
		return config.Resource{}, false
	}
	d := &policy.InboundPolicyDefault{Policy: m.DefaultInboundPolicy, MeshWide: true}
	raw, _ := json.Marshal(map[string]any{
		"apiVersion": policy.APIVersion, "kind": policy.KindInboundPolicyDefault,
		"metadata": map[string]any{"name": MeshDefaultName, "namespace": config.DefaultNamespace},
		"spec":     map[string]any{"policy": d.Policy, "meshWide": true},
	})
	return config.Resource{APIVersion: policy.APIVersion, Kind: policy.KindInboundPolicyDefault, Name: MeshDefaultName,
		Namespace: config.DefaultNamespace, Spec: d, Raw: raw}, true
}
