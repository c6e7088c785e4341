// Package inject adds Weft's proxy to Kubernetes pods: the logic of the
// controller's mutating admission webhook and of `weft inject`.
//
// Apply decides whether a pod is injected (pod or namespace marked
// weft.dev/inject: enabled, never kube-system, the control plane's own
// namespace or hostNetwork pods, never twice) and returns the injected pod:
// an init container "weft-init" that runs `weft-proxy init` to install the
// iptables redirection, then the proxy "weft-proxy" as a native sidecar
// (an init container with restartPolicy: Always and a startup probe on its
// /ready, so the application starts once the proxy is ready and Jobs still
// complete). Mutate turns that into a JSON patch; Handler serves
// AdmissionReview v1; Server serves Handler over TLS for the API server.
//
// The controller and the CLI import inject; the proxy must not. Its
// functions are pure; Handler and Server are safe for concurrent use.
package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations and labels Weft reads and writes on pods and namespaces.
const (
	// AnnotationInject (label or annotation) is "enabled" or "disabled"
	// on a namespace or a pod; the pod's value wins.
	AnnotationInject = "weft.dev/inject"
	// AnnotationInjected is set to "true" on an injected pod.
	AnnotationInjected = "weft.dev/injected"
	// AnnotationSkipInboundPorts lists ports whose inbound traffic
	// bypasses the proxy, e.g. "9090,9091".
	AnnotationSkipInboundPorts = "weft.dev/skip-inbound-ports"
	// AnnotationSkipOutboundPorts lists destination ports whose outbound
	// traffic bypasses the proxy.
	AnnotationSkipOutboundPorts = "weft.dev/skip-outbound-ports"
	// AnnotationSkipOutboundCIDRs lists destination networks whose
	// outbound traffic bypasses the proxy, e.g. "10.0.0.0/8,fd00::/8".
	AnnotationSkipOutboundCIDRs = "weft.dev/skip-outbound-cidrs"
	// AnnotationOpaquePorts lists ports the proxy treats as opaque TCP
	// without protocol detection (server-first protocols such as MySQL).
	AnnotationOpaquePorts = "weft.dev/opaque-ports"

	Enabled  = "enabled"
	Disabled = "disabled"
)

// Names of what Apply adds to a pod.
const (
	ProxyContainer     = "weft-proxy"
	InitContainer      = "weft-init"
	TokenVolume        = "weft-identity-token"
	AnchorsVolume      = "weft-trust-anchors"
	TokenDir           = "/var/run/weft/identity"
	AnchorsDir         = "/var/run/weft/trust-anchors"
	TokenAudience      = "weft.dev/identity"
	AnchorsConfigMap   = "weft-trust-anchors"
	AnchorsKey         = "ca.crt"
	DefaultProxyUID    = 2102
	DefaultAdminPort   = 4191
	DefaultInboundPort = 4143
	// DefaultOutboundPort is where the proxy takes redirected outbound
	// connections.
	DefaultOutboundPort = 4140
	// DefaultController is the controller's gRPC address from a pod.
	DefaultController = "weft-controller.weft.svc.cluster.local:8086"
	// DefaultControlPlaneNamespace is never injected.
	DefaultControlPlaneNamespace = "weft"
)

// Config is how pods are injected. The zero value of a field means the
// default named beside it.
type Config struct {
	// ProxyImage runs both the proxy and `weft-proxy init`; required.
	ProxyImage string
	// ImagePullPolicy of both containers; "" leaves it to Kubernetes.
	ImagePullPolicy corev1.PullPolicy
	// Controller is the gRPC address of the controller; "" means
	// DefaultController.
	Controller string
	// TrustDomain of SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// ControlPlaneNamespace is never injected; "" means "weft".
	ControlPlaneNamespace string
	// ProxyUID is the proxy's user, whose traffic the redirection exempts;
	// zero means DefaultProxyUID.
	ProxyUID int64
	// AdminPort, InboundPort, OutboundPort of the proxy; zero means the
	// defaults above.
	AdminPort, InboundPort, OutboundPort int32
	// LogLevel of the proxy; "" means info.
	LogLevel string
	// Resources of the proxy container; empty means none requested.
	Resources corev1.ResourceRequirements
	// Force injects pods that are not marked for injection (manual
	// injection); opt-out, kube-system and hostNetwork still win.
	Force bool
}

