package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/control/leader"
)

// replica is a weft-controller process started by the test.
type replica struct {
	cmd      *exec.Cmd
	httpAddr string
	done     chan struct{}
	log      string
}

// startReplica runs weft-controller (this test binary in main mode) with
// --leader-elect and identity id, until the test ends.
func startReplica(t *testing.T, kubeconfig, tokenFile, id string) *replica {
	t.Helper()
	r := &replica{httpAddr: freeAddr(t), done: make(chan struct{}), log: filepath.Join(t.TempDir(), id+".log")}
	logFile, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	// Short lease times keep a hard kill's handover quick; the test
	// polls for it rather than timing it.
	r.cmd = exec.Command(os.Args[0], "--source=kubernetes", "--kubeconfig="+kubeconfig, "--namespace=weft",
		"--grpc-addr="+freeAddr(t), "--http-addr="+r.httpAddr, "--token-file="+tokenFile,
		"--leader-elect", "--leader-elect-identity="+id, "--leader-elect-lease-duration=3s",
		"--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=250ms", "--log-level=info")
	r.cmd.Env = append(os.Environ(), envRunMain+"=1")
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); logFile.Close(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("replica %s log:\n%s", id, b)
		}
	})
	return r
}

// serves reports "" once the replica's HTTP API answers.
func (r *replica) serves(ctx context.Context) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.httpAddr+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}

// TestLeaderElection runs two replicas against a real API server: the
// first leads, the second serves without writing; killing the leader hands
// the lease and the writing over, and a replica that stops cleanly releases
// the lease.
func TestLeaderElection(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, cluster, dir)
	tokenFile := filepath.Join(dir, "token")
	writeFiles(t, dir, map[string][]byte{"token": []byte("tok\n")})
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	holder := func(want string) func() string {
		return func() string {
			l, err := client.CoordinationV1().Leases("weft").Get(ctx, leader.LeaseName, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			got := ""
			if l.Spec.HolderIdentity != nil {
				got = *l.Spec.HolderIdentity
			}
			if got != want {
				return fmt.Sprintf("held by %q, want %q", got, want)
			}
			return ""
		}
	}
	anchorsIn := func(ns string) func() string {
		return func() string {
			if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{}); err != nil {
				return err.Error()
			}
			return ""
		}
	}
	newNamespace := func(name string) {
		t.Helper()
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	a := startReplica(t, kubeconfig, tokenFile, "replica-a")
	eventually(ctx, t, "replica-a leads", holder("replica-a"))
	newNamespace("first")
	eventually(ctx, t, "the leader writes the trust anchors", anchorsIn("first"))

	b := startReplica(t, kubeconfig, tokenFile, "replica-b")
	eventually(ctx, t, "replica-b serves its HTTP API", func() string { return b.serves(ctx) })
	if msg := holder("replica-a")(); msg != "" {
		t.Fatalf("with a second replica up the lease is %s", msg)
	}

	// A killed leader cannot release the lease: replica-b takes it once it
	// expires, and writes from then on.
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	eventually(ctx, t, "replica-b takes over", holder("replica-b"))
	newNamespace("second")
	eventually(ctx, t, "the new leader writes the trust anchors", anchorsIn("second"))

	// A leader that stops cleanly releases the lease at once.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		t.Fatal("replica-b did not exit after SIGTERM")
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("replica-b exited with %d after SIGTERM", code)
	}
	eventually(ctx, t, "the lease released", holder(""))
}
