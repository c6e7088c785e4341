package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/deploy"
	"weft.dev/weft/internal/config/kube"
	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/controller"
	"weft.dev/weft/internal/control/identity/tokenreview"
	"weft.dev/weft/internal/mtls"
	pidentity "weft.dev/weft/internal/proxy/identity"
)

// envRunMain makes the test binary run weft-controller's main instead of
// the tests: the leader-election test starts replicas as processes it can
// kill.
const envRunMain = "WEFT_TEST_RUN_CONTROLLER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m,
		// klog's flush daemon starts with the package and never stops.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// client-go caches its transports (and their idle connections) for
		// the life of the process.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

const (
	testNS    = "shop"
	hangGuard = 2 * time.Minute
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func ptr[T any](v T) *T { return &v }

// installCRDs creates the CRDs `weft install --crds` prints and waits until
// TrafficSplit is served.
func installCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, client kubernetes.Interface) {
	t.Helper()
	crds, err := deploy.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		for _, doc := range bytes.Split(c.YAML, []byte("\n---")) {
			var obj map[string]any
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if obj == nil {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(ctx, t, "TrafficSplit served", func() string {
		if _, err := client.Discovery().ServerResourcesForGroupVersion("split.smi-spec.io/v1alpha4"); err != nil {
			return err.Error()
		}
		return ""
	})
}

// eventually polls cond until it returns "" or ctx ends.
func eventually(ctx context.Context, t *testing.T, what string, cond func() string) {
	t.Helper()
	for {
		msg := cond()
		if msg == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still %s", what, msg)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// addWorkload creates a service account, an injected running pod with ip,
// a Service and its EndpointSlice, all named name.
func addWorkload(ctx context.Context, t *testing.T, client kubernetes.Interface, name, ip string) {
	t.Helper()
	if _, err := client.CoreV1().ServiceAccounts(testNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: testNS, Labels: map[string]string{"app": name},
			Annotations: map[string]string{kube.InjectedAnnotation: "true"}},
		Spec: corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{
			Name: "app", Image: "example.invalid/app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
	created, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No kubelet runs: the test gives the pod its IP.
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if _, err := client.CoreV1().Pods(testNS).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services(testNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, AppProtocol: ptr("http")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DiscoveryV1().EndpointSlices(testNS).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-abc", Namespace: testNS, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: name + "-1"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// backends describes a snapshot's backends as "service=weight@address#identity".
func backends(s *meshv1.DestinationSnapshot) string {
	var out []string
	for _, b := range s.GetBackends() {
		for _, e := range b.GetEndpoints() {
			out = append(out, fmt.Sprintf("%s=%d@%s#%s", b.GetService(), b.GetWeight(), e.GetAddress(), e.GetIdentity()))
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestKubernetesModeAgainstAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	dyn := dynamic.NewForConfigOrDie(cluster.Config)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	installCRDs(ctx, t, dyn, client)
	addWorkload(ctx, t, client, "web", "198.18.0.1")
	addWorkload(ctx, t, client, "api", "198.18.0.2")
	addWorkload(ctx, t, client, "api-v2", "198.18.0.3")

	src := kube.New(kube.Options{Client: client, Dynamic: dyn})
	c, err := controller.New(controller.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: "tok", Source: src,
		ScrapeInterval: time.Hour, Authenticator: tokenreview.New(client, "", "")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	srcDone, ctlDone := make(chan error, 1), make(chan error, 1)
	go func() { srcDone <- src.Run(runCtx) }()
	go func() { ctlDone <- c.Run(runCtx) }()
	defer func() {
		stop()
		for _, ch := range []chan error{ctlDone, srcDone} {
			select {
			case err := <-ch:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(hangGuard):
				t.Error("Run did not return after its context ended")
			}
		}
	}()
	for _, ch := range []<-chan struct{}{src.Synced(), c.Ready()} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("the source or the controller never became ready")
		}
	}

	// The proxy of web-1 proves its identity with a projected token.
	tr, err := client.CoreV1().ServiceAccounts(testNS).CreateToken(ctx, "web", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{tokenreview.Audience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := mtls.ParseBundlePEM(c.TrustAnchorsPEM())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := pidentity.New(pidentity.Config{ControllerAddr: c.GRPCAddr(), Bundle: bundle, Token: tr.Status.Token, ProxyID: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	mgrCtx, mgrStop := context.WithCancel(ctx)
	mgrDone := make(chan struct{})
	go func() { defer close(mgrDone); mgr.Run(mgrCtx) }()
	defer func() { mgrStop(); <-mgrDone }()
	select {
	case <-mgr.Ready():
	case <-ctx.Done():
		t.Fatal("no certificate for a TokenReview-proven proxy")
	}
	if got, want := mgr.ID(), "spiffe://cluster.local/ns/shop/sa/web"; got != want {
		t.Fatalf("certificate identity: got %s, want %s", got, want)
	}

	conn, err := grpc.NewClient(c.GRPCAddr(), grpc.WithTransportCredentials(mgr.ControlCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watchCtx, watchStop := context.WithCancel(ctx)
	defer watchStop()
	st, err := meshv1.NewDestinationsClient(conn).Watch(watchCtx, &meshv1.DestinationRequest{
		Authority: "api.shop.svc.cluster.local:80", Proxy: &meshv1.ProxyInfo{Id: "web-1", Workload: "web", Namespace: testNS}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := backends(first), "api.shop=1@198.18.0.2:8080#spiffe://cluster.local/ns/shop/sa/api"; !first.GetExists() || got != want {
		t.Fatalf("before the TrafficSplit: got exists=%v %s, want %s", first.GetExists(), got, want)
	}

	// The HTTP API does not apply on Kubernetes...
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.HTTPAddr()+"/api/v1/apply", strings.NewReader("kind: TrafficSplit\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "kubectl apply") {
		t.Fatalf("apply over HTTP: got %d %s, want 405 pointing to kubectl apply", resp.StatusCode, body)
	}

	// ...the API server does.
	split := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "api-canary", "namespace": testNS},
		"spec": map[string]any{"service": "api", "backends": []any{
			map[string]any{"service": "api", "weight": int64(90)},
			map[string]any{"service": "api-v2", "weight": int64(10)},
		}},
	}}
	gvr := schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha4", Resource: "trafficsplits"}
	if _, err := dyn.Resource(gvr).Namespace(testNS).Create(ctx, split, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "api-v2.shop=10@198.18.0.3:8080#spiffe://cluster.local/ns/shop/sa/api-v2 api.shop=90@198.18.0.2:8080#spiffe://cluster.local/ns/shop/sa/api"
	for {
		got, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for the split's backends %s: %v", want, err)
		}
		if backends(got) == want {
			break
		}
	}
}
