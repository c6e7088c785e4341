package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/install"
	"weft.dev/weft/internal/local/statedir"
)

// minKubeMinor is the oldest Kubernetes minor version (1.x) Weft supports:
// native sidecars (init containers with restartPolicy Always) are on by
// default from 1.29.
const minKubeMinor = 29

// kubeFlags are the flags of `weft check` that choose and reach a cluster.
type kubeFlags struct {
	pre, kubernetes, local bool
	// target is the root's --kubeconfig, --context and
	// --control-plane-namespace.
	target kubeTarget
	// dataNS limits the data-plane checks
	// (--proxy) and names the namespace --pre checks pods may run in.
	dataNS string
	proxy  bool
	wait   time.Duration
}

// wantsKube decides whether `weft check` checks a cluster: with --pre or
// --kubernetes; not with --local; otherwise a cluster when there is no
// running local mesh (no controller file in the state directory) and a
// kubeconfig is at hand (--kubeconfig, --context, $KUBECONFIG or
// ~/.kube/config).
func (e *env) wantsKube(f *kubeFlags) (bool, error) {
	switch {
	case f.local && (f.pre || f.kubernetes):
		return false, errors.New("--local checks the local mesh: it cannot be combined with --pre or --kubernetes")
	case f.pre || f.kubernetes:
		return true, nil
	case f.local:
		return false, nil
	}
	dir, err := e.resolvedStateDir()
	if err != nil {
		return false, err
	}
	var notRunning *statedir.NotRunningError
	if _, err := statedir.ReadController(dir); !errors.As(err, &notRunning) {
		return false, nil // running, starting or stopping: the local mesh
	}
	return f.target.atHand(), nil
}

// kubeChecker runs the checks of `weft check --pre` and of `weft check`
// against a cluster.
type kubeChecker struct {
	f          kubeFlags
	retryDelay time.Duration
	clock      func() time.Time

	cfg    *rest.Config
	client kubernetes.Interface
	ext    apiextclient.Interface
	// deadline ends the retries of failing checks (--wait).
	deadline time.Time
}

func (c *kubeChecker) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// retry runs check until it reports no problem or --wait is over.
func (c *kubeChecker) retry(ctx context.Context, check func(context.Context) []string) []string {
	for {
		problems := check(ctx)
		if len(problems) == 0 || !time.Now().Add(c.retryDelay).Before(c.deadline) {
			return problems
		}
		select {
		case <-ctx.Done():
			return problems
		case <-time.After(c.retryDelay):
		}
	}
}

// connect prints the kubernetes-api and kubernetes-version sections and
// reports whether the cluster can be checked further.
func (c *kubeChecker) connect(ctx context.Context, p *printer) bool {
	c.deadline = time.Now().Add(c.f.wait)
	p.heading("kubernetes-api")
	cfg, err := c.f.target.restConfig()
	if err == nil {
		cfg.WarningHandler = rest.NoWarnings{}
		cfg.Timeout = 30 * time.Second
		if c.client, err = kubernetes.NewForConfig(cfg); err == nil {
			c.ext, err = apiextclient.NewForConfig(cfg)
		}
	}
	if err != nil {
		p.result("can initialize the client", []string{fmt.Sprintf("kubeconfig: %v; give --kubeconfig or --context, or set KUBECONFIG", err)})
		return false
	}
	c.cfg = cfg
	p.result("can initialize the client", nil)
	var minor int
	var gitVersion string
	if !p.result("can query the Kubernetes API", c.retry(ctx, func(ctx context.Context) []string {
		v, err := c.client.Discovery().ServerVersion()
		if err != nil {
			return []string{fmt.Sprintf("%s: %v", cfg.Host, err)}
		}
		gitVersion = v.GitVersion
		major, errMajor := strconv.Atoi(strings.TrimSuffix(v.Major, "+"))
		minor, err = strconv.Atoi(strings.TrimSuffix(v.Minor, "+"))
		if errMajor != nil || err != nil || major != 1 {
			minor = -1
		}
		return nil
	})) {
		return false
	}
	p.heading("kubernetes-version")
	var problems []string
	switch {
	case minor < 0:
		problems = []string{fmt.Sprintf("cannot read the server's version %q", gitVersion)}
	case minor < minKubeMinor:
		problems = []string{fmt.Sprintf("the API server runs %s: Weft needs 1.%d or newer (native sidecar containers)", gitVersion, minKubeMinor)}
	}
	p.result(fmt.Sprintf("is running the minimum Kubernetes API version (v1.%d)", minKubeMinor), problems)
	return true
}

