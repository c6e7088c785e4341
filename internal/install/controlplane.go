package install

import (
	"errors"
	"fmt"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/proxy/authz"
)

// Names of the control plane's objects.
const (
	DefaultNamespace = "weft"
	ControllerName   = "weft-controller"
	WebhookName      = "weft-proxy-injector"
	IssuerSecret     = "weft-identity-issuer"
	WebhookSecret    = "weft-webhook-tls"
	APITokenSecret   = "weft-api-token"
	// DefaultRegistry holds the weft-proxy and weft-controller images.
	DefaultRegistry = "ghcr.io/weft-dev"
)

// Ports of the controller.
const (
	GRPCPort      = 8086
	HTTPPort      = 8085
	WebhookPort   = 8443
	controllerUID = 2103
)

// Options are the flags of `weft install`. Zero values mean the defaults
// named beside them.
type Options struct {
	// Namespace of the control plane; "" means "weft".
	Namespace string
	// Registry of the images; "" means DefaultRegistry.
	Registry string
	// ImageTag of both images; required (the CLI passes its version).
	ImageTag string
	// ImagePullPolicy of both images; "" means IfNotPresent.
	ImagePullPolicy corev1.PullPolicy
	// HA runs 3 controller replicas spread over nodes with a
	// PodDisruptionBudget and makes the injector's failurePolicy Fail
	// (pods wait for the injector rather than start without a proxy).
	HA bool
	// LogLevel of the controller and the proxies; "" means info.
	LogLevel string
	// DefaultInboundPolicy of ports no Server selects; "" means
	// all-unauthenticated.
	DefaultInboundPolicy string
	// TrustDomain of SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// ControllerResources and ProxyResources; empty means the defaults of
	// DefaultControllerResources and DefaultProxyResources.
	ControllerResources, ProxyResources *corev1.ResourceRequirements
	// Certs are written into Secrets and the webhook; required by
	// ControlPlane (see GenerateCerts).
	Certs *Certs
}

// DefaultControllerResources are the controller's requests and limits.
func DefaultControllerResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
}

// DefaultProxyResources are each proxy's requests and limits.
func DefaultProxyResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Registry == "" {
		o.Registry = DefaultRegistry
	}
	if o.ImagePullPolicy == "" {
		o.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.DefaultInboundPolicy == "" {
		o.DefaultInboundPolicy = authz.AllUnauthenticated
	}
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.ControllerResources == nil {
		r := DefaultControllerResources()
		o.ControllerResources = &r
	}
	if o.ProxyResources == nil {
		r := DefaultProxyResources()
		o.ProxyResources = &r
	}
	if o.ImageTag == "" {
		return o, errors.New("an image tag is required: give --image-tag, e.g. --image-tag v0.1.0")
	}
	if _, err := authz.ParseDefault(o.DefaultInboundPolicy); err != nil {
		return o, fmt.Errorf("--default-inbound-policy: %w", err)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.LogLevel)
	}
	switch o.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return o, fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.ImagePullPolicy)
	}
	return o, nil
}

// ProxyImage returns the proxy's image reference.
func (o Options) ProxyImage() string { return o.Registry + "/weft-proxy:" + o.ImageTag }

// ControllerImage returns the controller's image reference.
func (o Options) ControllerImage() string { return o.Registry + "/weft-controller:" + o.ImageTag }

// InjectConfig is the injection the installed controller performs, for
// `weft inject` to do the same by hand.
func InjectConfig(o Options) (inject.Config, error) {
	o, err := o.withDefaults()
	if err != nil {
		return inject.Config{}, err
	}
	return inject.Config{
		ProxyImage:            o.ProxyImage(),
		ImagePullPolicy:       o.ImagePullPolicy,
		Controller:            fmt.Sprintf("%s.%s.svc.cluster.local:%d", ControllerName, o.Namespace, GRPCPort),
		TrustDomain:           o.TrustDomain,
		ControlPlaneNamespace: o.Namespace,
		LogLevel:              o.LogLevel,
		Resources:             *o.ProxyResources,
	}, nil
}

