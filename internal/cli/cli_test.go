package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/local/statedir"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testToken = "test-token"

// fakeController serves the controller's HTTP API from fixed answers and
// records what it was sent.
type fakeController struct {
	status    string // JSON of /api/v1/status
	stat      string // JSON of /api/v1/stat
	resources string // JSON of /api/v1/resources
	identity  string // JSON of /api/v1/identity; "" answers 503
	edges     string // JSON of /api/v1/edges
	// applyStatus and applyBody answer POST /api/v1/apply.
	applyStatus int
	applyBody   string

	mu       sync.Mutex // guards requests and bodies
	requests []string
	bodies   []string
}

func (f *fakeController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.bodies = append(f.bodies, string(body))
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, `{"error":"wrong bearer token"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/status":
		fmt.Fprint(w, f.status)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/stat":
		fmt.Fprint(w, f.stat)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/identity":
		if f.identity == "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"this controller runs no certificate authority"}`)
			return
		}
		fmt.Fprint(w, f.identity)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/edges":
		fmt.Fprint(w, f.edges)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/resources":
		fmt.Fprint(w, f.resources)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/apply":
		w.WriteHeader(f.applyStatus)
		fmt.Fprint(w, f.applyBody)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v1/resources/"):
		fmt.Fprint(w, `{"deleted":{}}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintln(w, `{"error":"no such API"}`)
	}
}

func (f *fakeController) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// startMesh pretends a `weft up` runs in a new state directory with the
// controller at srv: it holds the lock and writes controller.json.
func startMesh(t *testing.T, srvURL, token string) string {
	t.Helper()
	dir := t.TempDir()
	lock, err := statedir.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Release() })
	addr := strings.TrimPrefix(srvURL, "http://")
	if err := statedir.WriteController(dir, statedir.Controller{HTTPAddr: addr, GRPCAddr: "127.0.0.1:1", Token: token, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCLI runs weft with args and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{
		stdout: &stdout, stderr: &stderr,
		proxyHTTP:    &http.Client{Timeout: 10 * time.Second},
		checkRetries: 1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := e.run(ctx, args)
	return stdout.String(), stderr.String(), code
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

const statJSON = `{"window":"30s","services":[
 {"name":"web","namespace":"default","instances":2,"meshed":2,"requests":150,"success_rate":0.9866,"rps":5,"p50_ms":3.21,"p95_ms":9.87,"p99_ms":41.2,"tcp_connections":4},
 {"name":"api","namespace":"default","instances":2,"meshed":2,"requests":300,"success_rate":1,"rps":10,"p50_ms":0.83,"p95_ms":2.5,"p99_ms":12,"tcp_connections":2},
 {"name":"api-v2","namespace":"default","instances":1,"meshed":1,"requests":0,"success_rate":null,"rps":0,"p50_ms":null,"p95_ms":null,"p99_ms":null,"tcp_connections":0},
 {"name":"quotes","namespace":"default","instances":2,"meshed":1,"requests":12,"success_rate":0.5,"rps":0.4,"p50_ms":150,"p95_ms":900.4,"p99_ms":2000,"tcp_connections":1}
]}`

func TestStat(t *testing.T) {
	f := &fakeController{stat: statJSON}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := startMesh(t, srv.URL, testToken)

	tests := []struct {
		name, golden string
		args         []string
	}{
		{"all services", "stat.golden", []string{"stat"}},
		{"one service", "stat_web.golden", []string{"stat", "web"}},
		{"json", "stat_json.golden", []string{"stat", "-o", "json", "quotes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append(tt.args, "--state-dir", dir)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, stderr)
			}
			golden(t, tt.golden, stdout)
		})
	}
	if got, want := f.seen()[0], "GET /api/v1/stat?window=30s"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	stdout, _, _ := runCLI(t, "stat", "--window", "2m", "--state-dir", dir)
	if got := f.seen(); got[len(got)-1] != "GET /api/v1/stat?window=2m0s" || stdout == "" {
		t.Errorf("requests %q", got)
	}
}

func TestStatErrors(t *testing.T) {
	f := &fakeController{stat: statJSON}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := startMesh(t, srv.URL, testToken)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown service", []string{"stat", "books"}, "Error: no service books in the mesh (services: web, api, api-v2, quotes)\n"},
		{"bad output", []string{"stat", "-o", "yaml"}, "Error: -o \"yaml\": give table or json\n"},
		{"tiny window", []string{"stat", "--window", "10ms"}, "Error: --window 10ms: give at least 1s, e.g. 30s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, append(tt.args, "--state-dir", dir)...)
			if code != 1 || stderr != tt.want {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, tt.want)
			}
		})
	}
}

// fakeProxy is a proxy admin server.
type fakeProxy struct {
	srv    *httptest.Server
	ready  int    // status of /ready
	status string // JSON of /status
}

func newFakeProxy(t *testing.T, ready int, status string) *fakeProxy {
	p := &fakeProxy{ready: ready, status: status}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			w.WriteHeader(p.ready)
			if p.ready != http.StatusOK {
				fmt.Fprintln(w, "no inbound configuration from the controller yet")
			}
		case "/status":
			fmt.Fprint(w, p.status)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProxy) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func TestCheck(t *testing.T) {
	current := `{"id":"X","ready":true,"inbound_version":3,"destinations":{"api.default":{"version":7,"endpoints":2}}}`
	web := newFakeProxy(t, http.StatusOK, current)
	api := newFakeProxy(t, http.StatusOK, `{"id":"api-v1-0","ready":true,"inbound_version":3,"destinations":{}}`)
	stale := newFakeProxy(t, http.StatusOK, `{"id":"web-1","ready":true,"inbound_version":2,"destinations":{"api.default":{"version":6,"endpoints":2}}}`)
	notReady := newFakeProxy(t, http.StatusServiceUnavailable, current)
	gone := newFakeProxy(t, http.StatusOK, current)
	goneAddr := gone.addr()
	gone.srv.Close()

	proxy := func(id string, p string, connected bool) string {
		return fmt.Sprintf(`{"id":%q,"service":"web","namespace":"default","admin_addr":%q,"connected":%v,"sent_inbound_version":3,"sent":{"api.default":7}}`, id, p, connected)
	}
	healthy := `{"version":12,"proxies":[` + proxy("web-0", web.addr(), true) + `,
		{"id":"api-v1-0","service":"api","namespace":"default","version":"v1","admin_addr":"` + api.addr() + `","connected":true,"sent_inbound_version":3,"sent":{}}],
		"services":[{"name":"web","namespace":"default","endpoints":1,"ready":1},{"name":"api","namespace":"default","endpoints":1,"ready":1}]}`
	broken := `{"version":12,"proxies":[` + strings.Join([]string{
		proxy("web-0", web.addr(), true),
		proxy("web-1", stale.addr(), true),
		proxy("web-2", notReady.addr(), true),
		proxy("web-3", goneAddr, false),
	}, ",") + `],"services":[{"name":"web","namespace":"default","endpoints":4,"ready":3},{"name":"api","namespace":"default","endpoints":1,"ready":0}]}`

	goodIdentity := `{"trust_domain":"cluster.local","anchors":[{"subject":"CN=weft trust anchor cluster.local","not_after":"2099-01-01T00:00:00Z"}],
		"issuer":{"subject":"CN=weft issuer cluster.local","not_after":"2098-01-01T00:00:00Z"},
		"workloads":[{"service":"web","namespace":"default","identity":"spiffe://cluster.local/ns/default/sa/web","proxies":[{"id":"web-0","cert_not_after":"2097-01-01T00:00:00Z"}]},
		 {"service":"api","namespace":"default","identity":"spiffe://cluster.local/ns/default/sa/api","proxies":[{"id":"api-v1-0","cert_not_after":"2097-01-01T00:00:00Z"}]}]}`
	badIdentity := `{"trust_domain":"cluster.local","anchors":[{"subject":"CN=weft trust anchor cluster.local","not_after":"2099-01-01T00:00:00Z"}],
		"issuer":{"subject":"CN=weft issuer cluster.local","not_after":"2020-01-01T00:00:00Z"},
		"workloads":[{"service":"web","namespace":"default","identity":"spiffe://cluster.local/ns/default/sa/web","proxies":[{"id":"web-0","cert_not_after":"2021-01-01T00:00:00Z"}]},
		 {"service":"api","namespace":"default","identity":"spiffe://cluster.local/ns/default/sa/api","proxies":[{"id":"api-v1-0"}]}]}`

	tests := []struct {
		name, golden, status, identity, token string
		wantCode                              int
	}{
		{"healthy", "check_ok.golden", healthy, "", testToken, 0},
		{"broken proxies", "check_fail.golden", broken, "", testToken, 1},
		{"wrong token", "check_token.golden", healthy, "", "other-token", 1},
		{"healthy identity", "check_identity_ok.golden", healthy, goodIdentity, testToken, 0},
		{"expired certificates", "check_identity_fail.golden", healthy, badIdentity, testToken, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&fakeController{status: tt.status, identity: tt.identity})
			defer srv.Close()
			dir := startMesh(t, srv.URL, tt.token)
			stdout, stderr, code := runCLI(t, "check", "--state-dir", dir)
			if code != tt.wantCode || stderr != "" {
				t.Errorf("exit %d, stderr %q; want %d and no stderr", code, stderr, tt.wantCode)
			}
			r := strings.NewReplacer(dir, "STATE", web.addr(), "WEB0", stale.addr(), "WEB1", notReady.addr(), "WEB2", goneAddr, "WEB3")
			golden(t, tt.golden, r.Replace(stdout))
		})
	}

	t.Run("controller gone", func(t *testing.T) {
		srv := httptest.NewServer(&fakeController{status: healthy})
		dir := startMesh(t, srv.URL, testToken)
		addr := strings.TrimPrefix(srv.URL, "http://")
		srv.Close()
		stdout, _, code := runCLI(t, "check", "--state-dir", dir)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		// The dial error text differs between kernels; keep what we print.
		stdout = strings.Replace(stdout, addr, "CONTROLLER", -1)
		if i := strings.Index(stdout, "not reachable: "); i >= 0 {
			j := strings.Index(stdout[i:], "; is weft up")
			stdout = stdout[:i] + "not reachable: DIAL ERROR" + stdout[i+j:]
		}
		golden(t, "check_unreachable.golden", stdout)
	})
}

const resourcesJSON = `{"resources":[
 {"apiVersion":"split.smi-spec.io/v1alpha2","kind":"TrafficSplit","namespace":"default","name":"api-canary","spec":{}},
 {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","namespace":"shop","name":"books","spec":{}},
 {"apiVersion":"split.smi-spec.io/v1alpha2","kind":"TrafficSplit","namespace":"default","name":"a-first","spec":{}}
]}`

func TestGet(t *testing.T) {
	srv := httptest.NewServer(&fakeController{resources: resourcesJSON})
	defer srv.Close()
	dir := startMesh(t, srv.URL, testToken)
	tests := []struct {
		name, golden string
		args         []string
	}{
		{"all", "get.golden", []string{"get"}},
		{"by kind", "get_trafficsplits.golden", []string{"get", "trafficsplits"}},
		{"by qualified kind", "get_trafficsplits.golden", []string{"get", "TrafficSplit.split.smi-spec.io"}},
		{"by namespace", "get_shop.golden", []string{"get", "-n", "shop"}},
		{"none of a kind", "get_none.golden", []string{"get", "grpcroute"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append(tt.args, "--state-dir", dir)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, stderr)
			}
			golden(t, tt.golden, stdout)
		})
	}
}

func TestDelete(t *testing.T) {
	f := &fakeController{resources: resourcesJSON}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := startMesh(t, srv.URL, testToken)

	stdout, stderr, code := runCLI(t, "delete", "trafficsplit", "api-canary", "--state-dir", dir)
	if code != 0 || stdout != "trafficsplit.split.smi-spec.io/default/api-canary deleted\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := f.seen(); got[len(got)-1] != "DELETE /api/v1/resources/TrafficSplit/default/api-canary" {
		t.Errorf("requests %q", got)
	}
	_, stderr, code = runCLI(t, "delete", "httproute", "books", "--state-dir", dir)
	if want := "Error: no httproute named books is applied in namespace default; list what is applied with weft get\n"; code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want %q", code, stderr, want)
	}
	if _, _, code := runCLI(t, "delete", "httproute", "books", "-n", "shop", "--state-dir", dir); code != 0 {
		t.Errorf("delete in namespace shop: exit %d", code)
	}
}

const canaryYAML = `apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: api-canary
spec:
  service: api
  backends:
  - service: api-v1
    weight: 95
  - service: api-v2
    weight: 5
`

func TestApply(t *testing.T) {
	file := filepath.Join(t.TempDir(), "canary.yaml")
	if err := os.WriteFile(file, []byte(canaryYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		applyStatus int
		applyBody   string
		wantRequest string
		wantCode    int
		wantStdout  string
		wantStderr  string
	}{
		{
			name: "created", args: []string{"apply", "-f", file},
			applyStatus: 200, applyBody: `{"applied":[{"kind":"TrafficSplit","namespace":"default","name":"api-canary","action":"created"}]}`,
			wantRequest: "POST /api/v1/apply",
			wantStdout:  "trafficsplit.split.smi-spec.io/default/api-canary created\n",
		},
		{
			name: "dry run", args: []string{"apply", "-f", file, "--dry-run"},
			applyStatus: 200, applyBody: `{"applied":[{"kind":"TrafficSplit","namespace":"default","name":"api-canary","action":"configured"}],"dry_run":true}`,
			wantRequest: "POST /api/v1/apply?dry_run=true",
			wantStdout:  "trafficsplit.split.smi-spec.io/default/api-canary configured (dry run)\n",
		},
		{
			name: "refused", args: []string{"apply", "-f", file},
			applyStatus: 400, applyBody: `{"error":"the file was refused, nothing was applied: 2 errors, fix them all and apply again","errors":["document 1 (TrafficSplit api-canary): spec.backends[0].weight: -3 is negative","document 1 (TrafficSplit api-canary): spec.service: service \"apj\" is not declared"]}`,
			wantRequest: "POST /api/v1/apply", wantCode: 1,
			wantStderr: "Error: " + file + " was refused, nothing was applied:\n" +
				"  - document 1 (TrafficSplit api-canary): spec.backends[0].weight: -3 is negative\n" +
				"  - document 1 (TrafficSplit api-canary): spec.service: service \"apj\" is not declared\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeController{applyStatus: tt.applyStatus, applyBody: tt.applyBody}
			srv := httptest.NewServer(f)
			defer srv.Close()
			dir := startMesh(t, srv.URL, testToken)
			stdout, stderr, code := runCLI(t, append(tt.args, "--state-dir", dir)...)
			if code != tt.wantCode || stdout != tt.wantStdout || stderr != tt.wantStderr {
				t.Errorf("got exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q", code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
			if got := f.seen(); len(got) != 1 || got[0] != tt.wantRequest || f.bodies[0] != canaryYAML {
				t.Errorf("requests %q (body %q), want %q with the file", got, f.bodies, tt.wantRequest)
			}
		})
	}
}

func TestNoRunningMesh(t *testing.T) {
	dir := t.TempDir()
	want := fmt.Sprintf("Error: no local mesh is running (state dir %s): start one with weft up\n", dir)
	for _, args := range [][]string{{"check"}, {"stat"}, {"get"}, {"delete", "trafficsplit", "x"}, {"apply", "-f", "-"}} {
		t.Run(args[0], func(t *testing.T) {
			_, stderr, code := runCLI(t, append(args, "--state-dir", dir)...)
			if code != 1 || stderr != want {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
			}
		})
	}

	// controller.json left behind by a weft up that died: nobody holds the lock.
	srv := httptest.NewServer(&fakeController{})
	defer srv.Close()
	if err := statedir.WriteController(dir, statedir.Controller{HTTPAddr: strings.TrimPrefix(srv.URL, "http://"), Token: testToken}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "get", "--state-dir", dir); code != 1 || stderr != want {
		t.Errorf("stale controller.json: exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestUpFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"http addr without port", []string{"--http-addr", "localhost"}, `Error: --http-addr "localhost": address localhost: missing port in address; give host:port, e.g. 127.0.0.1:8085` + "\n"},
		{"grpc addr not numeric", []string{"--grpc-addr", "127.0.0.1:grpc"}, `Error: --grpc-addr "127.0.0.1:grpc": port "grpc" is not a number from 0 to 65535; give host:port, e.g. 127.0.0.1:8085` + "\n"},
		{"host name", []string{"--http-addr", "example.com:80"}, `Error: --http-addr "example.com:80": host "example.com" is not an IP address; give host:port, e.g. 127.0.0.1:8085` + "\n"},
		{"same address", []string{"--http-addr", "127.0.0.1:9000", "--grpc-addr", "127.0.0.1:9000"}, "Error: --http-addr and --grpc-addr are both 127.0.0.1:9000; give them different ports\n"},
		{"zero timeout", []string{"--ready-timeout", "0s"}, "Error: --ready-timeout 0s: give a positive duration, e.g. 60s\n"},
		{"log level", []string{"--proxy-log-level", "loud"}, `Error: --proxy-log-level "loud": give debug, info, warn or error` + "\n"},
		{"arguments", []string{"web"}, `Error: unknown command "web" for "weft up"` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, append([]string{"up", "--state-dir", t.TempDir()}, tt.args...)...)
			if code != 1 || stderr != tt.want {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, tt.want)
			}
		})
	}
}

func TestUpRefusesBusyPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	mesh := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(fmt.Sprintf(`apiVersion: local.weft.dev/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  expose:
  - service: web
    port: %d
  workloads:
  - name: web
    command: ["/bin/sleep", "600"]
`, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"expose", []string{"-f", mesh, "--http-addr", free(), "--grpc-addr", free()},
			fmt.Sprintf("Error: port %d (expose web) is in use; free it or change spec.expose[0].port in %s\n", port, mesh)},
		{"controller", []string{"-f", mesh, "--http-addr", busy.Addr().String(), "--grpc-addr", free()},
			fmt.Sprintf("Error: port %d (controller HTTP API) is in use; free it or pass --http-addr with another address\n", port)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			stdout, stderr, code := runCLI(t, append([]string{"up", "--state-dir", dir}, tt.args...)...)
			if code != 1 || stderr != tt.want || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, %q", code, stdout, stderr, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "controller.json")); !os.IsNotExist(err) {
				t.Errorf("controller.json exists after a failed start (%v)", err)
			}
		})
	}
}

func TestUpRefusesSecondInstance(t *testing.T) {
	dir := t.TempDir()
	lock, err := statedir.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, stderr, code := runCLI(t, "up", "--state-dir", dir)
	want := fmt.Sprintf("Error: weft up is already running (pid %d, state dir %s); stop it with Ctrl-C, or pass --state-dir to run a second mesh\n", os.Getpid(), dir)
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := runCLI(t, "version", "--state-dir", t.TempDir())
	if code != 0 || !strings.HasPrefix(stdout, "Client version: ") || !strings.Contains(stdout, "Controller version: unavailable (no local mesh is running)") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestCheckExpiringCertificates(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	c := &checker{logDir: "/state/logs", clock: func() time.Time { return now }}
	tests := []struct {
		name     string
		notAfter time.Time
		want     []string
	}{
		{"far", now.Add(31 * 24 * time.Hour), nil},
		{"soon", now.Add(10*24*time.Hour + time.Hour), []string{`issuer "CN=i" expires on 2030-06-11, in 10 days`, "new roots: stop weft up, remove /state/identity (or give new --identity-* files), start it again"}},
		{"expired", now.Add(-time.Hour), []string{`issuer "CN=i" expired on 2030-06-01`, "new roots: stop weft up, remove /state/identity (or give new --identity-* files), start it again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.expiring("issuer", []ctlapi.CertInfo{{Subject: "CN=i", NotAfter: tt.notAfter}})
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEdges(t *testing.T) {
	tests := []struct {
		name, golden, edges string
		args                []string
	}{
		{"table", "edges.golden", `{"window":"30s","edges":[
			{"from":"web.default","to":"api.default","requests":300,"rps":10,"success_rate":0.995},
			{"from":"api.default","to":"quotes.default","requests":12,"rps":0.4,"success_rate":null},
			{"from":"load.default","to":"web.default","requests":150,"rps":5,"success_rate":1}]}`, []string{"edges"}},
		{"none", "edges_none.golden", `{"window":"1m0s","edges":[]}`, []string{"edges", "--window", "1m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeController{edges: tt.edges}
			srv := httptest.NewServer(f)
			defer srv.Close()
			dir := startMesh(t, srv.URL, testToken)
			stdout, stderr, code := runCLI(t, append(tt.args, "--state-dir", dir)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, stderr)
			}
			golden(t, tt.golden, stdout)
		})
	}
}
