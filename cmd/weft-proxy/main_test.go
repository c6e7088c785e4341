package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/control/identity/identitytest"
	"weft.dev/weft/internal/proxy/discovery/discoverytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hangGuard bounds waits that only a broken binary would exhaust.
const hangGuard = time.Minute

// build compiles weft-proxy into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weft-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestBadFlagsExit2(t *testing.T) {
	bin := build(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "--id is required"},
		{"no trust anchors", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1"}, "--trust-anchors is required"},
		{"no token", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1"}, "--token-file is required"},
		{"missing anchors file", []string{"--trust-anchors", "/nonexistent/anchors.pem"}, "--trust-anchors: open /nonexistent/anchors.pem"},
		{"no controller", []string{"--id", "web-0", "--service", "web"}, "--controller is required"},
		{"bad inbound", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1", "--inbound", "nonsense"}, "want LISTEN=APP[/PROTO]"},
		{"bad protocol", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1", "--outbound", "127.0.0.1:0=api/smtp"}, `unknown protocol "smtp"`},
		{"unknown flag", []string{"--frobnicate"}, "flag provided but not defined"},
		{"bad opaque ports", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1", "--opaque-ports", "3306,mysql"}, `--opaque-ports: "mysql" is not a port`},
		{"capture without a port", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1", "--inbound-capture", "0.0.0.0"}, "--inbound-capture"},
		{"init bad skip ports", []string{"init", "--skip-inbound-ports=4191,9092-9090"}, `--skip-inbound-ports: range "9092-9090" ends before it starts`},
		{"init bad cidr", []string{"init", "--skip-outbound-cidrs=10.0.0.0/33"}, `--skip-outbound-cidrs: "10.0.0.0/33" is not a network`},
		{"init bad port", []string{"init", "--inbound-port=70000"}, "--inbound-port 70000: not a port"},
		{"init same ports", []string{"init", "--inbound-port=4140"}, "--inbound-port and --outbound-port are both 4140"},
		{"bad log format", []string{"--id", "a", "--service", "web", "--controller", "127.0.0.1:1", "--log-format", "xml"}, "--log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("got %v, want exit status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeAndSIGTERM runs the binary as a user would: one proxy whose
// outbound port reaches its own inbound port (meshed), in front of an
// HTTP application; then SIGTERM drains it and it exits 0.
func TestServeAndSIGTERM(t *testing.T) {
	bin := build(t)
	pki := identitytest.New(t, 0)
	ctl := discoverytest.New()
	ctl.Serve(pki.Register, pki.ServerOption())
	ctlAddr, err := ctl.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Stop()
	dir := t.TempDir()
	anchors, token := filepath.Join(dir, "anchors.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(anchors, pki.AnchorPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte(pki.Token(t, "api")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	})}
	go app.Serve(appLn)
	defer app.Close()

	admin, in, out := freePort(t), freePort(t), freePort(t)
	ctl.SetInbound("api-0", &meshv1.InboundSnapshot{Version: 1, Known: true, Service: "api.default"})
	ctl.SetDestination("api", &meshv1.DestinationSnapshot{Authority: "api", Version: 1, Exists: true, Service: "api.default",
		Backends: []*meshv1.Backend{{Service: "api.default", Weight: 1, Endpoints: []*meshv1.Endpoint{{Address: in, Meshed: true, Identity: identitytest.ID("api")}}}}})

	cmd := exec.Command(bin, "--id", "api-0", "--service", "api", "--controller", ctlAddr, "--admin", admin,
		"--inbound", in+"="+appLn.Addr().String(), "--outbound", out+"=api", "--log-format", "json",
		"--trust-anchors", anchors, "--token-file", token)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(hangGuard):
		}
	}()

	client := &http.Client{Timeout: hangGuard, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) (int, string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(hangGuard)
	for {
		code, body, err := get("http://" + admin + "/ready")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %d %q %v\nlogs:\n%s", code, body, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body, err := get("http://" + out + "/")
	if err != nil || code != 200 || body != "hello from "+out {
		t.Fatalf("through the proxy: %d %q %v", code, body, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nlogs:\n%s", err, logs.String())
		}
		exited <- nil
	case <-time.After(hangGuard):
		t.Fatalf("still running after SIGTERM\nlogs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"draining"`) {
		t.Errorf("logs do not show a drain:\n%s", logs.String())
	}
}

func TestGCPercentDefaultUnlessGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	setGCPercent()
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("without $GOGC: GC percent %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(77)
	setGCPercent()
	if got := debug.SetGCPercent(100); got != 77 {
		t.Errorf("with $GOGC set: GC percent changed to %d", got)
	}
}
