package local

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
)

// counter hands out ports 20000, 20001, ...
func counter() func() (int, error) {
	next := 20000
	return func() (int, error) { next++; return next - 1, nil }
}

func TestBuildPlan(t *testing.T) {
	m := &Mesh{
		Path: "mesh.yaml", Dir: "/mesh",
		Expose: []Expose{{Service: "web", Port: 8080}},
		Workloads: []Workload{
			{Name: "web", Command: []string{"${WEFT_BIN}/web", "--listen", "127.0.0.1:${PORT}"}, Replicas: 2, Protocol: config.ProtocolHTTP1, Calls: []string{"api"}, ReadyPath: "healthz"},
			{Name: "api", Version: "v2", Command: []string{"./api", "--greeting", "${GREETING}"}, Port: 9000, Calls: []string{"api-gw"}, Env: map[string]string{"GREETING": "hi from ${WEFT_INSTANCE}"}, Dir: "sub"},
			{Name: "api-gw", Command: []string{"/bin/gw"}, Protocol: config.ProtocolGRPC},
			{Name: "load", Command: []string{"/bin/load"}, Calls: []string{"web"}},
		},
	}
	p, err := buildPlan(m, planEnv{
		ProxyBin: "/bin/weft-proxy", BinDir: "/wb", LogDir: "/logs", ControllerGRPC: "127.0.0.1:8086",
		Environ: []string{"HOME=/root", "PORT=1"}, FreePort: counter(),
	})
	if err != nil {
		t.Fatal(err)
	}

	var ids []string
	for _, inst := range p.instances {
		ids = append(ids, inst.id)
	}
	if want := []string{"web-0", "web-1", "api-v2-0", "api-gw-0", "load-0"}; !slices.Equal(ids, want) {
		t.Errorf("instances %v, want %v", ids, want)
	}
	var services []string
	for _, s := range p.services {
		services = append(services, s.Name+"/"+string(s.Protocol))
	}
	if want := []string{"web/http1", "api/", "api-v2/", "api-gw/grpc", "load/"}; !slices.Equal(services, want) {
		t.Errorf("services %v, want %v", services, want)
	}

	web0 := p.instances[0]
	// Ports in order: app 20000, inbound 20001, admin 20002, outbound api 20003.
	if got, want := web0.app.spec.Args, []string{"--listen", "127.0.0.1:20000"}; !slices.Equal(got, want) {
		t.Errorf("web-0 args %v, want %v", got, want)
	}
	if got := web0.app.spec.Path; got != "/wb/web" {
		t.Errorf("web-0 path %q", got)
	}
	env := strings.Join(web0.app.spec.Env, " ")
	for _, kv := range []string{"PORT=20000", "WEFT_API_ADDR=127.0.0.1:20003", "WEFT_BIN=/wb", "HOME=/root", "WEFT_INSTANCE=web-0"} {
		if !strings.Contains(" "+env+" ", " "+kv+" ") {
			t.Errorf("web-0 env lacks %s: %s", kv, env)
		}
	}
	if got, want := web0.proxy.spec.Args, []string{
		"--id", "web-0", "--service", "web", "--namespace", "default", "--controller", "127.0.0.1:8086",
		"--admin", "127.0.0.1:20002", "--inbound", "127.0.0.1:20001=127.0.0.1:20000/http1",
		"--outbound", "127.0.0.1:20003=api",
	}; !slices.Equal(got, want) {
		t.Errorf("web-0 proxy args\n%v\nwant\n%v", got, want)
	}
	if web0.app.probe != probeHTTP || web0.app.probeURL != "http://127.0.0.1:20000/healthz" {
		t.Errorf("web-0 probe %v %q", web0.app.probe, web0.app.probeURL)
	}
	if web0.proxy.probeURL != "http://127.0.0.1:20002/ready" || web0.proxy.logPath != "/logs/web-0.proxy.log" || web0.app.logPath != "/logs/web-0.log" {
		t.Errorf("web-0 proxy probe %q, logs %q %q", web0.proxy.probeURL, web0.proxy.logPath, web0.app.logPath)
	}
	if got, want := web0.keys, []config.ServiceKey{"web.default"}; !slices.Equal(got, want) {
		t.Errorf("web-0 keys %v", got)
	}

	api := p.instances[2]
	if got, want := api.keys, []config.ServiceKey{"api.default", "api-v2.default"}; !slices.Equal(got, want) {
		t.Errorf("api keys %v, want %v", got, want)
	}
	if got, want := api.app.spec.Args, []string{"--greeting", "hi from api-v2-0"}; !slices.Equal(got, want) {
		t.Errorf("api args %v, want %v", got, want)
	}
	if api.app.spec.Dir != "/mesh/sub" || api.app.probe != probeTCP || api.app.probeAddr != "127.0.0.1:9000" {
		t.Errorf("api dir %q probe %v %q", api.app.spec.Dir, api.app.probe, api.app.probeAddr)
	}
	if !slices.Contains(api.app.spec.Env, "WEFT_API_GW_ADDR="+outboundOf(t, api.proxy.spec.Args, "api-gw")) {
		t.Errorf("api env lacks WEFT_API_GW_ADDR matching its proxy: %v", api.app.spec.Env)
	}
	if !slices.Contains(api.proxy.spec.Args, "v2") {
		t.Errorf("api proxy args lack --version v2: %v", api.proxy.spec.Args)
	}
	wantEP := config.Endpoint{Address: inboundOf(t, api.proxy.spec.Args), Identity: "spiffe://cluster.local/ns/default/sa/api", Meshed: true, Labels: map[string]string{"version": "v2"}, Ready: true}
	if got := api.endpoint; got.Address != wantEP.Address || got.Identity != wantEP.Identity || !got.Meshed || !got.Ready || got.Labels["version"] != "v2" {
		t.Errorf("api endpoint %+v, want %+v", got, wantEP)
	}

	if load := p.instances[4]; !load.client || load.app.probe != probeRunning {
		t.Errorf("load: client %v probe %v; want a client ready once running", load.client, load.app.probe)
	}
	if p.instances[0].client || p.instances[3].client {
		t.Error("called workloads marked as clients")
	}

	if len(p.ingresses) != 1 {
		t.Fatalf("%d ingresses", len(p.ingresses))
	}
	ing := p.ingresses[0]
	if ing.name != "ingress-web" || !slices.Contains(ing.spec.Args, "127.0.0.1:8080=web") || ing.logPath != "/logs/ingress-web.proxy.log" {
		t.Errorf("ingress %q args %v log %q", ing.name, ing.spec.Args, ing.logPath)
	}

	var proxies []string
	for _, px := range p.proxies {
		proxies = append(proxies, px.ID+"/"+px.Service+"/"+px.Version)
	}
	if want := []string{"web-0/web/", "web-1/web/", "api-v2-0/api/v2", "api-gw-0/api-gw/", "load-0/load/", "ingress-web/ingress/"}; !slices.Equal(proxies, want) {
		t.Errorf("proxies %v, want %v", proxies, want)
	}
	if got := p.proxies[2]; got.AdminAddr != api.proxy.probeAddr || len(got.Ports) != 1 || got.Ports[0].Port != 9000 {
		t.Errorf("api proxy %+v", got)
	}
}

