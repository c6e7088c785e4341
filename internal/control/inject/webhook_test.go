package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testConfig = Config{ProxyImage: "example.test/weft-proxy:v1", ImagePullPolicy: corev1.PullNever}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func testPod(annotations map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7d9f-", Labels: map[string]string{"app": "web"}, Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "example.test/migrate"}},
			Containers:         []corev1.Container{{Name: "web", Image: "example.test/web", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			Volumes:            []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	for _, f := range mutate {
		f(p)
	}
	return p
}

// server runs the Handler with namespaces looked up from nss.
func server(t *testing.T, nss ...*corev1.Namespace) *httptest.Server {
	t.Helper()
	h := &Handler{Config: testConfig}
	h.Namespaces = func(_ context.Context, name string) (*corev1.Namespace, error) {
		for _, ns := range nss {
			if ns.Name == name {
				return ns, nil
			}
		}
		return namespace(name, nil), nil
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// review sends pod to the webhook as a CREATE in namespace ns and returns
// the response.
func review(t *testing.T, srv *httptest.Server, ns string, op admissionv1.Operation, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-1"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: op,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(in)
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "uid-1" || out.Kind != "AdmissionReview" {
		t.Fatalf("response %+v does not answer the request", out)
	}
	return out.Response
}

// applyPatch applies the "add" operations of a JSON patch to pod, as the
// API server would.
func applyPatch(t *testing.T, pod *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch is not a JSON patch: %v", err)
	}
	raw, _ := json.Marshal(pod)
	var doc map[string]any
	_ = json.Unmarshal(raw, &doc)
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("unexpected op %q", op.Op)
		}
		parts := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		m := doc
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				t.Fatalf("path %s: %s is missing", op.Path, p)
			}
			m = next
		}
		var v any
		_ = json.Unmarshal(op.Value, &v)
		m[parts[len(parts)-1]] = v
	}
	raw, _ = json.Marshal(doc)
	var out corev1.Pod
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestWebhookInjects(t *testing.T) {
	srv := server(t, namespace("shop", map[string]string{AnnotationInject: Enabled}))
	pod := testPod(nil)
	resp := review(t, srv, "shop", admissionv1.Create, pod)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0 {
		t.Fatalf("got %+v, want an allowed response with a JSON patch", resp)
	}
	got := applyPatch(t, pod, resp.Patch)
	if n := names(got.Spec.InitContainers); !slices.Equal(n, []string{InitContainer, ProxyContainer, "migrate"}) {
		t.Errorf("init containers %v, want [weft-init weft-proxy migrate]: the iptables init first, then the sidecar, then the app's", n)
	}
	if n := names(got.Spec.Containers); !slices.Equal(n, []string{"web"}) {
		t.Errorf("containers %v, want the app's only", n)
	}
	if got.Annotations[AnnotationInjected] != "true" {
		t.Errorf("annotations %v lack %s", got.Annotations, AnnotationInjected)
	}
	proxy := got.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("proxy restartPolicy %v, want Always (native sidecar)", proxy.RestartPolicy)
	}
	if p := proxy.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.IntValue() != DefaultAdminPort {
		t.Errorf("startup probe %+v, want GET /ready on %d", p, DefaultAdminPort)
	}
	if u := proxy.SecurityContext.RunAsUser; u == nil || *u != DefaultProxyUID {
		t.Errorf("proxy runs as %v, want %d", u, DefaultProxyUID)
	}
	for _, want := range []string{
		"--id=$(WEFT_POD_NAME).$(WEFT_NAMESPACE)", "--service=web", "--namespace=$(WEFT_NAMESPACE)",
		"--controller=" + DefaultController, "--trust-anchors=/var/run/weft/trust-anchors/ca.crt",
		"--token-file=/var/run/weft/identity/token",
	} {
		if !slices.Contains(proxy.Args, want) {
			t.Errorf("proxy args %q lack %q", proxy.Args, want)
		}
	}
	init := got.Spec.InitContainers[0]
	if caps := init.SecurityContext.Capabilities.Add; !slices.Equal(caps, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("init capabilities %v, want NET_ADMIN NET_RAW", caps)
	}
	if init.RestartPolicy != nil {
		t.Errorf("init container restartPolicy %v, want none (runs to completion)", *init.RestartPolicy)
	}
	var audience string
	for _, v := range got.Spec.Volumes {
		if v.Name == TokenVolume {
			audience = v.Projected.Sources[0].ServiceAccountToken.Audience
		}
	}
	if audience != TokenAudience {
		t.Errorf("token volume audience %q, want %q", audience, TokenAudience)
	}
	if n := len(got.Spec.Volumes); n != 3 {
		t.Errorf("%d volumes, want the app's plus 2", n)
	}

	// Idempotent: the injected pod comes back unchanged.
	again := review(t, srv, "shop", admissionv1.Create, got)
	if !again.Allowed || len(again.Patch) != 0 {
		t.Errorf("second review of an injected pod: got patch %s, want none", again.Patch)
	}
}

