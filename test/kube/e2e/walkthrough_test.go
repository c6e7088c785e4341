package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// demoDir holds the demo's Kubernetes manifests.
const demoDir = "../../../examples/demo/kubernetes"

// TestWalkthrough is the getting-started walkthrough of docs/kubernetes.md
// on a real single-node cluster, run as a user runs it: weft and kubectl
// commands, and the demo's own load generator as the client.
func TestWalkthrough(t *testing.T) {
	w := start(t)

	t.Log("step 1: weft check --pre, weft install --crds, weft install, weft check")
	w.weft(t, "check", "--pre")
	w.pipe(t, []string{"install", "--crds"}, "apply", "--server-side", "-f", "-")
	w.pipe(t, []string{"install", "--image-tag", imageTag, "--image-pull-policy", "Never"}, "apply", "-f", "-")
	w.kubectl(t, "-n", "weft", "rollout", "status", "deploy/weft-controller", "--timeout=180s")
	w.weft(t, "check", "--wait", "2m")

	t.Log("step 2: the demo in a namespace labelled for injection")
	w.kubectl(t, "apply", "-f", filepath.Join(demoDir, "demo.yaml"))
	w.kubectl(t, "label", "namespace", "demo", "weft.dev/inject=enabled")
	w.kubectl(t, "-n", "demo", "rollout", "restart", "deploy")
	for _, d := range []string{"web", "api-v1", "api-v2", "quotes", "load"} {
		w.kubectl(t, "-n", "demo", "rollout", "status", "deploy/"+d, "--timeout=240s")
	}

	t.Log("step 3: every pod has the proxy; traffic flows through the proxies, over mTLS, with the pods' identities")
	pods := w.pods(t, "demo")
	if len(pods) != 7 {
		t.Fatalf("demo pods %v, want 7 (web ×2, api-v1, api-v2, quotes ×2, load)", names(pods))
	}
	for _, p := range pods {
		if !p.hasProxy() {
			t.Errorf("pod %s has no weft-proxy container: %v", p.Metadata.Name, p.containerNames())
		}
		st := w.proxyStatus(t, p.Metadata.Name)
		want := "spiffe://cluster.local/ns/demo/sa/" + p.Spec.ServiceAccountName
		if st.Identity != want || !st.Ready {
			t.Errorf("pod %s: proxy identity %q ready %v, want %q ready", p.Metadata.Name, st.Identity, st.Ready, want)
		}
	}
	w.weft(t, "check", "--proxy", "-n", "demo", "--wait", "1m")
	// The load generator runs at 5 rps: web and api see meshed (tls="true")
	// inbound requests, and the quotes service its gRPC calls.
	for _, app := range []string{"web", "api", "quotes"} {
		w.eventually(t, app+" receives mTLS requests", func() error {
			n := 0.0
			for _, p := range pods {
				if p.Metadata.Labels["app"] == app {
					n += w.metric(t, p.Metadata.Name, "weft_requests_total", map[string]string{"direction": "inbound", "tls": "true"})
				}
			}
			if n < 5 {
				return fmt.Errorf("%v inbound mTLS requests", n)
			}
			return nil
		})
	}

	// weft stat reaches the controller through a port-forward, as a user's
	// CLI does, and shows the golden metrics of the demo's services.
	w.eventually(t, "weft stat shows web and api", func() error {
		var st struct {
			Services []struct {
				Name, Namespace string
				Meshed          int     `json:"meshed"`
				Requests        float64 `json:"requests"`
			} `json:"services"`
		}
		out, err := w.weftOut("stat", "-o", "json")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		seen := map[string]bool{}
		for _, s := range st.Services {
			if s.Namespace == "demo" && s.Meshed > 0 && s.Requests > 0 {
				seen[s.Name] = true
			}
		}
		if !seen["web"] || !seen["api"] {
			return fmt.Errorf("services with traffic: %v\n%s", seen, out)
		}
		return nil
	})

	t.Log("step 4: a TrafficSplit and an HTTPRoute applied with kubectl")
	w.kubectl(t, "apply", "-f", filepath.Join(demoDir, "canary.yaml"))
	w.waitSplit(t)
	sum := w.load(t, "split", "--api", "http://api", "--count", "600", "--rps", "100")
	v1, v2 := sum.version("v1"), sum.version("v2")
	if sum.int("errors")+sum.int("http_5xx") != 0 || v1+v2 < 400 {
		t.Fatalf("split run: %v", sum)
	}
	if share := float64(v2) / float64(v1+v2); math.Abs(share-0.20) > 0.08 {
		t.Errorf("api v2 answered %.1f%% of %d requests, want 20%% (±8 pp)", 100*share, v1+v2)
	}
	w.kubectl(t, "apply", "-f", filepath.Join(demoDir, "route.yaml"))
	w.eventually(t, "the header route reaches the proxies", func() error {
		s := w.load(t, "beta-probe", "--api", "http://api", "--header", "x-canary:true", "--count", "20", "--rps", "50")
		if s.version("v1") != 0 || s.version("v2") == 0 {
			return fmt.Errorf("x-canary requests answered by %s", s["api_versions"])
		}
		return nil
	})
	sum = w.load(t, "beta", "--api", "http://api", "--header", "x-canary:true", "--count", "200", "--rps", "100")
	if sum.version("v1") != 0 || sum.version("v2") < 150 || sum.int("errors") != 0 {
		t.Errorf("x-canary: true went to %s (errors %s), want v2 only", sum["api_versions"], sum["errors"])
	}

	t.Log("step 5: an AuthorizationPolicy denies one caller")
	w.kubectl(t, "apply", "-f", filepath.Join(demoDir, "policy.yaml"))
	w.eventually(t, "the policy reaches api's proxies", func() error {
		s := w.load(t, "denied-probe", "--api", "http://api", "--count", "10", "--rps", "50")
		if s.int("http_4xx") != 10 {
			return fmt.Errorf("load → api: %v", s)
		}
		return nil
	})
	denied := w.load(t, "denied", "--api", "http://api", "--count", "100", "--rps", "100")
	if denied.int("http_4xx") != 100 {
		t.Errorf("load (service account load) → api: %v, want 100 × 403", denied)
	}
	allowed := w.load(t, "allowed", "--target", "http://web/", "--api", "", "--count", "100", "--rps", "50")
	if allowed.int("ok") != 100 {
		t.Errorf("load → web → api (service account web): %v, want 100 ok", allowed)
	}
	if n := w.sumMetric(t, "api", "weft_authz_deny_total", map[string]string{"policy": "Server/demo/api-http"}); n < 100 {
		t.Errorf("api proxies counted %v denials, want ≥ 100", n)
	}

	t.Log("step 6: a web pod deleted under load")
	w.kubectl(t, "delete", "-f", filepath.Join(demoDir, "policy.yaml"))
	victim := ""
	for _, p := range w.pods(t, "demo") {
		if p.Metadata.Labels["app"] == "web" {
			victim = p.Metadata.Name
		}
	}
	done := make(chan summary, 1)
	go func() {
		done <- w.loadUntil(t, "churn", 25*time.Second, "--target", "http://web/", "--api", "", "--rps", "40")
	}()
	time.Sleep(8 * time.Second) // load runs before the deletion
	w.kubectl(t, "-n", "demo", "delete", "pod", victim, "--wait=false")
	churn := <-done
	if churn.int("ok") < 500 {
		t.Errorf("churn run: %v", churn)
	}
	// Only requests in flight on the deleted pod when it stopped may fail.
	if failed := churn.int("errors") + churn.int("http_5xx"); failed > 2 {
		t.Errorf("%d requests failed while %s was deleted: %v", failed, victim, churn)
	}
	w.kubectl(t, "-n", "demo", "rollout", "status", "deploy/web", "--timeout=120s")

	t.Log("step 7: weft uninstall leaves the cluster clean")
	w.kubectl(t, "delete", "namespace", "demo", "--wait=true", "--timeout=180s")
	w.pipe(t, []string{"uninstall"}, "delete", "--ignore-not-found", "--wait=true", "-f", "-")
	w.clean(t)
}

