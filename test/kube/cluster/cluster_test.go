package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestCluster starts the cluster, runs a two-replica Deployment of a local image behind a Service,
// reaches it by ClusterIP from the host and by DNS name from pods (kubectl exec and a Job), and
// checks that Stop leaves nothing behind.
func TestCluster(t *testing.T) {
	if err := Requirements(""); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := Start(ctx, Options{Dir: filepath.Join(dir, "cluster"), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c.LogDir)
		}
		if !stopped {
			if err := c.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})

	// The workload's image: a static echo server, packed and imported.
	bin := filepath.Join(dir, "echoserver")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "weft.dev/weft/test/kube/tools/echoserver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build echoserver: %v\n%s", err, out)
	}
	if err := BuildImage(ctx, filepath.Join(dir, "images"), map[string]string{"echoserver": bin}); err != nil {
		t.Fatal(err)
	}
	if err := c.ImportImage(ctx, filepath.Join(dir, "images", "echoserver.tar")); err != nil {
		t.Fatal(err)
	}

	deployEcho(ctx, t, c)

	svc, err := c.Client.CoreV1().Services("default").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// From the host, through kube-proxy's rules.
	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/from-host"
	body := waitFor(ctx, t, "GET "+url, func() (string, error) { return httpGet(ctx, url) })
	t.Logf("GET %s: %s", url, strings.TrimSpace(body))
	if !strings.Contains(body, "echo-") || !strings.Contains(body, "GET /from-host") {
		t.Errorf("GET %s answered %q, want a pod name and the path", url, body)
	}

	// From a pod, by name: kubectl exec (through the API server and the kubelet) ...
	dnsURL := "http://echo.default.svc." + ClusterDomain + "/from-pod"
	body = waitFor(ctx, t, "kubectl exec ... get "+dnsURL, func() (string, error) {
		out, err := c.Kubectl(ctx, "exec", "deploy/echo", "--", "/usr/local/bin/echoserver", "get", dnsURL)
		return string(out), err
	})
	t.Logf("kubectl exec deploy/echo -- echoserver get %s: %s", dnsURL, strings.TrimSpace(body))
	if !strings.Contains(body, "GET /from-pod") {
		t.Errorf("kubectl exec ... get %s answered %q", dnsURL, body)
	}
	// ... and a Job, whose output comes back through the kubelet's logs.
	runJob(ctx, t, c, "http://echo.default.svc."+ClusterDomain+"/from-job")

	stopped = true
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := c.Leftovers(ctx); len(left) > 0 {
		t.Errorf("left after Stop:\n%s", strings.Join(left, "\n"))
	}
	for name, pid := range c.PIDs() {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("%s (pid %d) still exists after Stop", name, pid)
		}
	}
}

func deployEcho(ctx context.Context, t *testing.T, c *Cluster) {
	t.Helper()
	labels := map[string]string{"app": "echo"}
	two := int32(2)
	_, err := c.Client.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:            "echo",
					Image:           ImageRef("echoserver"),
					ImagePullPolicy: corev1.PullNever,
					Args:            []string{"serve", ":8080"},
					Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt(8080)}},
						PeriodSeconds: 1,
					},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "Deployment echo available with 2 replicas", func() (string, error) {
		d, err := c.Client.AppsV1().Deployments("default").Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if d.Status.AvailableReplicas != 2 {
			return "", fmt.Errorf("%d available", d.Status.AvailableReplicas)
		}
		return "", nil
	})
}

func runJob(ctx context.Context, t *testing.T, c *Cluster, url string) {
	t.Helper()
	zero := int32(0)
	_, err := c.Client.BatchV1().Jobs("default").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "fetch"},
		Spec: batchv1.JobSpec{
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job": "fetch"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:            "fetch",
						Image:           ImageRef("echoserver"),
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"get", url},
					}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "Job fetch to succeed", func() (string, error) {
		j, err := c.Client.BatchV1().Jobs("default").Get(ctx, "fetch", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if j.Status.Failed > 0 {
			t.Fatalf("Job fetch failed: %+v", j.Status)
		}
		if j.Status.Succeeded == 0 {
			return "", fmt.Errorf("status %+v", j.Status)
		}
		return "", nil
	})
	pods, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "job=fetch"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("the Job's pod: %v (%d pods)", err, len(pods.Items))
	}
	logs, err := c.Client.CoreV1().Pods("default").GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of the Job's pod: %v", err)
	}
	t.Logf("Job fetch printed: %s", strings.TrimSpace(string(logs)))
	if !strings.Contains(string(logs), "GET /from-job") {
		t.Errorf("the Job printed %q, want the echo of /from-job", logs)
	}
}

// waitFor polls f until it succeeds or ctx ends, and returns its last result.
func waitFor(ctx context.Context, t *testing.T, what string, f func() (string, error)) string {
	t.Helper()
	for {
		out, err := f()
		if err == nil {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// A new connection every time: one made before kube-proxy wrote the
	// Service's rules would not follow them.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, b)
	}
	return string(b), nil
}

// dumpLogs prints the end of every process's log.
func dumpLogs(t *testing.T, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Logf("--- %s (end):\n%s", e.Name(), tail(filepath.Join(dir, e.Name()), 3000))
	}
}

// testWriter sends the cluster's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
