package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"weft.dev/weft/internal/config/kube/kubetest"
	memstore "weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/install"
	"weft.dev/weft/internal/local/statedir"
)

// writeKubeconfig writes a kubeconfig for host with the bearer token and
// returns its path.
func writeKubeconfig(t *testing.T, cfg *rest.Config, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"test": {Server: cfg.Host, CertificateAuthorityData: cfg.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"user": {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"test": {Cluster: "test", AuthInfo: "user"}},
		CurrentContext: "test",
	}, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCheck runs weft check with args against kubeconfig at a fixed clock.
func runCheck(t *testing.T, kubeconfig string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, proxyHTTP: http.DefaultClient, checkRetries: 1,
		checkRetryDelay: 100 * time.Millisecond, stateDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := e.run(ctx, append([]string{"check", "--kubeconfig", kubeconfig}, args...))
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), code
}

func mustCreate(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("create %s: %v", what, err)
	}
}

// TestKubeCheckPre runs weft check --pre against a real API server: a
// fresh one passes; an earlier namespace, a conflicting webhook, Pod
// Security that forbids NET_ADMIN and a user without rights fail, naming
// what is wrong.
func TestKubeCheckPre(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	admin := writeKubeconfig(t, cluster.Config, cluster.Config.BearerToken)
	// No controller-manager runs: the default ServiceAccount the dry-run
	// pod is admitted with is the test's to create.
	waitFor(t, "namespace default", func() string {
		_, err := client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil {
			return err.Error()
		}
		return ""
	})

	t.Run("a fresh cluster passes", func(t *testing.T) {
		out, code := runCheck(t, admin, "--pre")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		golden(t, "kube_pre_ok.golden", out)
	})

	t.Run("an existing namespace and webhook fail, named", func(t *testing.T) {
		mustCreate(t, "namespace", errOf(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "taken"}}, metav1.CreateOptions{})))
		none := admissionregistrationv1.SideEffectClassNone
		_, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: install.WebhookName},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "other.example.com",
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptrTo("https://other.example.com/hook")},
				SideEffects:             &none,
				AdmissionReviewVersions: []string{"v1"},
			}},
		}, metav1.CreateOptions{})
		mustCreate(t, "webhook", err)
		defer func() {
			if err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, install.WebhookName, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}()
		out, code := runCheck(t, admin, "--pre", "--control-plane-namespace", "taken")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		golden(t, "kube_pre_conflict.golden", out)
	})

	t.Run("Pod Security that forbids NET_ADMIN fails, naming the namespace", func(t *testing.T) {
		mustCreate(t, "namespace", errOf(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
			Labels: map[string]string{inject.AnnotationInject: inject.Enabled, "pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})))
		mustCreate(t, "service account", errOf(client.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})))
		out, code := runCheck(t, admin, "--pre")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		for _, want := range []string{"× pods may run with NET_ADMIN and NET_RAW (Pod Security admission)", "namespace shop:", "baseline", "pod-security.kubernetes.io/enforce=privileged"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(out, "×") != 2 { // the check and the summary
			t.Errorf("want exactly one failed check:\n%s", out)
		}
	})

	t.Run("a user without rights fails, naming what it may not create", func(t *testing.T) {
		mustCreate(t, "service account", errOf(client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "limited"}}, metav1.CreateOptions{})))
		// It may read what the checks read, and create nothing.
		mustCreate(t, "cluster role", errOf(client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-check-reader"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "list"}},
			},
		}, metav1.CreateOptions{})))
		mustCreate(t, "cluster role binding", errOf(client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-check-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "weft-check-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "limited", Namespace: "default"}},
		}, metav1.CreateOptions{})))
		tok, err := client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "limited", &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, code := runCheck(t, writeKubeconfig(t, cluster.Config, tok.Status.Token), "--pre", "-n", "default")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		for _, want := range []string{
			"× can create Namespaces\n    this user may not create namespaces cluster-wide",
			"× can create Secrets\n    this user may not create secrets in namespace weft",
			"× can create MutatingWebhookConfigurations",
			"√ no conflicting injector webhook configuration",
			"× pods may run with NET_ADMIN and NET_RAW",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}

// errOf drops the value of a call that returns one and an error.
func errOf[T any](_ T, err error) error { return err }

