package kube_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/kube"
)

// TestSourceWithFakeClients covers the mapping from API objects to the
// snapshot without an API server (it runs under -short too); the real API
// server test covers watching.
func TestSourceWithFakeClients(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeSlice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "api-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr[int32](9000)}},
		Endpoints: []discoveryv1.Endpoint{
			// A nil ready condition means ready.
			{Addresses: []string{"198.18.0.7"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "api-0"}},
			{Addresses: []string{"198.18.0.8"}},
		},
	}
	p := pod("api-0", "", true)
	p.Status.PodIP = "198.18.0.7"
	client := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: ns}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}},
		fakeSlice, p,
	)
	gvr := schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
	client.Resources = []*metav1.APIResourceList{{
		GroupVersion: gvr.GroupVersion().String(),
		APIResources: []metav1.APIResource{{Name: "trafficsplits", Namespaced: true, Kind: "TrafficSplit"}},
	}}
	split := func(name string, weight int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gvr.GroupVersion().String(), "kind": "TrafficSplit",
			"metadata": map[string]any{"name": name, "namespace": ns, "uid": "x", "resourceVersion": "7"},
			"spec": map[string]any{"service": "api", "backends": []any{
				map[string]any{"service": "api-v2", "weight": weight},
			}},
		}}
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "TrafficSplitList"}, split("good", 1), split("zero", 0), split("second", 2))

	logs := &logBuffer{}
	src := kube.New(kube.Options{Client: client, Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	snap := waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
		if len(s.Resources) != 1 || s.Services[config.Key("api", ns)] == nil {
			return "not yet"
		}
		return ""
	})
	tests := []struct {
		name, got, want string
	}{
		{"endpoints", describe(snap.Services[config.Key("api", ns)]),
			"198.18.0.7:9000 ready=true meshed=true spiffe://cluster.local/ns/shop/sa/default; 198.18.0.8:9000 ready=true meshed=false "},
		{"external name service left out", describe(snap.Services[config.Key("ext", ns)]), "<no service>"},
		{"proxy", snap.Proxies[kube.ProxyID("api-0", ns)].AdminAddr + " " + snap.Proxies[kube.ProxyID("api-0", ns)].Service, "198.18.0.7:4191 web"},
		{"resource", snap.Resources[0].ID(), "TrafficSplit/shop/good"},
		{"rejected", src.Rejected()["TrafficSplit/shop/zero"], "TrafficSplit shop/zero: spec.backends: all weights are 0; give at least one backend a positive weight"},
		{"second split of a service", src.Rejected()["TrafficSplit/shop/second"], `TrafficSplit shop/second: spec.service: service "api" is already split by TrafficSplit/shop/good; edit or delete one of them`},
		{"watched", func() string { w := src.Watched(); return w[0] }(), "split.smi-spec.io/v1alpha2 TrafficSplit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	// An unchanged cache publishes no new version.
	v := snap.Version
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "api-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	snap = waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
		if len(s.Services[config.Key("api", ns)].Endpoints) != 0 {
			return "endpoints still listed"
		}
		return ""
	})
	if snap.Version != v+1 {
		t.Errorf("version: got %d, want %d (one change)", snap.Version, v+1)
	}
}

// TestRunFailsWhenDiscoveryFails checks that Run returns the error (and
// stops its informers) when the API server's discovery fails.
func TestRunFailsWhenDiscoveryFails(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	src := kube.New(kube.Options{Client: client, Dynamic: dyn})
	err := src.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "check that the API server is reachable") {
		t.Errorf("got %v, want the discovery error and what to check", err)
	}
	select {
	case <-src.Synced():
		t.Error("Synced closed although Run failed")
	default:
	}
}

// TestServicePortsAndClusterIPs checks that a Service's cluster IPs and
// ports, and the port name of each endpoint, reach the snapshot: what
// the controller needs to resolve a captured connection's "IP:port".
func TestServicePortsAndClusterIPs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "admin", Port: 9000, TargetPort: intstr.FromString("admin")},
				{Name: "metrics", Port: 9100},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	}
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: ns},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Port: ptr[int32](8080)},
			{Name: ptr("admin"), Port: ptr[int32](9001)},
			// Two service ports on one target port: one endpoint each.
			{Name: ptr("metrics"), Port: ptr[int32](8080)},
		},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.9"}}},
	}
	client := fake.NewClientset(svc, headless, slice)
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	src := kube.New(kube.Options{Client: client, Dynamic: dyn})
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	snap := waitSnapshot(t, ctx, src, func(s *config.Snapshot) string {
		if s.Services[config.Key("db", ns)] == nil || len(s.Services[config.Key("db", ns)].Endpoints) == 0 {
			return "not yet"
		}
		return ""
	})
	db := snap.Services[config.Key("db", ns)]
	if got := fmt.Sprint(db.ClusterIPs); got != "[10.96.0.10 fd00::10]" {
		t.Errorf("cluster IPs %s", got)
	}
	if got := fmt.Sprint(db.Ports); got != "[{http 80 8080} {admin 9000 admin} {metrics 9100 9100}]" {
		t.Errorf("ports %s", got)
	}
	var eps []string
	for _, e := range db.Endpoints {
		eps = append(eps, e.Address+"/"+e.PortName)
	}
	if got := strings.Join(eps, " "); got != "198.18.0.9:8080/http 198.18.0.9:8080/metrics 198.18.0.9:9001/admin" {
		t.Errorf("endpoints %s", got)
	}
	if h := snap.Services[config.Key("headless", ns)]; h == nil || len(h.ClusterIPs) != 0 {
		t.Errorf("headless service: %+v", h)
	}
}