// runPre prints the checks of `weft check --pre` and reports whether all
// passed.
func (c *kubeChecker) runPre(ctx context.Context, w io.Writer) bool {
	p := &printer{w: w}
	defer p.summary()
	if !c.connect(ctx, p) {
		return false
	}
	ns := c.f.target.namespace
	p.heading("pre-kubernetes-setup")
	p.result("control plane namespace does not already exist", c.retry(ctx, func(ctx context.Context) []string {
		got, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return []string{fmt.Sprintf("namespace %s: %v", ns, err)}
		}
		owner := "something else"
		if got.Labels["app.kubernetes.io/part-of"] == "weft" {
			owner = "an earlier weft install (run `weft check`, or `weft uninstall | kubectl delete -f -`)"
		}
		return []string{fmt.Sprintf("namespace %s exists, created by %s: install into another namespace (weft install --namespace, weft check --control-plane-namespace) or remove it", ns, owner)}
	}))
	for _, r := range installResources(ns) {
		p.result("can create "+r.title, c.retry(ctx, func(ctx context.Context) []string { return c.canCreate(ctx, r) }))
	}
	p.result("no conflicting injector webhook configuration", c.retry(ctx, c.noWebhook))
	crdProblems, crdWarnings := c.preCRDs(ctx)
	p.result("no Weft CRDs owned by something else", crdProblems)
	p.warnOrFail("no other release of the SMI and Gateway API CRDs", crdWarnings, false)
	p.result("the admissionregistration.k8s.io/v1 API is served", c.retry(ctx, func(ctx context.Context) []string {
		return c.served("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations")
	}))
	p.result("pods may run with NET_ADMIN and NET_RAW (Pod Security admission)", c.retry(ctx, c.netAdminAllowed))
	return !p.failed
}

// resourceKind is one kind `weft install` creates.
type resourceKind struct {
	title, group, resource, namespace string
}

func installResources(ns string) []resourceKind {
	return []resourceKind{
		{"Namespaces", "", "namespaces", ""},
		{"CustomResourceDefinitions", "apiextensions.k8s.io", "customresourcedefinitions", ""},
		{"ClusterRoles", "rbac.authorization.k8s.io", "clusterroles", ""},
		{"ClusterRoleBindings", "rbac.authorization.k8s.io", "clusterrolebindings", ""},
		{"MutatingWebhookConfigurations", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""},
		{"Roles", "rbac.authorization.k8s.io", "roles", ns},
		{"RoleBindings", "rbac.authorization.k8s.io", "rolebindings", ns},
		{"ServiceAccounts", "", "serviceaccounts", ns},
		{"Secrets", "", "secrets", ns},
		{"ConfigMaps", "", "configmaps", ns},
		{"Services", "", "services", ns},
		{"Deployments", "apps", "deployments", ns},
		{"PodDisruptionBudgets", "policy", "poddisruptionbudgets", ns},
	}
}

// canCreate asks the API server whether the user may create r.
func (c *kubeChecker) canCreate(ctx context.Context, r resourceKind) []string {
	res, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: "create", Group: r.group, Resource: r.resource, Namespace: r.namespace,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return []string{fmt.Sprintf("SelfSubjectAccessReview: %v", err)}
	}
	if res.Status.Allowed {
		return nil
	}
	where := "cluster-wide"
	if r.namespace != "" {
		where = "in namespace " + r.namespace
	}
	msg := fmt.Sprintf("this user may not create %s %s", r.resource, where)
	if res.Status.Reason != "" {
		msg += ": " + res.Status.Reason
	}
	return []string{msg + "; install as a cluster administrator"}
}

