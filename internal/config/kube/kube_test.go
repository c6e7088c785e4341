package kube_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/deploy"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/kube"
	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/split"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog's flush daemon starts with the package and never stops.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// client-go's HTTP/2 connections to the API server close with the
		// shared transport, which client-go caches for the process.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

const ns = "shop"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the CRDs `weft install --crds` prints and waits until
// the API server serves them.
func installCRDs(t *testing.T, ctx context.Context, cfg *rest.Config) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(cfg)
	crds, err := deploy.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range crds {
		for _, doc := range bytes.Split(c.YAML, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if obj == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if _, err := dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating CRD %s: %v", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	for _, n := range names {
		eventually(t, ctx, "CRD "+n+" established", func() string {
			u, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return ""
				}
			}
			return fmt.Sprintf("conditions %v", conds)
		})
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	for _, gv := range []string{"split.smi-spec.io/v1alpha4", "gateway.networking.k8s.io/v1", "policy.weft.dev/v1alpha1"} {
		eventually(t, ctx, "discovery of "+gv, func() string {
			if _, err := client.Discovery().ServerResourcesForGroupVersion(gv); err != nil {
				return err.Error()
			}
			return ""
		})
	}
}

// eventually polls cond until it returns "" (hang guard: one minute).
func eventually(t *testing.T, ctx context.Context, what string, cond func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
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

// waitSnapshot waits on the source's Changed channel until check accepts
// a snapshot (it returns "" then) and returns that snapshot.
func waitSnapshot(t *testing.T, ctx context.Context, src *kube.Source, check func(*config.Snapshot) string) *config.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		changed := src.Changed()
		snap := src.Snapshot()
		msg := check(snap)
		if msg == "" {
			return snap
		}
		select {
		case <-ctx.Done():
			t.Fatalf("snapshot version %d never matched: %s", snap.Version, msg)
		case <-changed:
		}
	}
}

// logBuffer collects the source's log lines.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ptr[T any](v T) *T { return &v }

func pod(name, sa string, injected bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name: "app", Image: "example.invalid/web:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/ready?full=1", Port: intstr.FromString("http")}}},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromInt32(9999)}}},
			}},
		},
	}
	if injected {
		p.Annotations = map[string]string{kube.InjectedAnnotation: "true"}
	}
	return p
}

func endpoint(ip, podName string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: podName},
	}
}

