package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/control/push"
)

// The capture test's network: namespace C routes between A and B and
// hosts the controller, a plain client and servers outside the mesh.
//
//	A 198.18.1.2 ── 198.18.1.1 C 198.18.2.1 ── 198.18.2.2 B
//	                C also owns 198.18.3.1 (a skipped network)
const (
	ipA, ipCA, ipCB, ipB = "198.18.1.2", "198.18.1.1", "198.18.2.1", "198.18.2.2"
	ipSkipped            = "198.18.3.1"
	clusterIPB           = "198.18.9.9" // service b's virtual IP: only the proxy resolves it
	proxyUID             = 2102
)

var nsCounter atomic.Int32

// netnsNames returns names unique to this test run.
func netnsNames() (a, b, c string) {
	n := fmt.Sprintf("%d%d", os.Getpid()%100000, nsCounter.Add(1))
	return "wcapa" + n, "wcapb" + n, "wcapc" + n
}

// runCmd runs a command and fails the test with its output on error.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on an OS thread that has entered network namespace ns:
// sockets it opens and processes it starts live there.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and ends with this goroutine.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	return ln
}

// serveHTTP answers every request with "<name> <path> from <remote address>".
func serveHTTP(t *testing.T, ln net.Listener, name string) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s from %s", name, r.URL.Path, r.RemoteAddr)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// serveBanner is a server-first protocol: it greets with "HELLO\n", then
// answers every line upper-cased.
func serveBanner(t *testing.T, ln net.Listener) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, "HELLO\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					io.WriteString(c, strings.ToUpper(sc.Text())+"\n")
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// curl runs curl in namespace ns; it returns the body, or an error with
// curl's exit status and stderr.
func curl(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "curl", "-sS", "--max-time", "30"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("curl %s in %s: %w: %s", strings.Join(args, " "), ns, err, stderr.String())
	}
	return string(out), nil
}

// metric sums the samples of name whose labels include every pair of
// labels, in Prometheus text.
func metric(text, name string, labels map[string]string) float64 {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line[:end], k+`="`+v+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64); err == nil {
			sum += v
		}
	}
	return sum
}

