// Package config is Weft's configuration model: services and their endpoints,
// the proxies of the mesh, and the documents users apply (routes, splits,
// policies). Every configuration source (Kubernetes informers, local-mode
// files, memory for tests) produces the same immutable Snapshot behind the
// Source interface, so the control plane does not know where its
// configuration comes from.
//
// Snapshots are immutable once published: readers may keep and share them
// without locking. Any package may import config; it imports nothing of
// Weft's.
package config

import (
	"fmt"
	"strings"
)

// DefaultNamespace is the namespace of local-mode workloads and of
// documents that name none.
const DefaultNamespace = "default"

// DefaultTrustDomain is the SPIFFE trust domain when none is configured.
const DefaultTrustDomain = "cluster.local"

// Protocol is what a port or service speaks. The zero value means "detect".
type Protocol string

// Protocols a workload may declare.
const (
	ProtocolDetect Protocol = ""
	ProtocolHTTP1  Protocol = "http1"
	ProtocolHTTP2  Protocol = "http2"
	ProtocolGRPC   Protocol = "grpc"
	ProtocolTCP    Protocol = "tcp"
)

// ParseProtocol accepts the names users write in YAML and flags.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "", "detect", "auto":
		return ProtocolDetect, nil
	case "http", "http1", "http/1.1":
		return ProtocolHTTP1, nil
	case "http2", "h2", "h2c":
		return ProtocolHTTP2, nil
	case "grpc":
		return ProtocolGRPC, nil
	case "tcp", "opaque":
		return ProtocolTCP, nil
	}
	return "", fmt.Errorf("unknown protocol %q (want http1, http2, grpc, tcp or detect)", s)
}

// ServiceKey names a service uniquely in the mesh: "name.namespace".
type ServiceKey string

// Key returns the key of service name in namespace ns.
func Key(name, ns string) ServiceKey {
	if ns == "" {
		ns = DefaultNamespace
	}
	return ServiceKey(name + "." + ns)
}

// Name returns the service name part of the key.
func (k ServiceKey) Name() string { n, _, _ := strings.Cut(string(k), "."); return n }

// Namespace returns the namespace part of the key.
func (k ServiceKey) Namespace() string { _, ns, _ := strings.Cut(string(k), "."); return ns }

// ParseAuthority turns what a client asked for ("api", "api:80",
// "api.demo", "api.demo.svc.cluster.local:8080") into a service key;
// a bare name resolves in the caller's namespace callerNS.
func ParseAuthority(authority, callerNS string) ServiceKey {
	host := authority
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	host = strings.TrimSuffix(host, ".svc.cluster.local")
	host = strings.TrimSuffix(host, ".svc")
	name, ns, ok := strings.Cut(host, ".")
	if !ok || ns == "" {
		ns = callerNS
	}
	return Key(name, ns)
}

// Endpoint is one instance of a service.
type Endpoint struct {
	// Address is host:port to connect to: the instance's inbound proxy
	// when Meshed, else the workload itself.
	Address string
	// Identity is the SPIFFE ID the endpoint's proxy presents; empty when
	// the endpoint is not meshed.
	Identity string
	// Meshed endpoints are reached through the proxy-to-proxy transport.
	Meshed bool
	// Weight inside the service; 0 means 1.
	Weight uint32
	// Labels such as "version": "v2".
	Labels map[string]string
	// Ready is false while the instance starts or stops; proxies only
	// receive ready endpoints.
	Ready bool
	// PortName is the name of the service port this endpoint serves (an
	// EndpointSlice port's name); "" when the service has one unnamed
	// port or the source does not know ports (local mode).
	PortName string
}

// ServicePort is one port of a service, as a Kubernetes Service declares
// it.
type ServicePort struct {
	// Name of the port; "" only when the service has a single port.
	Name string
	// Port is the service's port, on its cluster IPs.
	Port uint32
	// TargetPort is the pods' port: a number, or a named container port
	// ("http"); each endpoint's address carries the resolved number.
	TargetPort string
}

// Service is a named set of endpoints, like a Kubernetes Service.
type Service struct {
	Name      string
	Namespace string
	// Protocol declared for the service; zero means detect.
	Protocol Protocol
	// Endpoints in a stable order (by Address).
	Endpoints []Endpoint
	// ClusterIPs are the service's virtual IPs (Kubernetes); none in
	// local mode.
	ClusterIPs []string
	// Ports of the service (Kubernetes); none in local mode, where every
	// endpoint is the service.
	Ports []ServicePort
}

// PortByNumber returns the service port that is port on its cluster IPs.
func (s *Service) PortByNumber(port uint32) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return ServicePort{}, false
}

// Key returns the service's key.
func (s *Service) Key() ServiceKey { return Key(s.Name, s.Namespace) }

// InboundPort is an application port of a workload behind its proxy.
type InboundPort struct {
	Port     uint32
	Protocol Protocol
	// Probes are the requests the kubelet sends to the port to probe the
	// workload (from the pod's probes); every inbound policy allows them,
	// as the kubelet has no mesh identity.
	Probes []Probe
}

// Probe is one kubelet probe request: an HTTP GET of Path, or, when GRPC
// is set, a call of grpc.health.v1.Health/Check.
type Probe struct {
	Path string
	GRPC bool
}

// Proxy is one running weft-proxy known to the control plane.
type Proxy struct {
	// ID is unique per proxy: "web-0" or a pod name.
	ID        string
	Service   string
	Namespace string
	Version   string
	// AdminAddr is host:port of the proxy's admin server (/metrics,
	// /ready, /status); empty when unknown.
	AdminAddr string
	Ports     []InboundPort
}

// Snapshot is the whole configuration at one version. It is immutable:
// sources publish a new Snapshot for every change.
type Snapshot struct {
	// Version increases with every change.
	Version uint64
	// TrustDomain of the mesh's SPIFFE IDs.
	TrustDomain string
	Services    map[ServiceKey]*Service
	Proxies     map[string]*Proxy
	// Resources are the documents users applied, in apply order.
	Resources []Resource
}

// Source publishes configuration snapshots.
//
// Implementations are safe for concurrent use.
type Source interface {
	// Snapshot returns the current snapshot; never nil.
	Snapshot() *Snapshot
	// Changed returns a channel that is closed when a snapshot newer than
	// the current one is published. Callers re-read Snapshot and call
	// Changed again.
	Changed() <-chan struct{}
}

// Resource is one document applied to the mesh (a TrafficSplit, an
// HTTPRoute, a policy). Spec holds the decoded, validated Go value of the
// kind; Raw the document as the user wrote it (JSON).
type Resource struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Spec       any
	Raw        []byte
}

// ID is "Kind/namespace/name", unique among applied resources.
func (r *Resource) ID() string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

// SpiffeID returns the identity of service account sa in namespace ns.
func SpiffeID(trustDomain, ns, sa string) string {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa
}