// describe prints a service's endpoints as "address ready identity".
func describe(svc *config.Service) string {
	if svc == nil {
		return "<no service>"
	}
	var out []string
	for _, e := range svc.Endpoints {
		out = append(out, fmt.Sprintf("%s ready=%v meshed=%v %s", e.Address, e.Ready, e.Meshed, e.Identity))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func TestSourceAgainstAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	dyn := dynamic.NewForConfigOrDie(cluster.Config)

	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "web-admin"} {
		if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := []struct {
		p  *corev1.Pod
		ip string
	}{
		{pod("web-1", "web", true), "198.18.0.1"},
		{pod("web-2", "web-admin", true), "198.18.0.2"},
		{pod("web-3", "web", false), "198.18.0.3"},
	}
	for _, p := range pods {
		created, err := client.CoreV1().Pods(ns).Create(ctx, p.p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No kubelet runs: the test plays its part and gives the pod an IP.
		created.Status.Phase = corev1.PodRunning
		created.Status.PodIP = p.ip
		created.Status.PodIPs = []corev1.PodIP{{IP: p.ip}}
		if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, AppProtocol: ptr("http")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-abc", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			endpoint("198.18.0.1", "web-1", true),
			endpoint("198.18.0.2", "web-2", true),
			endpoint("198.18.0.3", "web-3", false),
		},
	}
	if _, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	src := kube.New(kube.Options{
		Client:      client,
		Dynamic:     dyn,
		TrustDomain: "example.org",
		Rediscover:  100 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	})
	runDone := make(chan error, 1)
	go func() { runDone <- src.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return after its context ended")
		}
	}()
	select {
	case <-src.Synced():
	case err := <-runDone:
		t.Fatalf("Run returned before the caches filled: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the source's caches never filled")
	}

	key := config.Key("web", ns)
	t.Run("endpoints carry readiness and the pods' identities", func(t *testing.T) {
		snap := waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			if len(s.Services[key].Endpoints) != 3 {
				return describe(s.Services[key])
			}
			return ""
		})
		got := describe(snap.Services[key])
		want := "198.18.0.1:8080 ready=true meshed=true spiffe://example.org/ns/shop/sa/web; " +
			"198.18.0.2:8080 ready=true meshed=true spiffe://example.org/ns/shop/sa/web-admin; " +
			"198.18.0.3:8080 ready=false meshed=false "
		if got != want {
			t.Errorf("endpoints:\n got %s\nwant %s", got, want)
		}
		if got, want := snap.Services[key].Protocol, config.ProtocolHTTP1; got != want {
			t.Errorf("protocol: got %q, want %q", got, want)
		}
		if got, want := snap.Services[key].Endpoints[0].Labels["app"], "web"; got != want {
			t.Errorf("endpoint label app: got %q, want %q", got, want)
		}
		var proxies []string
		for id, p := range snap.Proxies {
			proxies = append(proxies, fmt.Sprintf("%s %s %s %s %v", id, p.Service, p.Namespace, p.AdminAddr, p.Ports))
		}
		sort.Strings(proxies)
		if got, want := strings.Join(proxies, "; "), "web-1.shop web shop 198.18.0.1:4191 [{8080  [{/ready false}]}]; web-2.shop web shop 198.18.0.2:4191 [{8080  [{/ready false}]}]"; got != want {
			t.Errorf("proxies:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("updates and deletions propagate", func(t *testing.T) {
		cur, err := client.DiscoveryV1().EndpointSlices(ns).Get(ctx, "web-abc", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints[2].Conditions.Ready = ptr(true)
		cur.Endpoints = cur.Endpoints[1:]
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			got := describe(s.Services[key])
			if got != "198.18.0.2:8080 ready=true meshed=true spiffe://example.org/ns/shop/sa/web-admin; 198.18.0.3:8080 ready=true meshed=false " {
				return got
			}
			return ""
		})
		if err := client.CoreV1().Pods(ns).Delete(ctx, "web-1", metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			if _, ok := s.Proxies["web-1"]; ok {
				return "proxy web-1 still listed"
			}
			return ""
		})
		if err := client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "web-abc", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			if svc := s.Services[key]; svc == nil || len(svc.Endpoints) != 0 {
				return describe(svc)
			}
			return ""
		})
		if err := client.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			if _, ok := s.Services[key]; ok {
				return "service still listed"
			}
			return ""
		})
	})

	t.Run("documents are decoded like weft apply, invalid ones reported", func(t *testing.T) {
		// The CRDs come after the source started: it finds them.
		if got := src.Watched(); len(got) != 0 {
			t.Errorf("watched before the CRDs exist: %v", got)
		}
		installCRDs(t, ctx, cluster.Config)
		eventually(t, ctx, "the source watches the new kinds", func() string {
			if got := len(src.Watched()); got < 3 {
				return fmt.Sprintf("%v", src.Watched())
			}
			return ""
		})
		docs := []string{`
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: web-split, namespace: shop}
spec:
  service: web
  backends:
  - {service: web-v1, weight: 90}
  - {service: web-v2, weight: 10}
`, `
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: broken, namespace: shop}
spec:
  service: web
  backends:
  - {service: web-v1, weight: 0}
`, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-route, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - backendRefs:
    - {name: web-v1, port: 80}
`}
		for _, d := range docs {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: obj}
			gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
			if err != nil {
				t.Fatal(err)
			}
			resource := strings.ToLower(u.GetKind()) + "s"
			if _, err := dyn.Resource(gv.WithResource(resource)).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s: %v", u.GetName(), err)
			}
		}
		snap := waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			var ids []string
			for _, r := range s.Resources {
				ids = append(ids, r.ID())
			}
			// Created in the same second, they are in ID order.
			sort.Strings(ids)
			if got := strings.Join(ids, ","); got != "HTTPRoute/shop/web-route,TrafficSplit/shop/web-split" {
				return "resources " + got
			}
			return ""
		})
		var ts *split.TrafficSplit
		for _, r := range snap.Resources {
			if r.Kind == split.Kind {
				var ok bool
				if ts, ok = r.Spec.(*split.TrafficSplit); !ok {
					t.Fatalf("TrafficSplit spec: got %T, want *split.TrafficSplit", r.Spec)
				}
			}
		}
		if got, want := fmt.Sprint(ts.Backends), "[{web-v1 90} {web-v2 10}]"; got != want {
			t.Errorf("backends: got %s, want %s", got, want)
		}
		rejected := src.Rejected()
		msg, ok := rejected["TrafficSplit/shop/broken"]
		if !ok || !strings.Contains(msg, "spec.backends") {
			t.Errorf("rejected: got %v, want TrafficSplit/shop/broken naming spec.backends", rejected)
		}
		if !strings.Contains(logs.String(), "TrafficSplit/shop/broken") {
			t.Errorf("log does not report the rejected document:\n%s", logs.String())
		}

		if err := dyn.Resource(schema.GroupVersionResource{Group: split.Group, Version: "v1alpha4", Resource: "trafficsplits"}).
			Namespace(ns).Delete(ctx, "web-split", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			if len(s.Resources) != 1 || s.Resources[0].Kind != "HTTPRoute" {
				return fmt.Sprintf("%d resources", len(s.Resources))
			}
			return ""
		})
	})

	t.Run("every example of the CRDs round-trips through the API server", func(t *testing.T) {
		// The API server defaults and prunes what it stores; the strict
		// decoder must still accept every kind as the server returns it,
		// whichever version it was written in.
		data, err := os.ReadFile("../../../deploy/testdata/examples.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
		want := map[string]bool{"HTTPRoute/shop/web-route": true}
		second := map[string]bool{"api-split-v1": true, "api-split-v2": true, "api-split-v3": true}
		for _, doc := range strings.Split(string(data), "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: obj}
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: %v", gvk, err)
			}
			if _, err := dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
			}
			if !second[u.GetName()] {
				want[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = true
			}
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			got := map[string]bool{}
			for _, r := range s.Resources {
				got[r.ID()] = true
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Sprintf("%d of %d resources; rejected: %v", len(got), len(want), src.Rejected())
			}
			return ""
		})
		// The examples split service api four times: the first (in ID
		// order, as they were created in the same second) wins, the others
		// decode but are reported.
		rejected := src.Rejected()
		for _, id := range []string{"TrafficSplit/shop/api-split-v1", "TrafficSplit/shop/api-split-v2", "TrafficSplit/shop/api-split-v3"} {
			if msg := rejected[id]; !strings.Contains(msg, "already split by TrafficSplit/shop/api-split;") {
				t.Errorf("%s: got %q, want it reported as a second split of service api", id, msg)
			}
		}
		if got := len(rejected); got != 4 {
			t.Errorf("rejected: got %v, want the three extra splits and TrafficSplit/shop/broken", rejected)
		}
		// Once the first is deleted, the v1alpha1 one (quantity weights,
		// read back at v1alpha4) takes over.
		if err := dyn.Resource(schema.GroupVersionResource{Group: split.Group, Version: "v1alpha4", Resource: "trafficsplits"}).
			Namespace(ns).Delete(ctx, "api-split", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
			for _, r := range s.Resources {
				if r.ID() == "TrafficSplit/shop/api-split-v1" {
					if got, want := fmt.Sprint(r.Spec.(*split.TrafficSplit).Backends), "[{api-v1 900} {api-v2 100}]"; got != want {
						return "v1alpha1 backends " + got
					}
					return ""
				}
			}
			return "api-split-v1 not in the snapshot; rejected: " + fmt.Sprint(src.Rejected())
		})
	})
}