func TestWebhookSkips(t *testing.T) {
	enabled := map[string]string{AnnotationInject: Enabled}
	srv := server(t,
		namespace("shop", enabled),
		namespace("plain", nil),
		namespace("kube-system", enabled),
		namespace("weft", enabled),
	)
	tests := []struct {
		name string
		ns   string
		op   admissionv1.Operation
		pod  *corev1.Pod
	}{
		{"opt-out annotation", "shop", admissionv1.Create, testPod(map[string]string{AnnotationInject: Disabled})},
		{"opt-out label", "shop", admissionv1.Create, testPod(nil, func(p *corev1.Pod) { p.Labels[AnnotationInject] = Disabled })},
		{"namespace not marked", "plain", admissionv1.Create, testPod(nil)},
		{"kube-system", "kube-system", admissionv1.Create, testPod(enabled)},
		{"control plane namespace", "weft", admissionv1.Create, testPod(enabled)},
		{"hostNetwork", "shop", admissionv1.Create, testPod(nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true })},
		{"already has the proxy", "shop", admissionv1.Create, testPod(nil, func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: ProxyContainer})
		})},
		{"update", "shop", admissionv1.Update, testPod(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := review(t, srv, tt.ns, tt.op, tt.pod)
			if !resp.Allowed || len(resp.Patch) != 0 {
				t.Errorf("got allowed=%v patch=%s, want allowed without patch", resp.Allowed, resp.Patch)
			}
		})
	}
	t.Run("pod marked in a plain namespace", func(t *testing.T) {
		resp := review(t, srv, "plain", admissionv1.Create, testPod(nil, func(p *corev1.Pod) { p.Labels[AnnotationInject] = Enabled }))
		if !resp.Allowed || len(resp.Patch) == 0 {
			t.Errorf("got allowed=%v patch=%s, want a patch", resp.Allowed, resp.Patch)
		}
	})
}

func TestWebhookAnnotationsBecomeFlags(t *testing.T) {
	srv := server(t, namespace("shop", map[string]string{AnnotationInject: Enabled}))
	tests := []struct {
		name        string
		annotations map[string]string
		wantInit    []string
		wantProxy   []string
	}{
		{
			name:     "defaults",
			wantInit: []string{"init", "--proxy-uid=2102", "--inbound-port=4143", "--outbound-port=4140", "--skip-inbound-ports=4191"},
		},
		{
			name: "every annotation",
			annotations: map[string]string{
				AnnotationSkipInboundPorts:  "9090, 9091,9092",
				AnnotationSkipOutboundPorts: "5432,3306",
				AnnotationSkipOutboundCIDRs: "10.1.2.3/8,fd00::1/8",
				AnnotationOpaquePorts:       "3306,6000-6002",
			},
			wantInit: []string{"init", "--proxy-uid=2102", "--inbound-port=4143", "--outbound-port=4140",
				"--skip-inbound-ports=4191,9090-9092", "--skip-outbound-ports=3306,5432",
				"--skip-outbound-cidrs=10.0.0.0/8,fd00::/8"},
			wantProxy: []string{"--opaque-ports=3306,6000-6002"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(tt.annotations)
			resp := review(t, srv, "shop", admissionv1.Create, pod)
			got := applyPatch(t, pod, resp.Patch)
			if args := got.Spec.InitContainers[0].Args; !slices.Equal(args, tt.wantInit) {
				t.Errorf("init args\n got %q\nwant %q", args, tt.wantInit)
			}
			for _, want := range tt.wantProxy {
				if args := got.Spec.InitContainers[1].Args; !slices.Contains(args, want) {
					t.Errorf("proxy args %q lack %q", args, want)
				}
			}
		})
	}
}

func TestWebhookRefusesInvalidAnnotation(t *testing.T) {
	srv := server(t, namespace("shop", map[string]string{AnnotationInject: Enabled}))
	tests := []struct {
		name, key, value, want string
	}{
		{"port", AnnotationSkipInboundPorts, "80,http", `weft.dev/skip-inbound-ports: "http" is not a port`},
		{"range", AnnotationOpaquePorts, "9000-8000", `weft.dev/opaque-ports: "9000-8000" is not a port or a range`},
		{"cidr", AnnotationSkipOutboundCIDRs, "10.0.0.0/33", `weft.dev/skip-outbound-cidrs: "10.0.0.0/33" is not a CIDR`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := review(t, srv, "shop", admissionv1.Create, testPod(map[string]string{tt.key: tt.value}))
			if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tt.want) {
				t.Errorf("got allowed=%v result=%+v, want refused naming %q", resp.Allowed, resp.Result, tt.want)
			}
		})
	}
}

func TestWebhookRejectsNonReview(t *testing.T) {
	srv := server(t)
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"kind":"Pod"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("got status %d, want 400", resp.StatusCode)
	}
}

func TestMutateNeedsImage(t *testing.T) {
	_, err := Mutate(testPod(nil), namespace("shop", nil), Config{Force: true})
	if err == nil || !strings.Contains(err.Error(), "proxy image is required") {
		t.Errorf("got %v, want an error naming the missing proxy image", err)
	}
}

func TestServiceName(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		sa     string
		want   string
	}{
		{"app.kubernetes.io/name first", map[string]string{"app.kubernetes.io/name": "books", "app": "x"}, "sa", "books"},
		{"app label", map[string]string{"app": "web"}, "sa", "web"},
		{"service account", nil, "sa", "sa"},
		{"default", nil, "", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tt.labels}, Spec: corev1.PodSpec{ServiceAccountName: tt.sa}}
			if got := serviceName(p); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
