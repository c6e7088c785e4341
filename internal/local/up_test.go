package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/local/statedir"
)

// syncBuffer is a bytes.Buffer safe for the writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// childrenOf returns the PIDs of the live processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// TestUp runs the whole of `weft up -f` with the real embedded controller:
// fake applications and proxies (this test binary) stand in for the
// programs.
func TestUp(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// weft-proxy "next to weft": a link to this test binary.
	weftDir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(weftDir, "weft-proxy")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "proxy") // children inherit it; applications override it
	ports := newFreePorts()
	expose, _ := ports.next()
	httpPort, _ := ports.next()
	grpcPort, _ := ports.next()
	meshFile := filepath.Join(t.TempDir(), "mesh.yaml")
	mesh := fmt.Sprintf(`apiVersion: local.weft.dev/v1alpha1
kind: Mesh
metadata: {name: test}
spec:
  expose:
  - service: api
    port: %d
  workloads:
  - name: api
    version: v1
    command: [%q]
    replicas: 2
    protocol: http1
    env: {%s: app}
    ready: {httpGet: /healthz}
  - name: load
    command: [%q]
    calls: [api]
    env: {%s: client}
`, expose, exe, childEnv, exe, childEnv)
	if err := os.WriteFile(meshFile, []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	opts := Options{
		MeshFile: meshFile, StateDir: stateDir,
		HTTPAddr: loopback(httpPort), GRPCAddr: loopback(grpcPort),
		ReadyTimeout: 2 * time.Minute, WorkDir: t.TempDir(),
		Executable: filepath.Join(weftDir, "weft"), Timing: fastTiming,
	}
	var out syncBuffer
	opts.Out = &out

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Up(ctx, opts) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	deadline := time.After(3 * time.Minute)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-done:
			t.Fatalf("Up returned %v before ready; output:\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("not ready; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if want := fmt.Sprintf(" http://127.0.0.1:%d/\n", expose); !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}

	// A second weft up on the same state directory fails at once.
	second := opts
	second.Out = &syncBuffer{}
	var running *statedir.AlreadyRunningError
	if err := Up(context.Background(), second); !errors.As(err, &running) {
		t.Errorf("second Up = %v, want *statedir.AlreadyRunningError", err)
	}

	// The CLI's view: controller.json leads to the controller, which has
	// every service with its ready endpoints.
	c, err := statedir.ReadController(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ctlapi.New(c.HTTPAddr, c.Token, nil).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]int{}
	for _, s := range st.Services {
		ready[s.Name] = s.Ready
	}
	if ready["api"] != 2 || ready["api-v1"] != 2 || ready["load"] != 1 {
		t.Errorf("ready endpoints %v, want api 2, api-v1 2, load 1", ready)
	}
	if len(st.Proxies) != 4 {
		t.Errorf("%d proxies known to the controller, want 4 (api ×2, load, ingress): %+v", len(st.Proxies), st.Proxies)
	}
	for _, name := range []string{"api-v1-0.log", "api-v1-1.proxy.log", "load-0.log", "ingress-api.proxy.log", "weft-up.log"} {
		if _, err := os.Stat(filepath.Join(stateDir, "logs", name)); err != nil {
			t.Errorf("log file: %v", err)
		}
	}

	children := childrenOf(t, os.Getpid())
	if len(children) != 7 { // 3 applications, 4 proxies
		t.Errorf("%d children running, want 7: %v", len(children), children)
	}
	stopped = true
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Up = %v after cancel, want nil", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Up did not return within 2 minutes of cancel")
	}
	assertAllGone(t, children)
	if left := childrenOf(t, os.Getpid()); len(left) > 0 {
		t.Errorf("children left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "controller.json")); !os.IsNotExist(err) {
		t.Errorf("controller.json after stop: %v", err)
	}
	if statedir.Held(stateDir) {
		t.Error("state directory still locked after stop")
	}
}

func TestUpReadyTimeout(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	weftDir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(weftDir, "weft-proxy")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "proxy")
	ports := newFreePorts()
	httpPort, _ := ports.next()
	grpcPort, _ := ports.next()
	meshFile := filepath.Join(t.TempDir(), "mesh.yaml")
	// api is called, so it must accept connections, but never listens.
	mesh := fmt.Sprintf(`apiVersion: local.weft.dev/v1alpha1
kind: Mesh
metadata: {name: test}
spec:
  workloads:
  - name: api
    command: [%q]
    env: {%s: client}
  - name: load
    command: [%q]
    calls: [api]
    env: {%s: client}
`, exe, childEnv, exe, childEnv)
	if err := os.WriteFile(meshFile, []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	// Bounded: were api taken for ready, Up would serve until ctx ends and return nil.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = Up(ctx, Options{
		MeshFile: meshFile, StateDir: stateDir,
		HTTPAddr: loopback(httpPort), GRPCAddr: loopback(grpcPort),
		ReadyTimeout: 8 * time.Second, WorkDir: t.TempDir(),
		Executable: filepath.Join(weftDir, "weft"), Timing: fastTiming, Out: &syncBuffer{},
	})
	log := filepath.Join(stateDir, "logs", "api-0.log")
	// api-0 comes first; on a slow machine others may still be starting too.
	want := "not ready after 8s: api-0 (log: " + log + ")"
	if err == nil || !strings.HasPrefix(err.Error(), want) ||
		!strings.Contains(err.Error(), "; read the log files named, or raise --ready-timeout\nend of "+log+":\n") ||
		!strings.HasSuffix(err.Error(), "\n    fake client: serving nothing") {
		t.Errorf("Up = %v\nwant an error starting with %q and ending with the log", err, want)
	}
	if left := childrenOf(t, os.Getpid()); len(left) > 0 {
		t.Errorf("children left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "controller.json")); !os.IsNotExist(err) {
		t.Errorf("controller.json after a failed start: %v", err)
	}
	if statedir.Held(stateDir) {
		t.Error("state directory still locked after a failed start")
	}
}

func TestUpMissingProgram(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	weftDir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(weftDir, "weft-proxy")); err != nil {
		t.Fatal(err)
	}
	ports := newFreePorts()
	httpPort, _ := ports.next()
	grpcPort, _ := ports.next()
	meshDir := t.TempDir()
	meshFile := filepath.Join(meshDir, "mesh.yaml")
	mesh := "apiVersion: local.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: t}\nspec:\n  workloads:\n  - name: api\n    command: [./api-server]\n"
	if err := os.WriteFile(meshFile, []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	err = Up(context.Background(), Options{
		MeshFile: meshFile, StateDir: stateDir,
		HTTPAddr: loopback(httpPort), GRPCAddr: loopback(grpcPort),
		WorkDir: t.TempDir(), Executable: filepath.Join(weftDir, "weft"), Out: &syncBuffer{},
	})
	want := "api-0: program " + filepath.Join(meshDir, "api-server") + " not found ("
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Up = %v, want an error starting with %q", err, want)
	}
	if left := childrenOf(t, os.Getpid()); len(left) > 0 {
		t.Errorf("children left: %v", left)
	}
	if statedir.Held(stateDir) {
		t.Error("state directory still locked")
	}
}