// noWebhook fails when a MutatingWebhookConfiguration has the injector's
// name or calls the controller's Service.
func (c *kubeChecker) noWebhook(ctx context.Context) []string {
	list, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{fmt.Sprintf("list MutatingWebhookConfigurations: %v", err)}
	}
	var problems []string
	for _, m := range list.Items {
		if m.Name == install.WebhookName {
			problems = append(problems, fmt.Sprintf("MutatingWebhookConfiguration %s exists (from an earlier install?): remove it with `kubectl delete mutatingwebhookconfiguration %s`", m.Name, m.Name))
			continue
		}
		for _, h := range m.Webhooks {
			if s := h.ClientConfig.Service; s != nil && s.Namespace == c.f.target.namespace && s.Name == install.ControllerName {
				problems = append(problems, fmt.Sprintf("MutatingWebhookConfiguration %s (webhook %s) already calls service %s/%s", m.Name, h.Name, s.Namespace, s.Name))
				break
			}
		}
	}
	return problems
}

// crdLabels returns the CRDs `weft install --crds` prints, by name, with
// the labels that mark them as Weft's.
func crdLabels() (map[string]map[string]string, error) {
	objs, err := install.CRDs(install.CRDOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]any)
		raw, _ := md["labels"].(map[string]any)
		labels := map[string]string{}
		for k, v := range raw {
			labels[k], _ = v.(string)
		}
		out[o.Name()] = labels
	}
	return out, nil
}

// preCRDs lists Weft and SMI CRDs that exist without Weft's label
// (problems), and Gateway API CRDs of another release (warnings).
func (c *kubeChecker) preCRDs(ctx context.Context) (problems, warnings []string) {
	want, err := crdLabels()
	if err != nil {
		return []string{err.Error()}, nil
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		got, err := c.ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("CRD %s: %v", n, err))
			continue
		}
		if bundle, ok := want[n]["gateway.networking.k8s.io/bundle-version"]; ok {
			if have := got.Labels["gateway.networking.k8s.io/bundle-version"]; have != bundle {
				warnings = append(warnings, fmt.Sprintf("CRD %s is Gateway API %q, weft install --crds carries %s: install with --skip-gateway-api to keep it", n, have, bundle))
			}
			continue
		}
		if got.Labels["app.kubernetes.io/part-of"] != "weft" {
			msg := fmt.Sprintf("CRD %s exists and is not labelled app.kubernetes.io/part-of=weft", n)
			if strings.HasSuffix(n, ".split.smi-spec.io") {
				warnings = append(warnings, msg+": install with --skip-smi to keep it")
				continue
			}
			problems = append(problems, msg+": another product owns it; remove it before installing Weft")
		}
	}
	return problems, warnings
}

// served reports whether the API server serves resource in groupVersion.
func (c *kubeChecker) served(groupVersion, resource string) []string {
	list, err := c.client.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v; the injector needs mutating admission webhooks", groupVersion, err)}
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return nil
		}
	}
	return []string{fmt.Sprintf("%s does not serve %s; the injector needs mutating admission webhooks", groupVersion, resource)}
}

// netAdminAllowed creates, as a dry run, the init container an injected
// pod gets (root, NET_ADMIN and NET_RAW) in every namespace marked for
// injection (or -n's, or default): Pod Security admission judges it as it
// would the real pod.
func (c *kubeChecker) netAdminAllowed(ctx context.Context) []string {
	var targets []string
	if c.f.dataNS != "" {
		targets = []string{c.f.dataNS}
	} else {
		list, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: inject.AnnotationInject + "=" + inject.Enabled})
		if err != nil {
			return []string{fmt.Sprintf("list namespaces: %v", err)}
		}
		for _, n := range list.Items {
			targets = append(targets, n.Name)
		}
		if len(targets) == 0 {
			targets = []string{"default"}
		}
	}
	var problems []string
	for _, ns := range targets {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-check-net-admin", Namespace: ns,
				Labels: map[string]string{inject.AnnotationInject: inject.Disabled}},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: ptrTo(false),
				InitContainers: []corev1.Container{{
					Name: inject.InitContainer, Image: "weft-check.invalid/weft-proxy:check",
					SecurityContext: &corev1.SecurityContext{
						RunAsUser: ptrTo(int64(0)), RunAsNonRoot: ptrTo(false),
						Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
					},
				}},
				Containers: []corev1.Container{{Name: "app", Image: "weft-check.invalid/app:check"}},
			},
		}
		_, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "PodSecurity"):
			problems = append(problems, fmt.Sprintf("namespace %s: %v; label it pod-security.kubernetes.io/enforce=privileged to inject pods there", ns, err))
		case apierrors.IsNotFound(err):
			problems = append(problems, fmt.Sprintf("namespace %s: %v", ns, err))
		default:
			problems = append(problems, fmt.Sprintf("namespace %s: a dry-run pod with NET_ADMIN and NET_RAW was refused: %v", ns, err))
		}
	}
	return problems
}