// summary is the "load finished" line of the load generator.
type summary map[string]string

func (s summary) int(k string) int {
	n, _ := strconv.Atoi(s[k])
	return n
}

// version is the count of answers from API version v.
func (s summary) version(v string) int {
	for _, kv := range strings.Split(s["api_versions"], ",") {
		if name, n, ok := strings.Cut(kv, "="); ok && name == v {
			c, _ := strconv.Atoi(n)
			return c
		}
	}
	return 0
}

var logfmtPair = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

func parseSummary(out string) (summary, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="load finished"`) {
			continue
		}
		s := summary{}
		for _, m := range logfmtPair.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			s[m[1]] = v
		}
		return s, true
	}
	return nil, false
}

// load runs the demo's load generator as a pod of the demo namespace (with
// the load service account, so injected and with its identity) and returns
// its summary.
func (w *walk) load(t *testing.T, name string, args ...string) summary {
	t.Helper()
	return w.runLoad(t, name, args)
}

// loadUntil runs the load generator for d.
func (w *walk) loadUntil(t *testing.T, name string, d time.Duration, args ...string) summary {
	t.Helper()
	return w.runLoad(t, name, append(args, "--duration", d.String()))
}

func (w *walk) runLoad(t *testing.T, name string, args []string) summary {
	t.Helper()
	w.runs++
	pod := fmt.Sprintf("load-%s-%d", name, w.runs)
	overrides, _ := json.Marshal(map[string]any{"spec": map[string]any{"serviceAccountName": "load"}})
	cmd := append([]string{"-n", "demo", "run", pod, "--quiet", "--attach", "--rm", "--restart=Never",
		"--labels=app=load,version=job",
		"--image=" + demoImage, "--image-pull-policy=Never", "--pod-running-timeout=180s",
		"--overrides=" + string(overrides), "--command", "--",
		"/usr/local/bin/load", "--report-interval", "1h", "--timeout", "5s"}, args...)
	out, err := w.kubectlOut(cmd...)
	s, ok := parseSummary(out)
	if !ok {
		t.Fatalf("load %s: no summary (err %v):\n%s", name, err, out)
	}
	t.Logf("load %s: %v", name, s)
	return s
}

// waitSplit waits until the proxies send some traffic to api v2.
func (w *walk) waitSplit(t *testing.T) {
	t.Helper()
	w.eventually(t, "the TrafficSplit reaches the proxies", func() error {
		s := w.load(t, "split-probe", "--api", "http://api", "--count", "60", "--rps", "60")
		if s.version("v2") == 0 {
			return fmt.Errorf("no answer from v2 yet: %s", s["api_versions"])
		}
		return nil
	})
}

// eventually retries f until it succeeds, for at most two minutes.
func (w *walk) eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// pod is the part of a Pod the test reads.
type pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp string            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string `json:"serviceAccountName"`
		InitContainers     []struct {
			Name string `json:"name"`
		} `json:"initContainers"`
		Containers []struct {
			Name string `json:"name"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

func (p pod) containerNames() []string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Name)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