func inboundOf(t *testing.T, args []string) string {
	t.Helper()
	i := slices.Index(args, "--inbound")
	listen, _, _ := strings.Cut(args[i+1], "=")
	return listen
}

func outboundOf(t *testing.T, args []string, service string) string {
	t.Helper()
	for i, a := range args {
		if a == "--outbound" && strings.HasSuffix(args[i+1], "="+service) {
			return strings.TrimSuffix(args[i+1], "="+service)
		}
	}
	t.Fatalf("no --outbound for %s in %v", service, args)
	return ""
}

func TestCheckPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	free := newFreePorts()
	p1, _ := free.next()
	tests := []struct {
		name string
		uses []portUse
		want string
	}{
		{"free", []portUse{{addr: loopback(p1), what: "expose web", fix: "x"}}, ""},
		{"busy", []portUse{{addr: loopback(p1), what: "a", fix: "x"}, {addr: busy.Addr().String(), what: "expose web", fix: "change spec.expose[0].port in mesh.yaml"}},
			"port " + port + " (expose web) is in use; free it or change spec.expose[0].port in mesh.yaml"},
		{"twice", []portUse{{addr: loopback(p1), what: "expose web", fix: "f"}, {addr: loopback(p1), what: "workload api", fix: "change spec.workloads[1].port"}},
			"port " + strconv.Itoa(p1) + " is wanted by both expose web and workload api; change spec.workloads[1].port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPorts(tt.uses)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("checkPorts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFixedPortsNameTheField(t *testing.T) {
	m := &Mesh{Path: "m.yaml", Expose: []Expose{{Service: "web", Port: 8080}}, Workloads: []Workload{{Name: "web"}, {Name: "api", Version: "v1", Port: 9000, Replicas: 2}}}
	var got []string
	for _, u := range fixedPorts(m, Options{HTTPAddr: "127.0.0.1:8085", GRPCAddr: "127.0.0.1:8086"}) {
		got = append(got, u.addr+" "+u.what+": "+u.fix)
	}
	want := []string{
		"127.0.0.1:8085 controller HTTP API: pass --http-addr with another address",
		"127.0.0.1:8086 controller gRPC: pass --grpc-addr with another address",
		"127.0.0.1:8080 expose web: change spec.expose[0].port in m.yaml",
		"127.0.0.1:9000 workload api v1: change spec.workloads[1].port in m.yaml (omit it to choose a free port)",
		"127.0.0.1:9001 workload api v1: change spec.workloads[1].port in m.yaml (omit it to choose a free port)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fixedPorts\n%q\nwant\n%q", got, want)
	}
}

func TestFindBinaries(t *testing.T) {
	withProxy := t.TempDir()
	if err := os.WriteFile(filepath.Join(withProxy, "weft-proxy"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bare := t.TempDir()
	tests := []struct {
		name       string
		exe, root  string
		demo       bool
		wantProxy  string
		wantBuild  []string
		wantBinDir string
		wantErr    string
	}{
		{"proxy next to weft", filepath.Join(withProxy, "weft"), "", false, filepath.Join(withProxy, "weft-proxy"), nil, withProxy, ""},
		{"proxy next to weft, demo from source", filepath.Join(withProxy, "weft"), "/src", true, filepath.Join(withProxy, "weft-proxy"), []string{"./examples/demo/..."}, "/state/bin", ""},
		{"all from source", filepath.Join(bare, "weft"), "/src", true, "/state/bin/weft-proxy", []string{"./cmd/weft-proxy", "./examples/demo/..."}, "/state/bin", ""},
		{"nothing", filepath.Join(bare, "weft"), "", false, "", nil, "",
			"weft-proxy not found next to " + filepath.Join(bare, "weft") + ", and the current directory is not inside Weft's source tree (module weft.dev/weft): install weft-proxy beside weft (go build -o " + bare + " ./cmd/weft-proxy), or run weft up from a checkout of Weft"},
		{"demo without source", filepath.Join(withProxy, "weft"), "", true, "", nil, "",
			"weft up without -f runs the demo, which is built from Weft's source tree, and the current directory is not inside it (module weft.dev/weft): run weft up from a checkout of Weft, or pass -f mesh.yaml with your own workloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinaries(tt.exe, tt.root, "/state/bin", tt.demo)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("err %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Proxy != tt.wantProxy || !slices.Equal(b.build, tt.wantBuild) || b.BinDir != tt.wantBinDir {
				t.Errorf("got proxy %q build %v bin %q; want %q %v %q", b.Proxy, b.build, b.BinDir, tt.wantProxy, tt.wantBuild, tt.wantBinDir)
			}
		})
	}
}

func TestFindModuleRoot(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if got := FindModuleRoot("."); got != root {
		t.Errorf("FindModuleRoot(.) = %q, want %q", got, root)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(other, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := FindModuleRoot(filepath.Join(other, "sub")); got != "" {
		t.Errorf("FindModuleRoot outside Weft = %q, want \"\"", got)
	}
}