func ptrTo[T any](v T) *T { return &v }

// runInstalled prints the checks of the installed control plane (and,
// with --proxy, of the data plane) and reports whether all passed.
func (c *kubeChecker) runInstalled(ctx context.Context, w io.Writer) bool {
	p := &printer{w: w}
	defer p.summary()
	if !c.connect(ctx, p) {
		return false
	}
	ns := c.f.target.namespace
	p.heading("weft-existence")
	if !p.result("control plane namespace exists", c.retry(ctx, func(ctx context.Context) []string {
		if _, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return []string{fmt.Sprintf("namespace %s: %v; install with `weft install | kubectl apply -f -`", ns, err)}
		}
		return nil
	})) {
		return false
	}
	var missingOptional []string
	p.result("Weft's CRDs are installed and Established", c.retry(ctx, func(ctx context.Context) []string {
		var problems []string
		problems, missingOptional = c.crdsEstablished(ctx)
		return problems
	}))
	p.warnOrFail("SMI and Gateway API CRDs are installed", missingOptional, false)
	var deploy *appsv1.Deployment
	available := p.result("controller Deployment is available", c.retry(ctx, func(ctx context.Context) []string {
		var problems []string
		deploy, problems = c.deploymentAvailable(ctx)
		return problems
	}))
	if available {
		p.result("controller API answers", c.retry(ctx, c.controllerAnswers))
	}

	p.heading("weft-webhook")
	p.result("injector webhook configuration exists", c.retry(ctx, c.webhookExists))
	certProblems, expiring, expired := c.webhookCert(ctx)
	p.result("webhook caBundle verifies the serving certificate", certProblems)
	if len(certProblems) == 0 {
		p.warnOrFail("webhook serving certificate is valid for at least 30 more days", expiring, expired)
	}

	p.heading("weft-identity")
	anchors, issuer, problems := c.identity(ctx)
	p.result("trust anchors ConfigMap and issuer Secret are present and agree", problems)
	if len(problems) == 0 {
		p.warnOrFail("trust anchors are valid for at least 30 more days", c.expiring("anchor", anchors), c.expired(anchors))
		p.warnOrFail("issuer certificate is valid for at least 30 more days", c.expiring("issuer", []*x509.Certificate{issuer}), c.expired([]*x509.Certificate{issuer}))
	}

	if c.f.proxy {
		p.heading("weft-data-plane")
		want := ""
		if deploy != nil {
			want = deploy.Labels["app.kubernetes.io/version"]
		}
		p.result("every injected pod's proxy is ready", c.retry(ctx, c.proxiesReady))
		var versions []string
		p.result("every proxy holds a valid certificate", c.retry(ctx, func(ctx context.Context) []string {
			var problems []string
			problems, versions = c.proxyCerts(ctx, want)
			return problems
		}))
		p.warnOrFail("every proxy runs the control plane's version", versions, false)
	}
	return !p.failed
}