// waitFor polls cond until it returns "" or a minute passes (a hang guard).
func waitFor(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// applyInstall creates what `weft install --crds` and `weft install` print
// and waits until the CRDs are Established.
func applyInstall(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ctx := context.Background()
	crds, err := install.CRDs(install.CRDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := install.GenerateCerts("cluster.local", "weft", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := install.ControlPlane(install.Options{ImageTag: "v0.1.0", Certs: certs})
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	create := func(objs []install.Object) {
		dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
		mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
		for _, o := range objs {
			u := &unstructured.Unstructured{Object: o}
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s %s: %v", o.Kind(), o.Name(), err)
			}
			if _, err := dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s %s: %v", o.Kind(), o.Name(), err)
			}
		}
	}
	create(crds)
	ext := apiextclient.NewForConfigOrDie(cfg)
	for _, c := range crds {
		waitFor(t, "CRD "+c.Name()+" Established", func() string {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, c.Name(), metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return ""
				}
			}
			return "not Established"
		})
	}
	create(cp)
}

// netns is a network namespace the test made, joined to the host by a
// veth pair: hostIP on the host's side, IP inside.
type netns struct {
	name, IP, hostIP string
}

// newNetns makes a network namespace with an address the API server can
// reach (a pod IP must be global unicast and an endpoint not loopback), and
// removes it when the test ends.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip command (iproute2) is needed")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b)
	n3, _ := rand.Int(rand.Reader, big.NewInt(120))
	n4, _ := rand.Int(rand.Reader, big.NewInt(60))
	sub := fmt.Sprintf("198.18.%d.%d", 128+n3.Int64(), 4*n4.Int64())
	base := net.ParseIP(sub).To4()
	host := net.IPv4(base[0], base[1], base[2], base[3]+1).String()
	inside := net.IPv4(base[0], base[1], base[2], base[3]+2).String()
	n := &netns{name: "weftchk" + id, IP: inside, hostIP: host}
	hostIf, nsIf := "wch"+id, "wcn"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.name)
	t.Cleanup(func() {
		// Deleting the namespace deletes its end of the pair, and so the
		// pair.
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
		_ = exec.Command("ip", "link", "del", hostIf).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", n.name)
	run("addr", "add", host+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", n.name, "addr", "add", inside+"/30", "dev", nsIf)
	run("-n", n.name, "link", "set", nsIf, "up")
	run("-n", n.name, "link", "set", "lo", "up")
	return n
}

// serve listens on port inside the namespace and serves h until the test
// ends.
func (n *netns) serve(t *testing.T, port int, h http.Handler) {
	t.Helper()
	ln := func() net.Listener {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + n.name)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatalf("setns: %v", err)
		}
		ln, lerr := net.Listen("tcp", net.JoinHostPort(n.IP, fmt.Sprint(port)))
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays in the namespace: leave it locked, so it
			// ends with this goroutine's caller... which is the test; fail.
			t.Fatalf("setns back: %v", err)
		}
		runtime.UnlockOSThread()
		if lerr != nil {
			t.Fatal(lerr)
		}
		return ln
	}()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// TestKubeCheckInstalled applies the install's manifests to a real API