func (p pod) hasProxy() bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == "weft-proxy" {
			return true
		}
	}
	return false
}

func names(ps []pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Metadata.Name)
	}
	return out
}

// pods lists the running pods of the namespace that are not load runs nor
// terminating.
func (w *walk) pods(t *testing.T, ns string) []pod {
	t.Helper()
	out := w.kubectl(t, "-n", ns, "get", "pods", "-o", "json", "--field-selector=status.phase=Running", "-l", "version!=job")
	var list struct {
		Items []pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("pods: %v", err)
	}
	var live []pod
	for _, p := range list.Items {
		if p.Metadata.DeletionTimestamp == "" { // not terminating (a replaced ReplicaSet's)
			live = append(live, p)
		}
	}
	return live
}

// proxyStatus reads a proxy's /status through the API server's pod proxy.
func (w *walk) proxyStatus(t *testing.T, podName string) (st struct {
	Ready    bool   `json:"ready"`
	Identity string `json:"identity"`
}) {
	t.Helper()
	w.eventually(t, "status of "+podName, func() error {
		out, err := w.kubectlOut("get", "--raw", "/api/v1/namespaces/demo/pods/"+podName+":4191/proxy/status")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return json.Unmarshal([]byte(out), &st)
	})
	return st
}

// metric sums the samples of a counter of one proxy whose labels include
// match.
func (w *walk) metric(t *testing.T, podName, name string, match map[string]string) float64 {
	t.Helper()
	out, err := w.kubectlOut("get", "--raw", "/api/v1/namespaces/demo/pods/"+podName+":4191/proxy/metrics")
	if err != nil {
		t.Logf("metrics of %s: %v", podName, err)
		return 0
	}
	return sumSamples(out, name, match)
}

