// Package kubetest starts a real etcd and kube-apiserver for tests, on
// loopback ports, with their data in the test's temporary directory, and
// returns an admin rest.Config. The binaries are built by
// test/kube/build.sh (scripts/test.sh runs it) into the directory named by
// WEFT_KUBE_BIN_DIR (default ~/.cache/weft-kube/v1.37.2).
//
// Only tests import kubetest. Start may be called from several tests at
// once; each call starts its own pair of processes.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version test/kube/build.sh builds.
const Version = "v1.37.2"

// EnvBinDir names the directory holding kube-apiserver and etcd.
const EnvBinDir = "WEFT_KUBE_BIN_DIR"

// ServiceCIDR is the API server's service range (a benchmarking range:
// nothing here routes anywhere).
const ServiceCIDR = "198.19.0.0/16"

// startTimeout bounds how long the API server may take to become ready on
// a loaded machine; it is a hang guard, not a performance threshold.
const startTimeout = 3 * time.Minute

// BinDir returns the directory of the binaries.
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "weft-kube", Version)
	}
	return filepath.Join(home, ".cache", "weft-kube", Version)
}

// Cluster is a running API server.
type Cluster struct {
	// Config authenticates as an administrator (group system:masters).
	Config *rest.Config
	// Dir holds the processes' data and logs.
	Dir string
}

// Start runs etcd and kube-apiserver until the test ends. Without the
// binaries the test fails with the command that builds them; under
// `go test -short` it is skipped instead.
func Start(t testing.TB) *Cluster {
	t.Helper()
	dir := BinDir()
	etcdBin, apiBin := filepath.Join(dir, "etcd"), filepath.Join(dir, "kube-apiserver")
	for _, b := range []string{etcdBin, apiBin} {
		if _, err := os.Stat(b); err != nil {
			msg := fmt.Sprintf("%s is missing: build the test binaries with `test/kube/build.sh %s` (a few minutes, cached; scripts/test.sh does it)", b, dir)
			if testing.Short() {
				t.Skip(msg)
			}
			t.Fatal(msg)
		}
	}
	work := t.TempDir()
	c := &Cluster{Dir: work}

	etcdClient, etcdPeer := freePort(t), freePort(t)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	startProcess(t, work, "etcd", etcdBin,
		"--name=weft-test",
		"--data-dir="+filepath.Join(work, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=weft-test="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	)

	pki := filepath.Join(work, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM := writeServingCert(t, pki)
	writeServiceAccountKey(t, pki)
	token := randomHex(t)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(token+",weft-test-admin,weft-test-admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	exited := startProcess(t, work, "kube-apiserver", apiBin,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1",
		// The address the kubernetes Service would point at may not be a
		// loopback one; nothing uses it here (no reconciler, no pods), so it
		// is one of the benchmarking range that routes nowhere.
		"--advertise-address=198.18.255.254", "--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(work, "apiserver-certs"),
		"--tls-cert-file="+filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(pki, "serving.key"),
		"--token-auth-file="+filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range="+ServiceCIDR,
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	)
	c.Config = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(port),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		// Deprecation warnings (old TrafficSplit versions) are expected.
		WarningHandler: rest.NoWarnings{},
		QPS:            100,
		Burst:          200,
	}
	waitReady(t, c, exited)
	return c
}

// waitReady polls /readyz until the API server answers 200.
func waitReady(t testing.TB, c *Cluster, exited <-chan struct{}) {
	t.Helper()
	client, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, body.String())
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			t.Fatalf("kube-apiserver exited before it was ready; log:\n%s", tail(filepath.Join(c.Dir, "kube-apiserver.log")))
		case <-ctx.Done():
			t.Fatalf("kube-apiserver not ready after %v (last answer: %s); logs in %s:\n%s", startTimeout, last, c.Dir, tail(filepath.Join(c.Dir, "kube-apiserver.log")))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startProcess runs bin in its own process group, logging to
// dir/name.log; on cleanup it sends SIGTERM, then SIGKILL after a short
// grace (kube-apiserver may ignore SIGTERM for tens of seconds). The
// channel it returns is closed when the process exits.
func startProcess(t testing.TB, dir, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		defer logFile.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return
		case <-time.After(3 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
	})
	// A process that exits at once (bad flag, port taken) fails the test
	// with its log rather than a readiness timeout.
	select {
	case <-done:
		t.Fatalf("%s exited at start: %v; log:\n%s", name, waitErr, tail(logPath))
	case <-time.After(300 * time.Millisecond):
	}
	return done
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeServingCert writes a self-signed serving certificate for 127.0.0.1
// (serving.crt, serving.key) and returns it as the client's CA.
func writeServingCert(t testing.TB, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft-test-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	writeFile(t, filepath.Join(dir, "serving.crt"), certPEM)
	writeFile(t, filepath.Join(dir, "serving.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return certPEM
}

// writeServiceAccountKey writes the key pair that signs service-account
// tokens (sa.key, sa.pub).
func writeServiceAccountKey(t testing.TB, dir string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