// crdsEstablished lists Weft's CRDs that are missing or not Established
// (problems) and the SMI and Gateway API ones that are missing (warnings:
// the controller then reads no TrafficSplits or routes).
func (c *kubeChecker) crdsEstablished(ctx context.Context) (problems, missingOptional []string) {
	want, err := crdLabels()
	if err != nil {
		return []string{err.Error()}, nil
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		weftOwn := strings.HasSuffix(n, ".policy.weft.dev")
		crd, err := c.ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && weftOwn:
			problems = append(problems, fmt.Sprintf("CRD %s is missing: run `weft install --crds | kubectl apply --server-side -f -`", n))
			continue
		case apierrors.IsNotFound(err):
			missingOptional = append(missingOptional, fmt.Sprintf("CRD %s is missing: its resources are not read", n))
			continue
		case err != nil:
			problems = append(problems, fmt.Sprintf("CRD %s: %v", n, err))
			continue
		}
		established := false
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
				established = true
			}
		}
		if !established {
			problems = append(problems, fmt.Sprintf("CRD %s is not Established yet", n))
		}
	}
	return problems, missingOptional
}

// deploymentAvailable reports whether the controller Deployment has an
// available replica.
func (c *kubeChecker) deploymentAvailable(ctx context.Context) (*appsv1.Deployment, []string) {
	d, err := c.client.AppsV1().Deployments(c.f.target.namespace).Get(ctx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		return nil, []string{fmt.Sprintf("Deployment %s/%s: %v", c.f.target.namespace, install.ControllerName, err)}
	}
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && d.Status.AvailableReplicas > 0 {
			return d, nil
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d, []string{fmt.Sprintf("Deployment %s/%s: %d of %d replicas available; see `kubectl -n %s describe deployment %s` and the pods' logs",
		c.f.target.namespace, install.ControllerName, d.Status.AvailableReplicas, want, c.f.target.namespace, install.ControllerName)}
}

// controllerAnswers calls the controller's HTTP API through the API
// server's service proxy. The API server drops the Authorization header
// of requests it proxies, so the controller answers 401 with its own
// challenge: that it answers at all is what is checked.
func (c *kubeChecker) controllerAnswers(ctx context.Context) []string {
	// The API server picks the endpoint port by the Service port's name.
	res := c.client.CoreV1().Services(c.f.target.namespace).ProxyGet("http", install.ControllerName, "http", "/api/v1/status", nil)
	body, err := res.DoRaw(ctx)
	var se *apierrors.StatusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.ErrStatus.Code == http.StatusUnauthorized && strings.Contains(string(body), "bearer token"):
		return nil // the controller's own answer
	}
	return []string{fmt.Sprintf("service %s/%s port http through the API server: %v", c.f.target.namespace, install.ControllerName, err)}
}

// webhookExists checks the injector's configuration and that it calls the
// controller's Service.
func (c *kubeChecker) webhookExists(ctx context.Context) []string {
	m, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		return []string{fmt.Sprintf("MutatingWebhookConfiguration %s: %v", install.WebhookName, err)}
	}
	var problems []string
	if len(m.Webhooks) == 0 {
		problems = append(problems, fmt.Sprintf("MutatingWebhookConfiguration %s has no webhooks", m.Name))
	}
	for _, h := range m.Webhooks {
		s := h.ClientConfig.Service
		if s == nil || s.Namespace != c.f.target.namespace || s.Name != install.ControllerName {
			problems = append(problems, fmt.Sprintf("webhook %s does not call service %s/%s", h.Name, c.f.target.namespace, install.ControllerName))
		}
		if len(h.ClientConfig.CABundle) == 0 {
			problems = append(problems, fmt.Sprintf("webhook %s has no caBundle", h.Name))
		}
	}
	return problems
}

