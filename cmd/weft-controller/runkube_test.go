package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/install"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeKubeconfig writes a kubeconfig of the cluster's administrator into
// dir and returns its path.
func writeKubeconfig(t *testing.T, cluster *kubetest.Cluster, dir string) string {
	t.Helper()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"test": {Server: cluster.Config.Host, CertificateAuthorityData: cluster.Config.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {Token: cluster.Config.BearerToken}},
		Contexts:       map[string]*clientcmdapi.Context{"test": {Cluster: "test", AuthInfo: "admin"}},
		CurrentContext: "test",
	}, kubeconfig); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// TestRunKube runs the binary's Kubernetes assembly with the files the
// install's Secrets provide, against a real API server.
func TestRunKube(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, cluster, dir)
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	// The install creates the namespace; the leader's Lease lives there.
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certs, err := install.GenerateCerts("cluster.local", "weft", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	identityDir, webhookDir := filepath.Join(dir, "identity"), filepath.Join(dir, "webhook")
	for _, d := range []string{identityDir, webhookDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, identityDir, map[string][]byte{"ca.crt": certs.TrustAnchorsPEM, "tls.crt": certs.IssuerCertPEM, "tls.key": certs.IssuerKeyPEM})
	writeFiles(t, webhookDir, map[string][]byte{"ca.crt": certs.WebhookCAPEM, "tls.crt": certs.WebhookCertPEM, "tls.key": certs.WebhookKeyPEM})
	tokenFile := filepath.Join(dir, "token")
	writeFiles(t, dir, map[string][]byte{"token": []byte("tok\n")})

	httpAddr, webhookAddr := freeAddr(t), freeAddr(t)
	var o options
	fs := newFlagSet(&o)
	if err := fs.Parse([]string{"--source=kubernetes", "--kubeconfig=" + kubeconfig, "--namespace=weft",
		"--grpc-addr=" + freeAddr(t), "--http-addr=" + httpAddr, "--webhook-addr=" + webhookAddr,
		"--webhook-tls-dir=" + webhookDir, "--identity-dir=" + identityDir, "--token-file=" + tokenFile,
		"--proxy-image=example.invalid/weft-proxy:v1", "--proxy-cpu-request=100m", "--leader-elect", "--log-level=error"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, o) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(hangGuard):
			t.Error("run did not return after its context ended")
		}
	}()

	t.Run("the anchors of --identity-dir reach every namespace", func(t *testing.T) {
		eventually(ctx, t, "the trust anchors in default", func() string {
			cm, err := client.CoreV1().ConfigMaps("default").Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if cm.Data[inject.AnchorsKey] != string(certs.TrustAnchorsPEM) {
				return "anchors that are not --identity-dir's"
			}
			return ""
		})
	})
	t.Run("the HTTP API serves", func(t *testing.T) {
		eventually(ctx, t, "the HTTP API", func() string {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/v1/status", nil)
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
		})
	})
	t.Run("the webhook serves the install's certificate", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certs.WebhookCAPEM)
		eventually(ctx, t, "the webhook", func() string {
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "weft-controller.weft.svc"}}
			conn, err := d.DialContext(ctx, "tcp", webhookAddr)
			if err != nil {
				return err.Error()
			}
			conn.Close()
			return ""
		})
	})
}