// ControlPlane returns the control plane's objects, in the order kubectl
// should create them.
func ControlPlane(o Options) ([]Object, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Certs == nil {
		return nil, errors.New("install: certificates are required (GenerateCerts)")
	}
	ns := o.Namespace
	labels := map[string]string{
		"app.kubernetes.io/name":    ControllerName,
		"app.kubernetes.io/part-of": "weft",
		"app.kubernetes.io/version": o.ImageTag,
	}
	selector := map[string]string{"app.kubernetes.io/name": ControllerName}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	tm := func(apiVersion, kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	}

	objs := []any{
		&corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{
			Name: ns,
			Labels: map[string]string{
				"app.kubernetes.io/part-of": "weft",
				inject.AnnotationInject:     inject.Disabled,
				// The controller needs no privilege.
				"pod-security.kubernetes.io/enforce": "restricted",
			},
		}},
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(ControllerName)},
		clusterRole(labels),
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: metav1.ObjectMeta{Name: ControllerName, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ControllerName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: ns}},
		},
		&rbacv1.Role{
			TypeMeta:   tm("rbac.authorization.k8s.io/v1", "Role"),
			ObjectMeta: meta(ControllerName),
			// Leader election between replicas.
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   tm("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: meta(ControllerName),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ControllerName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: ns}},
		},
		&corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(IssuerSecret), Type: corev1.SecretTypeTLS, Data: map[string][]byte{
			"ca.crt": o.Certs.TrustAnchorsPEM, corev1.TLSCertKey: o.Certs.IssuerCertPEM, corev1.TLSPrivateKeyKey: o.Certs.IssuerKeyPEM,
		}},
		&corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(WebhookSecret), Type: corev1.SecretTypeTLS, Data: map[string][]byte{
			"ca.crt": o.Certs.WebhookCAPEM, corev1.TLSCertKey: o.Certs.WebhookCertPEM, corev1.TLSPrivateKeyKey: o.Certs.WebhookKeyPEM,
		}},
		&corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(APITokenSecret), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{
			"token": []byte(o.Certs.APIToken),
		}},
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta(inject.AnchorsConfigMap), Data: map[string]string{
			inject.AnchorsKey: string(o.Certs.TrustAnchorsPEM),
		}},
		&corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: meta(ControllerName), Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports: []corev1.ServicePort{
				{Name: "grpc", Port: GRPCPort, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr("grpc")},
				{Name: "http", Port: HTTPPort, TargetPort: intstr.FromString("http")},
				{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook")},
			},
		}},
		deployment(o, meta(ControllerName), labels, selector),
	}
	if o.HA {
		objs = append(objs, &policyv1.PodDisruptionBudget{
			TypeMeta:   tm("policy/v1", "PodDisruptionBudget"),
			ObjectMeta: meta(ControllerName),
			Spec: policyv1.PodDisruptionBudgetSpec{
				MaxUnavailable: ptr(intstr.FromInt32(1)),
				Selector:       &metav1.LabelSelector{MatchLabels: selector},
			},
		})
	}
	objs = append(objs, webhook(o, labels))
	out := make([]Object, 0, len(objs))
	for _, v := range objs {
		obj, err := ToObject(v)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, nil
}

// clusterRole grants what the controller reads cluster-wide, and nothing
// it could use to escalate: no Secrets, no pod exec, no writes to
// workloads.
func clusterRole(labels map[string]string) *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: ControllerName, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: []string{"policy.weft.dev"}, Resources: []string{
				"servers", "authorizationpolicies", "inboundpolicydefaults",
				"retrypolicies", "circuitbreakers", "faultinjections", "ratelimits",
			}, Verbs: read},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "grpcroutes"}, Verbs: read},
			{APIGroups: []string{"split.smi-spec.io"}, Resources: []string{"trafficsplits"}, Verbs: read},
			// Proof of identity: the proxies' projected tokens.
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			// The trust anchors are copied into each injected namespace
			// as ConfigMap weft-trust-anchors (a pod can mount only its
			// own namespace's ConfigMaps), like kube-root-ca.crt. RBAC
			// cannot limit create by name; the controller writes only
			// that name.
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		},
	}
}