// webhookCert verifies the serving certificate in the webhook's Secret
// against every webhook's caBundle, for the controller Service's name.
func (c *kubeChecker) webhookCert(ctx context.Context) (problems, expiring []string, expired bool) {
	m, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		return []string{fmt.Sprintf("MutatingWebhookConfiguration %s: %v", install.WebhookName, err)}, nil, false
	}
	sec, err := c.client.CoreV1().Secrets(c.f.target.namespace).Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		return []string{fmt.Sprintf("Secret %s/%s: %v", c.f.target.namespace, install.WebhookSecret, err)}, nil, false
	}
	certs, err := parseCerts(sec.Data[corev1.TLSCertKey])
	if err != nil {
		return []string{fmt.Sprintf("Secret %s/%s %s: %v", c.f.target.namespace, install.WebhookSecret, corev1.TLSCertKey, err)}, nil, false
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	dns := install.ControllerName + "." + c.f.target.namespace + ".svc"
	for _, h := range m.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(h.ClientConfig.CABundle) {
			problems = append(problems, fmt.Sprintf("webhook %s: caBundle holds no PEM certificate", h.Name))
			continue
		}
		// Checked at the leaf's own mid-life, so expiry is judged apart
		// (a warning before it fails).
		at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dns, Roots: pool, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			problems = append(problems, fmt.Sprintf("webhook %s: the certificate in Secret %s does not verify against its caBundle for %s: %v", h.Name, install.WebhookSecret, dns, err))
		}
	}
	if len(problems) > 0 {
		return problems, nil, false
	}
	return nil, c.expiring("webhook certificate", []*x509.Certificate{leaf}), c.expired([]*x509.Certificate{leaf})
}

// identity reads the trust anchors ConfigMap and the issuer Secret, and
// checks that they agree and that the issuer chains to an anchor.
func (c *kubeChecker) identity(ctx context.Context) (anchors []*x509.Certificate, issuer *x509.Certificate, problems []string) {
	ns := c.f.target.namespace
	cm, err := c.client.CoreV1().ConfigMaps(ns).Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("ConfigMap %s/%s: %v", ns, inject.AnchorsConfigMap, err)}
	}
	anchors, err = parseCerts([]byte(cm.Data[inject.AnchorsKey]))
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("ConfigMap %s/%s %s: %v", ns, inject.AnchorsConfigMap, inject.AnchorsKey, err)}
	}
	sec, err := c.client.CoreV1().Secrets(ns).Get(ctx, install.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("Secret %s/%s: %v", ns, install.IssuerSecret, err)}
	}
	if strings.TrimSpace(string(sec.Data["ca.crt"])) != strings.TrimSpace(cm.Data[inject.AnchorsKey]) {
		problems = append(problems, fmt.Sprintf("ConfigMap %s and Secret %s hold different trust anchors: proxies would not trust the controller's certificates", inject.AnchorsConfigMap, install.IssuerSecret))
	}
	chain, err := parseCerts(sec.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, nil, append(problems, fmt.Sprintf("Secret %s/%s %s: %v", ns, install.IssuerSecret, corev1.TLSCertKey, err))
	}
	issuer = chain[0]
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: issuer.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		problems = append(problems, fmt.Sprintf("the issuer %q does not chain to the trust anchors: %v", issuer.Subject.CommonName, err))
	}
	if !issuer.IsCA {
		problems = append(problems, fmt.Sprintf("the issuer %q is not a CA certificate", issuer.Subject.CommonName))
	}
	return anchors, issuer, problems
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// expiring lists the certificates that expired or expire within
// expiryWarning.
func (c *kubeChecker) expiring(role string, certs []*x509.Certificate) []string {
	now := c.now()
	var problems []string
	for _, ct := range certs {
		left := ct.NotAfter.Sub(now)
		switch {
		case left <= 0:
			problems = append(problems, fmt.Sprintf("%s %q expired on %s", role, ct.Subject.CommonName, ct.NotAfter.UTC().Format(time.DateOnly)))
		case left < expiryWarning:
			problems = append(problems, fmt.Sprintf("%s %q expires on %s, in %d days", role, ct.Subject.CommonName, ct.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24)))
		}
	}
	return problems
}

func (c *kubeChecker) expired(certs []*x509.Certificate) bool {
	now := c.now()
	for _, ct := range certs {
		if !ct.NotAfter.After(now) {
			return true
		}
	}
	return false
}

// injectedPods lists the pods the injector gave a proxy, in -n or in every
// namespace.
func (c *kubeChecker) injectedPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := c.client.CoreV1().Pods(c.f.dataNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Annotations[inject.AnnotationInjected] == "true" && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out, nil
}