// server and runs weft check: without a kubelet the controller Deployment
// is not available, which is exactly what fails; with its status faked and
// the controller's API and an injected pod's proxy answering from a
// network namespace, everything passes.
func TestKubeCheckInstalled(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	kubeconfig := writeKubeconfig(t, cluster.Config, cluster.Config.BearerToken)

	t.Run("nothing installed", func(t *testing.T) {
		out, code := runCheck(t, kubeconfig, "--kubernetes")
		if code != 1 || !strings.Contains(out, "× control plane namespace exists") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})

	applyInstall(t, cluster.Config)
	t.Run("the Deployment is not available", func(t *testing.T) {
		out, code := runCheck(t, kubeconfig, "--kubernetes")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		golden(t, "kube_check_unavailable.golden", out)
	})

	n := newNetns(t)
	// The controller: its real HTTP API, and a pod and EndpointSlice
	// behind its Service.
	api, err := httpapi.New(httpapi.Config{Token: "secret", Store: memstore.New("")})
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, install.HTTPPort, api)
	pod := addPod(t, client, "weft", "weft-controller-1", n.IP, map[string]string{"app.kubernetes.io/name": install.ControllerName}, nil)
	mustCreate(t, "endpoint slice", errOf(client.DiscoveryV1().EndpointSlices("weft").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "weft-controller-x", Labels: map[string]string{discoveryv1.LabelServiceName: install.ControllerName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(install.HTTPPort)), Protocol: ptrTo(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{n.IP}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "weft", Name: pod.Name, UID: pod.UID}}},
	}, metav1.CreateOptions{})))
	d, err := client.AppsV1().Deployments("weft").Get(ctx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
	if _, err := client.AppsV1().Deployments("weft").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("all green", func(t *testing.T) {
		out, code := runCheck(t, kubeconfig, "--kubernetes")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		golden(t, "kube_check_ok.golden", out)
	})

	// An injected pod whose proxy admin port answers from the namespace.
	notAfter := time.Now().Add(20 * time.Hour).UTC()
	admin := http.NewServeMux()
	admin.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"id":"web-1","ready":true,"cert_not_after":%q}`, notAfter.Format(time.RFC3339))
	})
	n.serve(t, inject.DefaultAdminPort, admin)
	mustCreate(t, "namespace", errOf(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})))
	addPod(t, client, "shop", "web-1", n.IP, nil, &corev1.Container{Name: inject.ProxyContainer, Image: "ghcr.io/weft-dev/weft-proxy:v0.0.9",
		RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways)})

	t.Run("--proxy", func(t *testing.T) {
		out, code := runCheck(t, kubeconfig, "--kubernetes", "--proxy", "-n", "shop")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		golden(t, "kube_check_proxy.golden", out)
	})
	t.Run("--proxy with an expired certificate", func(t *testing.T) {
		notAfter = time.Now().Add(-time.Hour).UTC()
		out, code := runCheck(t, kubeconfig, "--kubernetes", "--proxy", "-n", "shop")
		if code != 1 || !strings.Contains(out, "× every proxy holds a valid certificate\n    shop/web-1: certificate expired at") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

// addPod creates a running pod with ip; with a sidecar it is an injected
// pod whose proxy is ready.
func addPod(t *testing.T, client kubernetes.Interface, ns, name, ip string, labels map[string]string, sidecar *corev1.Container) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	restricted := &corev1.SecurityContext{
		RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo(int64(2103)), AllowPrivilegeEscalation: ptrTo(false),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptrTo(false),
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1", SecurityContext: restricted}}},
	}
	if sidecar != nil {
		pod.Annotations = map[string]string{inject.AnnotationInjected: "true"}
		sidecar.SecurityContext = restricted
		pod.Spec.InitContainers = []corev1.Container{*sidecar}
	}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	created.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "example.invalid/app:1"}}
	if sidecar != nil {
		created.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: sidecar.Name, Ready: true, Started: ptrTo(true), Image: sidecar.Image}}
	}
	updated, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}

// TestCheckTarget covers how weft check chooses between the local mesh and
// a cluster.
func TestCheckTarget(t *testing.T) {
	t.Setenv(clientcmd.RecommendedConfigPathEnvVar, "")
	running := t.TempDir()
	lock, err := statedir.Acquire(running)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if err := statedir.WriteController(running, statedir.Controller{HTTPAddr: "127.0.0.1:1", Token: "x"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		stateDir string
		f        kubeFlags
		env      string
		want     bool
		wantErr  bool
	}{
		{"--pre", t.TempDir(), kubeFlags{pre: true}, "", true, false},
		{"--kubernetes beside a running mesh", running, kubeFlags{kubernetes: true}, "", true, false},
		{"--local", t.TempDir(), kubeFlags{local: true, target: kubeTarget{kubeconfig: "x"}}, "", false, false},
		{"--local with --pre", t.TempDir(), kubeFlags{local: true, pre: true}, "", false, true},
		{"a running local mesh wins over KUBECONFIG", running, kubeFlags{}, "/k", false, false},
		{"no local mesh, KUBECONFIG set", t.TempDir(), kubeFlags{}, "/k", true, false},
		{"no local mesh, --kubeconfig", t.TempDir(), kubeFlags{target: kubeTarget{kubeconfig: "/k"}}, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(clientcmd.RecommendedConfigPathEnvVar, tt.env)
			e := &env{stateDir: tt.stateDir}
			got, err := e.wantsKube(&tt.f)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
