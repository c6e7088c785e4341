package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// lineWatcher collects a child's output and lets a test wait for a line.
type lineWatcher struct {
	mu    sync.Mutex // guards lines
	lines []string
	more  chan struct{}
}

func watchLines(r io.Reader) *lineWatcher {
	w := &lineWatcher{more: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

func (w *lineWatcher) find(re *regexp.Regexp) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

func (w *lineWatcher) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

func (w *lineWatcher) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration, exited <-chan struct{}) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := w.find(re); m != nil {
			return m
		}
		select {
		case <-w.more:
		case <-exited:
			time.Sleep(100 * time.Millisecond) // let the reader drain
			if m := w.find(re); m != nil {
				return m
			}
			t.Fatalf("weft up exited before printing %q; output:\n%s", re, w.text())
		case <-deadline:
			t.Fatalf("no line matching %q after %s; output:\n%s", re, timeout, w.text())
		}
	}
}

// weftCLI runs the CLI binary built for the test and returns its stdout.
func weftCLI(t *testing.T, bin, stateDir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--state-dir", stateDir)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("weft %s: %w\n%s", strings.Join(args, " "), err, ee.Stderr)
	}
	return string(out), err
}

type statJSON struct {
	Services []struct {
		Name        string   `json:"name"`
		Instances   int      `json:"instances"`
		Meshed      int      `json:"meshed"`
		RPS         float64  `json:"rps"`
		SuccessRate *float64 `json:"success_rate"`
		P99Ms       *float64 `json:"p99_ms"`
	} `json:"services"`
}

func TestLocalModeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the whole local mesh")
	}
	root := repoRoot(t)
	stateDir := t.TempDir()
	weftBin := filepath.Join(t.TempDir(), "weft")
	build := exec.Command("go", "build", "-o", weftBin, "./cmd/weft")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/weft: %v\n%s", err, out)
	}

	// Exactly as the README says, with a state directory of the test's own.
	up := exec.Command("go", "run", "./cmd/weft", "up", "--state-dir", stateDir)
	up.Dir = root
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	up.Stdout = pw
	up.Stderr = pw
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	out := watchLines(pr)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = up.Wait(); pw.Close(); close(exited) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			for _, pid := range ProcessesMentioning(stateDir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			<-exited
		}
	})

	m := out.waitFor(t, regexp.MustCompile(`(http://127\.0\.0\.1:\d+/)`), 8*time.Minute, exited)
	frontURL := m[1]
	out.waitFor(t, regexp.MustCompile(`Ctrl-C`), time.Minute, exited)
	t.Logf("demo front end at %s", frontURL)

	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 20 {
		resp, err := client.Get(frontURL)
		if err != nil {
			t.Fatalf("request %d to the front end: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
			t.Fatalf("request %d: status %d, body %.200q", i, resp.StatusCode, body)
		}
	}

	// weft stat shows every demo service with a non-zero request rate,
	// read from the proxies' metrics (the load generator keeps traffic up).
	want := []string{"web", "api", "quotes"}
	var stat statJSON
	deadline := time.Now().Add(90 * time.Second)
	for {
		js, err := weftCLI(t, weftBin, stateDir, "stat", "-o", "json", "--window", "20s")
		if err == nil {
			stat = statJSON{}
			err = json.Unmarshal([]byte(js), &stat)
		}
		missing := missingTraffic(stat, want)
		if err == nil && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft stat: services without traffic: %v (err %v); last output: %+v", missing, err, stat)
		}
		time.Sleep(2 * time.Second)
	}
	table, err := weftCLI(t, weftBin, stateDir, "stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range want {
		if !regexp.MustCompile(`(?m)^` + s + `\s`).MatchString(table) {
			t.Errorf("weft stat table has no row for %s:\n%s", s, table)
		}
	}

	check, err := weftCLI(t, weftBin, stateDir, "check")
	if err != nil {
		t.Fatalf("weft check failed on a healthy mesh: %v\n%s", err, check)
	}
	if !strings.Contains(check, "√") && !strings.Contains(check, "✔") {
		t.Errorf("weft check printed no ✔ line:\n%s", check)
	}

	applied, err := weftCLI(t, weftBin, stateDir, "apply", "-f", filepath.Join(root, "examples/demo/canary.yaml"))
	if err != nil {
		t.Fatalf("weft apply canary: %v", err)
	}
	if !strings.Contains(applied, "created") && !strings.Contains(applied, "configured") {
		t.Errorf("weft apply printed %q", applied)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {name: broken}\nspec:\n  service: api\n  backends:\n  - service: api-v1\n    weight: -3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := weftCLI(t, weftBin, stateDir, "apply", "-f", bad); err == nil || !strings.Contains(err.Error()+msg, "weight") {
		t.Errorf("weft apply of a negative weight: err %v, output %q; want an error naming the weight", err, msg)
	}

	killOneReplica(t, client, frontURL, stateDir, out)

	pids := ProcessesMentioning(stateDir)
	if len(pids) < 8 {
		t.Fatalf("only %d processes mention the state dir; want the demo's apps and proxies", len(pids))
	}

	// Ctrl-C stops everything.
	stopped = true
	if err := syscall.Kill(-up.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("weft up did not stop within 60s of SIGINT; output:\n%s", out.text())
	}
	// `go run` itself exits 1 when it receives SIGINT while its child
	// runs (cmd/go sets the status on interrupt), so weft's own clean stop
	// is read from what it prints, as a user would.
	if ee, ok := waitErr.(*exec.ExitError); waitErr != nil && (!ok || ee.ExitCode() != 1) {
		t.Errorf("weft up exited with %v after SIGINT; output:\n%s", waitErr, out.text())
	}
	if out.find(regexp.MustCompile(`^stopped\.$`)) == nil {
		t.Errorf("weft up did not report a clean stop after SIGINT; output:\n%s", out.text())
	}
	if left := ProcessesMentioning(stateDir); len(left) > 0 {
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("processes left after weft up stopped: %v", left)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil && !isZombie(pid) {
			t.Errorf("pid %d still alive after weft up stopped", pid)
		}
	}
}