// proxyContainer returns the proxy's spec and status in pod (a native
// sidecar, or a plain container in pods injected by hand).
func proxyContainer(p *corev1.Pod) (*corev1.Container, *corev1.ContainerStatus) {
	var spec *corev1.Container
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == inject.ProxyContainer {
				spec = &list[i]
			}
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == inject.ProxyContainer {
				return spec, &list[i]
			}
		}
	}
	return spec, nil
}

func (c *kubeChecker) proxiesReady(ctx context.Context) []string {
	pods, err := c.injectedPods(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for i := range pods {
		p := &pods[i]
		_, st := proxyContainer(p)
		switch {
		case st == nil:
			problems = append(problems, fmt.Sprintf("%s/%s: no %s container status (phase %s)", p.Namespace, p.Name, inject.ProxyContainer, p.Status.Phase))
		case !st.Ready:
			why := ""
			if st.State.Waiting != nil {
				why = ": " + st.State.Waiting.Reason
			}
			problems = append(problems, fmt.Sprintf("%s/%s: %s is not ready%s; see `kubectl -n %s logs %s -c %s`", p.Namespace, p.Name, inject.ProxyContainer, why, p.Namespace, p.Name, inject.ProxyContainer))
		}
	}
	slices.Sort(problems)
	return problems
}

// proxyCerts reads every ready proxy's admin /status through the API
// server's pod proxy and lists the proxies without a current certificate
// (problems) and those whose image tag differs from want (warnings).
func (c *kubeChecker) proxyCerts(ctx context.Context, want string) (problems, versions []string) {
	pods, err := c.injectedPods(ctx)
	if err != nil {
		return []string{err.Error()}, nil
	}
	now := c.now()
	for i := range pods {
		p := &pods[i]
		spec, st := proxyContainer(p)
		if spec != nil && want != "" {
			if _, tag, ok := strings.Cut(spec.Image[strings.LastIndex(spec.Image, "/")+1:], ":"); ok && tag != want {
				versions = append(versions, fmt.Sprintf("%s/%s: proxy %s, control plane %s; restart the pod to get the current proxy", p.Namespace, p.Name, tag, want))
			}
		}
		if st == nil || !st.Ready {
			continue // reported as not ready
		}
		body, err := c.client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, strconv.Itoa(inject.DefaultAdminPort), "/status", nil).DoRaw(ctx)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: admin /status through the API server: %v", p.Namespace, p.Name, err))
			continue
		}
		var s struct {
			CertNotAfter *time.Time `json:"cert_not_after"`
		}
		if err := json.Unmarshal(body, &s); err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: admin /status is not JSON: %v", p.Namespace, p.Name, err))
			continue
		}
		switch {
		case s.CertNotAfter == nil:
			problems = append(problems, fmt.Sprintf("%s/%s: holds no certificate; see `kubectl -n %s logs %s -c %s`", p.Namespace, p.Name, p.Namespace, p.Name, inject.ProxyContainer))
		case !s.CertNotAfter.After(now):
			problems = append(problems, fmt.Sprintf("%s/%s: certificate expired at %s and was not renewed", p.Namespace, p.Name, s.CertNotAfter.UTC().Format(time.RFC3339)))
		}
	}
	slices.Sort(problems)
	slices.Sort(versions)
	return problems, versions
}

// registerKubeFlags adds the cluster flags to `weft check`.
func registerKubeFlags(cmd *cobra.Command, f *kubeFlags) {
	fl := cmd.Flags()
	fl.BoolVar(&f.pre, "pre", false, "check that the cluster is ready for `weft install` (implies --kubernetes)")
	fl.BoolVar(&f.kubernetes, "kubernetes", false, "check the control plane installed in the cluster of the kubeconfig")
	fl.BoolVar(&f.local, "local", false, "check the local mesh of `weft up`, even where a kubeconfig exists")
	fl.StringVarP(&f.dataNS, "namespace", "n", "", "namespace of the data-plane checks (--proxy) and of --pre's Pod Security check (default: all, or those marked for injection)")
	fl.BoolVar(&f.proxy, "proxy", false, "also check every injected pod's proxy: ready, holding a valid certificate, at the control plane's version")
	fl.DurationVar(&f.wait, "wait", 0, "retry failing cluster checks for up to this long, e.g. 2m right after installing")
}