func deployment(o Options, meta metav1.ObjectMeta, labels, selector map[string]string) *appsv1.Deployment {
	replicas := int32(1)
	if o.HA {
		replicas = 3
	}
	args := []string{
		"--source=kubernetes",
		"--namespace=" + o.Namespace,
		"--grpc-addr=0.0.0.0:" + strconv.Itoa(GRPCPort),
		"--http-addr=0.0.0.0:" + strconv.Itoa(HTTPPort),
		"--webhook-addr=0.0.0.0:" + strconv.Itoa(WebhookPort),
		"--webhook-tls-dir=/var/run/weft/webhook",
		"--identity-dir=/var/run/weft/identity",
		"--token-file=/var/run/weft/api/token",
		"--trust-domain=" + o.TrustDomain,
		"--default-inbound-policy=" + o.DefaultInboundPolicy,
		"--proxy-image=" + o.ProxyImage(),
		"--proxy-image-pull-policy=" + string(o.ImagePullPolicy),
		"--log-level=" + o.LogLevel,
	}
	for _, r := range []struct {
		flag string
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{"--proxy-cpu-request", o.ProxyResources.Requests, corev1.ResourceCPU},
		{"--proxy-memory-request", o.ProxyResources.Requests, corev1.ResourceMemory},
		{"--proxy-cpu-limit", o.ProxyResources.Limits, corev1.ResourceCPU},
		{"--proxy-memory-limit", o.ProxyResources.Limits, corev1.ResourceMemory},
	} {
		if q, ok := r.list[r.name]; ok {
			args = append(args, r.flag+"="+q.String())
		}
	}
	if o.HA {
		args = append(args, "--leader-elect")
	}
	secretVol := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}
	}
	tcpProbe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("grpc")}},
			PeriodSeconds: period, FailureThreshold: failures,
		}
	}
	spec := corev1.PodSpec{
		ServiceAccountName: ControllerName,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:            "controller",
			Image:           o.ControllerImage(),
			ImagePullPolicy: o.ImagePullPolicy,
			Args:            args,
			Ports: []corev1.ContainerPort{
				{Name: "grpc", ContainerPort: GRPCPort},
				{Name: "http", ContainerPort: HTTPPort},
				{Name: "webhook", ContainerPort: WebhookPort},
			},
			Resources:      *o.ControllerResources,
			ReadinessProbe: tcpProbe(5, 3),
			LivenessProbe:  tcpProbe(10, 6),
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                ptr(int64(controllerUID)),
				RunAsGroup:               ptr(int64(controllerUID)),
				AllowPrivilegeEscalation: ptr(false),
				ReadOnlyRootFilesystem:   ptr(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "identity", MountPath: "/var/run/weft/identity", ReadOnly: true},
				{Name: "webhook-tls", MountPath: "/var/run/weft/webhook", ReadOnly: true},
				{Name: "api-token", MountPath: "/var/run/weft/api", ReadOnly: true},
			},
		}},
		Volumes: []corev1.Volume{
			secretVol("identity", IssuerSecret),
			secretVol("webhook-tls", WebhookSecret),
			secretVol("api-token", APITokenSecret),
		},
	}
	if o.HA {
		// Preferred, not required: a single-node cluster still runs all
		// replicas.
		spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
					TopologyKey:   "kubernetes.io/hostname",
				},
			}},
		}}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       spec,
			},
		},
	}
}

// webhook calls the controller for pods created in namespaces marked
// weft.dev/inject: enabled (first entry) and for pods marked so in other
// namespaces (second entry); kube-system and the control plane's namespace
// are excluded by name. Webhook selectors see labels only: annotations
// are honoured by the injector for pods the webhook is called for.
func webhook(o Options, labels map[string]string) *admissionregistrationv1.MutatingWebhookConfiguration {
	failure := admissionregistrationv1.Ignore
	if o.HA {
		failure = admissionregistrationv1.Fail
	}
	notSystem := metav1.LabelSelectorRequirement{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", o.Namespace},
	}
	hook := func(name string, nsSel, objSel *metav1.LabelSelector) admissionregistrationv1.MutatingWebhook {
		none := admissionregistrationv1.SideEffectClassNone
		never := admissionregistrationv1.NeverReinvocationPolicy
		equivalent := admissionregistrationv1.Equivalent
		return admissionregistrationv1.MutatingWebhook{
			Name: name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service:  &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: ControllerName, Path: ptr("/inject"), Port: ptr(int32(443))},
				CABundle: o.Certs.WebhookCAPEM,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy:           &failure,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       nsSel,
			ObjectSelector:          objSel,
			SideEffects:             &none,
			TimeoutSeconds:          ptr(int32(10)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookName, Labels: labels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			hook("namespace.inject.weft.dev",
				&metav1.LabelSelector{
					MatchLabels:      map[string]string{inject.AnnotationInject: inject.Enabled},
					MatchExpressions: []metav1.LabelSelectorRequirement{notSystem},
				},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: inject.AnnotationInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{inject.Disabled}},
				}}),
			hook("pod.inject.weft.dev",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					notSystem,
					{Key: inject.AnnotationInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{inject.Enabled}},
				}},
				&metav1.LabelSelector{MatchLabels: map[string]string{inject.AnnotationInject: inject.Enabled}}),
		},
	}
}

func ptr[T any](v T) *T { return &v }