func missingTraffic(s statJSON, want []string) []string {
	var missing []string
	for _, name := range want {
		ok := false
		for _, svc := range s.Services {
			if svc.Name == name && svc.RPS > 0 {
				ok = true
			}
		}
		if !ok {
			missing = append(missing, name)
		}
	}
	return missing
}

// killOneReplica kills one instance of the web front end while a client
// keeps sending requests, and checks that once the supervisor has seen the
// exit (and removed the endpoint) every request succeeds: the proxies stop
// sending to the dead replica. Requests that were in flight at the moment
// of the kill may fail.
func killOneReplica(t *testing.T, client *http.Client, frontURL, stateDir string, out *lineWatcher) {
	t.Helper()
	bin := filepath.Join(stateDir, "bin", "web")
	var replicas []int
	for _, pid := range ProcessesMentioning(bin) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.HasPrefix(string(cmdline), bin+"\x00") {
			replicas = append(replicas, pid)
		}
	}
	if len(replicas) != 2 {
		t.Fatalf("found %d web replicas (%v), want 2", len(replicas), replicas)
	}
	before := webVersion(t, stateDir)
	if err := syscall.Kill(replicas[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, regexp.MustCompile(`exited.*restarting`), 30*time.Second, nil)
	// The removal travels controller -> proxies through a debounced push:
	// wait until the ingress proxy has applied a newer snapshot of web.
	for deadline := time.Now().Add(15 * time.Second); webVersion(t, stateDir) <= before; {
		if time.Now().After(deadline) {
			t.Fatalf("the ingress proxy never received a new snapshot of web.default after a replica was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	failed := 0
	for i := range 100 {
		resp, err := client.Get(frontURL)
		if err != nil {
			t.Errorf("request %d after the replica was removed: %v", i, err)
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			t.Errorf("request %d after the replica was removed: status %d (%s)", i, resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"))
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 100 requests failed after a killed replica was removed", failed)
	}
}

// webVersion returns the version of the web.default snapshot that the
// ingress proxy applied, read from its admin /status as `weft check` does.
func webVersion(t *testing.T, stateDir string) uint64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(stateDir, "controller.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ctl struct {
		HTTPAddr string `json:"http_addr"`
		Token    string `json:"token"`
	}
	if err := json.Unmarshal(raw, &ctl); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+ctl.HTTPAddr+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+ctl.Token)
	var status struct {
		Proxies []struct {
			ID        string `json:"id"`
			AdminAddr string `json:"admin_addr"`
		} `json:"proxies"`
	}
	getJSON(t, req, &status)
	for _, p := range status.Proxies {
		if p.ID != "ingress-web" {
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.AdminAddr+"/status", nil)
		var ps struct {
			Destinations map[string]struct {
				Version uint64 `json:"version"`
			} `json:"destinations"`
		}
		getJSON(t, req, &ps)
		return ps.Destinations["web.default"].Version
	}
	t.Fatalf("no ingress-web proxy in the controller's status")
	return 0
}

func getJSON(t *testing.T, req *http.Request, v any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", req.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", req.URL, err)
	}
}