func (w *walk) sumMetric(t *testing.T, app, name string, match map[string]string) float64 {
	t.Helper()
	n := 0.0
	for _, p := range w.pods(t, "demo") {
		if p.Metadata.Labels["app"] == app {
			n += w.metric(t, p.Metadata.Name, name, match)
		}
	}
	return n
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
var labelPair = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// sumSamples sums the samples of metric name in a Prometheus text
// exposition whose labels include match.
func sumSamples(text, name string, match map[string]string) float64 {
	total := 0.0
	for line := range strings.Lines(text) {
		m := sampleLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || m[1] != name {
			continue
		}
		labels := map[string]string{}
		for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = l[2]
		}
		ok := true
		for k, v := range match {
			if labels[k] != v {
				ok = false
			}
		}
		if v, err := strconv.ParseFloat(m[3], 64); ok && err == nil {
			total += v
		}
	}
	return total
}

// clean checks that nothing of Weft is left in the cluster.
func (w *walk) clean(t *testing.T) {
	t.Helper()
	w.eventually(t, "namespace weft deleted", func() error {
		out, err := w.kubectlOut("get", "namespace", "weft", "--ignore-not-found", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("still there: %s %v", out, err)
		}
		return nil
	})
	for _, kind := range []string{"crd", "clusterrole", "clusterrolebinding", "mutatingwebhookconfiguration", "validatingwebhookconfiguration"} {
		out := w.kubectl(t, "get", kind, "-o", "name")
		for line := range strings.Lines(out) {
			if strings.Contains(line, "weft") || strings.Contains(line, "smi-spec") || strings.Contains(line, "gateway.networking") {
				t.Errorf("left after uninstall: %s", strings.TrimSpace(line))
			}
		}
	}
	// The garbage collector deletes the ConfigMaps the weft namespace owned.
	w.eventually(t, "trust anchor ConfigMaps deleted", func() error {
		out, err := w.kubectlOut("get", "configmap", "-A", "-o", "name", "--field-selector=metadata.name=weft-trust-anchors")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("left after uninstall: %s %v", out, err)
		}
		return nil
	})
}

// kubectl runs kubectl against the cluster and fails the test on error.
func (w *walk) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.kubectlOut(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (w *walk) kubectlOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// weft runs the weft CLI built for the test and fails on error.
func (w *walk) weft(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.weftBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	out, err := cmd.CombinedOutput()
	t.Logf("weft %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("weft %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func (w *walk) weftOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.weftBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	out, err := cmd.Output()
	return string(out), err
}

// pipe runs `weft ARGS | kubectl KARGS`.
func (w *walk) pipe(t *testing.T, args []string, kargs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gen := exec.CommandContext(ctx, w.weftBin, args...)
	gen.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	manifests, err := gen.Output()
	if err != nil {
		t.Fatalf("weft %s: %v", strings.Join(args, " "), err)
	}
	kc := exec.CommandContext(ctx, "kubectl", kargs...)
	kc.Env = gen.Env
	kc.Stdin = bytes.NewReader(manifests)
	if out, err := kc.CombinedOutput(); err != nil {
		t.Fatalf("weft %s | kubectl %s: %v\n%s", strings.Join(args, " "), strings.Join(kargs, " "), err, out)
	}
}