func (c Config) withDefaults() Config {
	if c.Controller == "" {
		c.Controller = DefaultController
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.ControlPlaneNamespace == "" {
		c.ControlPlaneNamespace = DefaultControlPlaneNamespace
	}
	if c.ProxyUID == 0 {
		c.ProxyUID = DefaultProxyUID
	}
	if c.AdminPort == 0 {
		c.AdminPort = DefaultAdminPort
	}
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c
}

// Validate reports a configuration the injector cannot work with.
func (c Config) Validate() error {
	if c.ProxyImage == "" {
		return errors.New("inject: the proxy image is required (e.g. --proxy-image ghcr.io/weft-dev/weft-proxy:v0.1.0)")
	}
	return nil
}

// ErrInvalidAnnotation wraps the error of an annotation Apply cannot
// honour; the webhook refuses such a pod with the message.
var ErrInvalidAnnotation = errors.New("invalid annotation")

// Apply returns pod with the proxy added, or nil and the reason it is
// left alone. ns may be nil (only the pod's own marks count then). pod is
// not modified.
func Apply(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (*corev1.Pod, string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	cfg = cfg.withDefaults()
	nsName := pod.Namespace
	if ns != nil {
		nsName = ns.Name
	}
	if reason := skipReason(pod, ns, nsName, cfg); reason != "" {
		return nil, reason, nil
	}
	opts, err := parseAnnotations(pod.Annotations)
	if err != nil {
		return nil, "", err
	}
	out := pod.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationInjected] = "true"
	inits := []corev1.Container{initContainer(cfg, opts), proxyContainer(pod, cfg, opts)}
	out.Spec.InitContainers = append(inits, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes, volumes(cfg)...)
	return out, "", nil
}

// skipReason says why the pod is not injected, or "".
func skipReason(pod *corev1.Pod, ns *corev1.Namespace, nsName string, cfg Config) string {
	switch {
	case nsName == "kube-system":
		return "namespace kube-system is never injected"
	case nsName == cfg.ControlPlaneNamespace:
		return "the control plane's namespace " + nsName + " is never injected"
	case pod.Spec.HostNetwork:
		return "pod uses the host's network (hostNetwork: true), which the proxy would capture for every pod on the node"
	case pod.Annotations[AnnotationInjected] == "true" || hasContainer(pod, ProxyContainer):
		return "pod already has the proxy"
	}
	podMark := mark(pod.Labels, pod.Annotations)
	if podMark == Disabled {
		return "pod opts out (" + AnnotationInject + ": disabled)"
	}
	if cfg.Force || podMark == Enabled {
		return ""
	}
	if ns != nil && mark(ns.Labels, ns.Annotations) == Enabled {
		return ""
	}
	return "neither the pod nor its namespace is marked " + AnnotationInject + ": enabled"
}

// mark returns the weft.dev/inject value, the annotation winning over the
// label.
func mark(labels, annotations map[string]string) string {
	if v, ok := annotations[AnnotationInject]; ok {
		return v
	}
	return labels[AnnotationInject]
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// options are what a pod's annotations ask for.
type options struct {
	skipInbound, skipOutbound, opaque []int32
	skipCIDRs                         []netip.Prefix
}

func parseAnnotations(a map[string]string) (options, error) {
	var o options
	var errs []error
	ports := func(key string) []int32 {
		v, ok := a[key]
		if !ok {
			return nil
		}
		p, err := parsePorts(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %v", ErrInvalidAnnotation, key, err))
		}
		return p
	}
	o.skipInbound = ports(AnnotationSkipInboundPorts)
	o.skipOutbound = ports(AnnotationSkipOutboundPorts)
	o.opaque = ports(AnnotationOpaquePorts)
	if v, ok := a[AnnotationSkipOutboundCIDRs]; ok {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			p, err := netip.ParsePrefix(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w %s: %q is not a CIDR: write networks like 10.0.0.0/8,fd00::/8", ErrInvalidAnnotation, AnnotationSkipOutboundCIDRs, f))
				continue
			}
			o.skipCIDRs = append(o.skipCIDRs, p.Masked())
		}
	}
	return o, errors.Join(errs...)
}

// parsePorts parses "80,443,8000-8010" into sorted distinct ports.
func parsePorts(v string) ([]int32, error) {
	var out []int32
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a, errA := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		b := a
		var errB error
		if isRange {
			b, errB = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
		}
		if errA != nil || errB != nil || a == 0 || b < a {
			return nil, fmt.Errorf("%q is not a port or a range: write ports like 3306,8000-8010", f)
		}
		for p := a; p <= b; p++ {
			out = append(out, int32(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// joinPorts writes ports back as "a,b,c-d".
func joinPorts(ports []int32) string {
	var parts []string
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ports[i], ports[j]))
		} else {
			parts = append(parts, strconv.Itoa(int(ports[i])))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// serviceName is the service the pod serves: its app.kubernetes.io/name
// or app label, else its service account.
func serviceName(pod *corev1.Pod) string {
	for _, k := range []string{"app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// initContainer runs `weft-proxy init`, which installs the iptables
// redirection in the pod's network namespace and exits.
func initContainer(cfg Config, o options) corev1.Container {
	args := []string{
		"init",
		"--proxy-uid=" + strconv.FormatInt(cfg.ProxyUID, 10),
		"--inbound-port=" + strconv.Itoa(int(cfg.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(cfg.OutboundPort)),
	}
	// The kubelet probes the proxy's admin port on the pod IP: never
	// redirect it to the inbound listener.
	skipIn := slices.Compact(slices.Sorted(slices.Values(append([]int32{cfg.AdminPort}, o.skipInbound...))))
	args = append(args, "--skip-inbound-ports="+joinPorts(skipIn))
	if len(o.skipOutbound) > 0 {
		args = append(args, "--skip-outbound-ports="+joinPorts(o.skipOutbound))
	}
	if len(o.skipCIDRs) > 0 {
		var s []string
		for _, p := range o.skipCIDRs {
			s = append(s, p.String())
		}
		args = append(args, "--skip-outbound-cidrs="+strings.Join(s, ","))
	}
	root := int64(0)
	return corev1.Container{
		Name:            InitContainer,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{"/usr/local/bin/weft-proxy"},
		Args:            args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &root,
			RunAsNonRoot:             ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// proxyContainer is the proxy as a native sidecar.
func proxyContainer(pod *corev1.Pod, cfg Config, o options) corev1.Container {
	args := []string{
		"--id=$(WEFT_POD_NAME).$(WEFT_NAMESPACE)",
		"--service=" + serviceName(pod),
		"--namespace=$(WEFT_NAMESPACE)",
		"--service-account=$(WEFT_SERVICE_ACCOUNT)",
		"--controller=" + cfg.Controller,
		"--trust-domain=" + cfg.TrustDomain,
		"--trust-anchors=" + AnchorsDir + "/" + AnchorsKey,
		"--token-file=" + TokenDir + "/token",
		"--admin=0.0.0.0:" + strconv.Itoa(int(cfg.AdminPort)),
		"--inbound-capture=0.0.0.0:" + strconv.Itoa(int(cfg.InboundPort)),
		"--outbound-capture=127.0.0.1:" + strconv.Itoa(int(cfg.OutboundPort)),
		"--log-level=" + cfg.LogLevel,
	}
	if len(o.opaque) > 0 {
		args = append(args, "--opaque-ports="+joinPorts(o.opaque))
	}
	always := corev1.ContainerRestartPolicyAlways
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(cfg.AdminPort)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			FailureThreshold: failures,
		}
	}
	startup := probe("/ready", 120)
	readiness := probe("/ready", 3)
	readiness.PeriodSeconds = 5
	liveness := probe("/live", 3)
	liveness.PeriodSeconds = 10
	return corev1.Container{
		Name:            ProxyContainer,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{"/usr/local/bin/weft-proxy"},
		Args:            args,
		RestartPolicy:   &always,
		Env: []corev1.EnvVar{
			field("WEFT_POD_NAME", "metadata.name"),
			field("WEFT_NAMESPACE", "metadata.namespace"),
			field("WEFT_SERVICE_ACCOUNT", "spec.serviceAccountName"),
			field("WEFT_POD_IP", "status.podIP"),
		},
		Ports: []corev1.ContainerPort{
			{Name: "weft-inbound", ContainerPort: cfg.InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "weft-admin", ContainerPort: cfg.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:      cfg.Resources,
		StartupProbe:   startup,
		ReadinessProbe: readiness,
		LivenessProbe:  liveness,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(cfg.ProxyUID),
			RunAsGroup:               ptr(cfg.ProxyUID),
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: AnchorsVolume, MountPath: AnchorsDir, ReadOnly: true},
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// volumes are the trust anchors (the ConfigMap the controller keeps in
// every injected namespace, like kube-root-ca.crt) and the projected
// service-account token with Weft's own audience, the proxy's proof of
// identity: a token for another audience cannot be replayed to Weft, nor
// Weft's to the API server.
func volumes(cfg Config) []corev1.Volume {
	expiry := int64(24 * 3600)
	return []corev1.Volume{
		{Name: AnchorsVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: AnchorsConfigMap},
			Items:                []corev1.KeyToPath{{Key: AnchorsKey, Path: AnchorsKey}},
		}}},
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: &expiry, Path: "token",
			}}},
		}}},
	}
}

func ptr[T any](v T) *T { return &v }