// proxyProc is a weft-proxy running in a namespace as the proxy's uid.
type proxyProc struct {
	ns   string
	cmd  *exec.Cmd
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (p *proxyProc) metrics(t *testing.T) string {
	t.Helper()
	out, err := curl(p.ns, "http://127.0.0.1:4191/metrics")
	if err != nil {
		t.Fatalf("%v\nproxy logs:\n%s", err, p.logs)
	}
	return out
}

// TestTransparentCapture runs `weft-proxy init` and two proxies in network
// namespaces, as the injector sets a pod up, with the controller's push
// server (memory source) and CA, and sends real curl traffic: captured
// and carried over mutual TLS (by pod IP and by cluster IP), a plain
// client through the inbound capture, an opaque port, a destination
// outside the mesh passed through, skipped ports and networks bypassing
// the proxy, and a connection to the capture port itself refused.
func TestTransparentCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, iptables, running proxies as uid 2102")
	}
	for _, tool := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		if _, err := exec.LookPath("xtables-nft-multi"); err != nil {
			t.Skip("needs iptables (apt-get install iptables)")
		}
	}
	bin := build(t)
	dir := filepath.Dir(bin)
	// The proxy runs as uid 2102: it must reach its binary and files.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// ---- network ----
	nsA, nsB, nsC := netnsNames()
	for _, ns := range []string{nsA, nsB, nsC} {
		runCmd(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		runCmd(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	link := func(ns, ifc, addr, peerIfc, peerAddr string) {
		runCmd(t, "ip", "link", "add", ifc, "netns", ns, "type", "veth", "peer", "name", peerIfc, "netns", nsC)
		runCmd(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", ifc)
		runCmd(t, "ip", "-n", nsC, "addr", "add", peerAddr+"/24", "dev", peerIfc)
		runCmd(t, "ip", "-n", ns, "link", "set", ifc, "up")
		runCmd(t, "ip", "-n", nsC, "link", "set", peerIfc, "up")
		runCmd(t, "ip", "-n", ns, "route", "add", "default", "via", peerAddr)
	}
	link(nsA, "eth0", ipA, "va", ipCA)
	link(nsB, "eth0", ipB, "vb", ipCB)
	runCmd(t, "ip", "-n", nsC, "addr", "add", ipSkipped+"/32", "dev", "lo")
	runCmd(t, "ip", "netns", "exec", nsC, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	// ---- applications ----
	serveHTTP(t, listenIn(t, nsB, "0.0.0.0:8080"), "b")
	serveHTTP(t, listenIn(t, nsB, "0.0.0.0:8090"), "b-skipped")
	serveBanner(t, listenIn(t, nsB, "0.0.0.0:3306"))
	serveHTTP(t, listenIn(t, nsC, ipCA+":9000"), "outside")
	serveHTTP(t, listenIn(t, nsC, ipCA+":9001"), "outside-skipped-port")
	serveHTTP(t, listenIn(t, nsC, ipSkipped+":9000"), "outside-skipped-cidr")

	// ---- controller: push server on a memory source, and the CA ----
	pki := identitytest.New(t, 0)
	store := memory.New(identitytest.TrustDomain)
	idB := identitytest.ID("b")
	store.SetService(config.Service{Name: "a"})
	store.SetService(config.Service{
		Name: "b", ClusterIPs: []string{clusterIPB},
		Ports: []config.ServicePort{{Name: "http", Port: 80, TargetPort: "8080"}, {Name: "mysql", Port: 3306, TargetPort: "3306"}},
		Endpoints: []config.Endpoint{
			{Address: ipB + ":8080", PortName: "http", Meshed: true, Identity: idB, Ready: true},
			{Address: ipB + ":3306", PortName: "mysql", Meshed: true, Identity: idB, Ready: true},
		},
	})
	store.SetProxy(config.Proxy{ID: "a-0", Service: "a", Namespace: "default"})
	store.SetProxy(config.Proxy{ID: "b-0", Service: "b", Namespace: "default", Ports: []config.InboundPort{{Port: 8080}, {Port: 3306}}})
	docs, err := file.Decode([]byte(`apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: b-http}
spec:
  podSelector: {service: b}
  port: 8080
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: b-callers}
spec:
  targetRef: {kind: Server, name: b-http}
  rules:
  - from: {serviceAccounts: [{name: a}]}
    to: {paths: ["/mtls/*"]}
  - from: {unauthenticated: true}
    to: {paths: ["/public/*"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(docs); err != nil {
		t.Fatal(err)
	}
	pushSrv := push.New(store, push.Config{Debounce: time.Millisecond})
	g := grpc.NewServer(pki.ServerOption())
	pki.Register(g)
	pushSrv.Register(g)
	ctlLn := listenIn(t, nsC, ipCA+":0")
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(ctlLn) }()
	t.Cleanup(func() {
		pushSrv.Shutdown()
		g.Stop()
		<-served
	})

	// ---- iptables, as the injector's init container runs it ----
	runCmd(t, "ip", "netns", "exec", nsA, bin, "init", "--proxy-uid=2102", "--inbound-port=4143", "--outbound-port=4140",
		"--skip-inbound-ports=4191", "--skip-outbound-ports=9001", "--skip-outbound-cidrs=198.18.3.0/24")
	runCmd(t, "ip", "netns", "exec", nsB, bin, "init", "--proxy-uid=2102", "--inbound-port=4143", "--outbound-port=4140",
		"--skip-inbound-ports=4191,8090")
	// Running it again changes nothing.
	runCmd(t, "ip", "netns", "exec", nsB, bin, "init", "--proxy-uid=2102", "--inbound-port=4143", "--outbound-port=4140",
		"--skip-inbound-ports=4191,8090")
	if saved := runCmd(t, "ip", "netns", "exec", nsB, "iptables-save", "-t", "nat"); strings.Count(saved, "-j WEFT_PREROUTING") != 1 {
		t.Errorf("after two inits:\n%s", saved)
	}

	// ---- proxies, as uid 2102 ----
	start := func(ns, sa string) *proxyProc {
		anchors, token := filepath.Join(dir, sa+"-anchors.pem"), filepath.Join(dir, sa+"-token")
		if err := os.WriteFile(anchors, pki.AnchorPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(token, []byte(pki.Token(t, sa)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(token, proxyUID, proxyUID); err != nil {
			t.Fatal(err)
		}
		p := &proxyProc{ns: ns, logs: &syncBuffer{}}
		p.cmd = exec.Command(bin, "--id="+sa+"-0", "--service="+sa, "--namespace=default", "--service-account="+sa,
			"--controller="+ctlLn.Addr().String(), "--trust-anchors="+anchors, "--token-file="+token,
			"--admin=0.0.0.0:4191", "--inbound-capture=0.0.0.0:4143", "--outbound-capture=127.0.0.1:4140",
			"--opaque-ports=3306", "--log-format=json", "--log-level=debug")
		p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: proxyUID, Gid: proxyUID}}
		if err := inNetns(ns, p.cmd.Start); err != nil {
			t.Fatalf("start proxy %s: %v", sa, err)
		}
		exited := make(chan struct{})
		go func() { p.cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(hangGuard):
				p.cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("proxy %s logs:\n%s", sa, p.logs)
			}
		})
		return p
	}
	proxyA, proxyB := start(nsA, "a"), start(nsB, "b")
	for _, p := range []*proxyProc{proxyA, proxyB} {
		deadline := time.Now().Add(hangGuard)
		for {
			out, err := curl(p.ns, "-f", "http://127.0.0.1:4191/ready")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxy in %s never ready: %v %s\nlogs:\n%s", p.ns, err, out, p.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// ---- traffic ----
	expect := func(what, ns string, wantPrefix string, args ...string) string {
		t.Helper()
		body, err := curl(ns, args...)
		if err != nil || !strings.HasPrefix(body, wantPrefix) {
			t.Fatalf("%s: got %q, %v; want a body starting %q", what, body, err, wantPrefix)
		}
		return body
	}

	// A's app calls B's pod IP: captured, mutual TLS, B's inbound capture
	// serves it to B's app on 127.0.0.1 with A's identity authorized.
	body := expect("pod IP", nsA, "b /mtls/who from 127.0.0.1:", "-f", "http://"+ipB+":8080/mtls/who")
	t.Logf("pod IP: %s", body)
	// By the service's cluster IP: the controller resolves it.
	expect("cluster IP", nsA, "b /mtls/who from 127.0.0.1:", "-f", "http://"+clusterIPB+"/mtls/who")
	ma, mb := proxyA.metrics(t), proxyB.metrics(t)
	if n := metric(ma, "weft_requests_total", map[string]string{"direction": "outbound", "service": "b.default", "tls": "true"}); n < 2 {
		t.Errorf("A's outbound mTLS requests to b: %v, want 2\n%s", n, ma)
	}
	if n := metric(mb, "weft_requests_total", map[string]string{"direction": "inbound", "service": "b.default", "tls": "true"}); n < 2 {
		t.Errorf("B's inbound mTLS requests: %v, want 2", n)
	}
	// The policy allows /mtls/* to service account a only: B saw A's
	// SPIFFE identity.
	if n := metric(mb, "weft_authz_allow_total", map[string]string{"policy": "default/b-callers"}); n < 2 {
		t.Errorf("B's allowed requests by policy b-callers: %v, want 2\n%s", n, mb)
	}

	t.Logf("A outbound mTLS requests to b: %v; B inbound mTLS: %v; allowed by b-callers: %v",
		metric(ma, "weft_requests_total", map[string]string{"direction": "outbound", "service": "b.default", "tls": "true"}),
		metric(mb, "weft_requests_total", map[string]string{"direction": "inbound", "service": "b.default", "tls": "true"}),
		metric(mb, "weft_authz_allow_total", map[string]string{"policy": "default/b-callers"}))

	// A plain client outside the mesh reaches B's app port through B's
	// inbound capture (permissive, plaintext), without an identity.
	expect("plain client", nsC, "b /public/who from 127.0.0.1:", "-f", "http://"+ipB+":8080/public/who")
	if code, err := curl(nsC, "-o", "/dev/null", "-w", "%{http_code}", "http://"+ipB+":8080/mtls/who"); err != nil || code != "403" {
		t.Errorf("plain client on an identity-only path: %q %v, want 403", code, err)
	}
	mb = proxyB.metrics(t)
	if n := metric(mb, "weft_requests_total", map[string]string{"direction": "inbound", "service": "b.default", "tls": "false"}); n < 2 {
		t.Errorf("B's inbound plaintext requests: %v, want 2", n)
	}

	// An opaque port: server-first bytes flow through both proxies.
	var conn net.Conn
	if err := inNetns(nsA, func() (err error) {
		conn, err = net.DialTimeout("tcp", ipB+":3306", hangGuard)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(hangGuard))
	rd := bufio.NewReader(conn)
	if line, err := rd.ReadString('\n'); err != nil || line != "HELLO\n" {
		t.Fatalf("banner through the proxies: %q %v", line, err)
	}
	io.WriteString(conn, "ping\n")
	if line, err := rd.ReadString('\n'); err != nil || line != "PING\n" {
		t.Fatalf("echo through the proxies: %q %v", line, err)
	}
	conn.Close()
	ma = proxyA.metrics(t)
	if n := metric(ma, "weft_tcp_open_total", map[string]string{"direction": "outbound", "service": "b.default", "tls": "true"}); n < 1 {
		t.Errorf("A's opaque mTLS connections to b: %v", n)
	}

	// A destination the mesh does not know passes through unchanged.
	expect("passthrough", nsA, "outside /x from "+ipA+":", "-f", "http://"+ipCA+":9000/x")
	passthrough := func() float64 {
		return metric(proxyA.metrics(t), "weft_tcp_open_total", map[string]string{"direction": "outbound", "service": "passthrough"})
	}
	before := passthrough()
	if before < 1 {
		t.Errorf("passthrough connections counted: %v", before)
	}
	// Skipped ports and networks bypass the proxy altogether.
	expect("skipped port", nsA, "outside-skipped-port /y from "+ipA+":", "-f", "http://"+ipCA+":9001/y")
	expect("skipped network", nsA, "outside-skipped-cidr /z from "+ipA+":", "-f", "http://"+ipSkipped+":9000/z")
	if after := passthrough(); after != before {
		t.Errorf("skipped traffic went through the proxy: passthrough %v -> %v", before, after)
	}
	// A skipped inbound port reaches B's app directly (from C's address,
	// not from the proxy on 127.0.0.1).
	expect("skipped inbound port", nsC, "b-skipped /w from "+ipCB+":", "-f", "http://"+ipB+":8090/w")

	// A connection to the inbound capture port itself is refused.
	if out, err := curl(nsC, "http://"+ipB+":4143/"); err == nil {
		t.Errorf("the capture port served a connection sent to it directly: %q", out)
	}

	// Cleanup removes the rules.
	runCmd(t, "ip", "netns", "exec", nsA, bin, "init", "--cleanup")
	if saved := runCmd(t, "ip", "netns", "exec", nsA, "iptables-save", "-t", "nat"); strings.Contains(saved, "WEFT") {
		t.Errorf("after --cleanup:\n%s", saved)
	}
}
