package file

import (
	"reflect"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
)

func meshYAML(spec string) string {
	return "apiVersion: local.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: demo}\nspec:\n  " + strings.ReplaceAll(spec, "\n", "\n  ") + "\n"
}

const demoMesh = `apiVersion: local.weft.dev/v1alpha1
kind: Mesh
metadata: {name: demo}
spec:
  expose: [{service: web, port: 8080}]
  workloads:
  - name: web
    command: ["./web", "--listen", "127.0.0.1:${PORT}"]
    port: 9000
    replicas: 2
    protocol: http1
    calls: [api]
    env: {GREETING: hello}
    dir: ./web
    ready: {httpGet: /healthz}
  - name: api
    version: v1
    command: ["./api"]
    protocol: grpc
  - name: api
    version: v2
    command: ["./api", "--v2"]
    protocol: grpc
---
` + seed

func TestLoadMesh(t *testing.T) {
	m, rs, err := LoadMesh([]byte(demoMesh))
	if err != nil {
		t.Fatal(err)
	}
	want := &Mesh{
		Name:   "demo",
		Expose: []Expose{{Service: "web", Port: 8080}},
		Workloads: []Workload{
			{Name: "web", Command: []string{"./web", "--listen", "127.0.0.1:${PORT}"}, Port: 9000, Replicas: 2, Protocol: config.ProtocolHTTP1,
				Calls: []string{"api"}, Env: map[string]string{"GREETING": "hello"}, Dir: "./web", Ready: Ready{HTTPGet: "/healthz"}},
			{Name: "api", Version: "v1", Command: []string{"./api"}, Replicas: 1, Protocol: config.ProtocolGRPC},
			{Name: "api", Version: "v2", Command: []string{"./api", "--v2"}, Replicas: 1, Protocol: config.ProtocolGRPC},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("mesh:\ngot  %+v\nwant %+v", m, want)
	}
	if got, want := len(rs), 1; got != want {
		t.Fatalf("other documents: got %d, want %d", got, want)
	}
	var names []string
	for _, s := range m.Services() {
		names = append(names, s.Name+"/"+string(s.Protocol))
	}
	if got, want := strings.Join(names, " "), "web/http1 api/grpc api-v1/grpc api-v2/grpc"; got != want {
		t.Errorf("services: got %s, want %s", got, want)
	}
	if got, want := AddrEnv("api-gw"), "WEFT_API_GW_ADDR"; got != want {
		t.Errorf("AddrEnv: got %s, want %s", got, want)
	}
}

func TestLoadMeshErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"no mesh", seed, []string{"no Mesh document found"}},
		{"two meshes", demoMesh + "---\n" + meshYAML("workloads: [{name: x, command: [x]}]"), []string{"document 3 (Mesh demo): a file declares one Mesh (already document 1)"}},
		{"undeclared call", meshYAML("workloads:\n- {name: web, command: [w]}\n- {name: api, command: [a]}\n- {name: quotes, command: [q], calls: [qoutes]}"),
			[]string{`document 1 (Mesh demo): spec.workloads[2].calls[0]: service "qoutes" is not declared (declared: api, quotes, web)`}},
		{"duplicate workload", meshYAML("workloads:\n- {name: web, version: v1, command: [w]}\n- {name: web, version: v1, command: [w]}"),
			[]string{`spec.workloads[1]: duplicate workload "web" version "v1" (also spec.workloads[0])`}},
		{"duplicate unversioned workload", meshYAML("workloads:\n- {name: web, command: [w]}\n- {name: web, command: [w]}"),
			[]string{`spec.workloads[1]: duplicate workload "web" (also spec.workloads[0]); use replicas`}},
		{"port out of range", meshYAML("workloads: [{name: web, command: [w], port: 70000}]"), []string{"spec.workloads[0].port: 70000 is out of range (1 to 65535)"}},
		{"ports beyond 65535", meshYAML("workloads: [{name: web, command: [w], port: 65535, replicas: 2}]"), []string{"spec.workloads[0].port: replicas listen on 65535 to 65536, beyond 65535"}},
		{"ports overlap", meshYAML("workloads:\n- {name: web, command: [w], port: 9000, replicas: 3}\n- {name: api, command: [a], port: 9002}"),
			[]string{"spec.workloads[1].port: ports 9002-9002 overlap spec.workloads[0].port (9000-9002)"}},
		{"replicas zero", meshYAML("workloads: [{name: web, command: [w], replicas: 0}]"), []string{"spec.workloads[0].replicas: 0 is out of range (1 to 20)"}},
		{"replicas too many", meshYAML("workloads: [{name: web, command: [w], replicas: 21}]"), []string{"spec.workloads[0].replicas: 21 is out of range (1 to 20)"}},
		{"expose unknown", meshYAML("expose: [{service: wbe, port: 8080}]\nworkloads: [{name: web, command: [w]}]"),
			[]string{`spec.expose[0].service: service "wbe" is not declared (declared: web)`}},
		{"expose port twice", meshYAML("expose: [{service: web, port: 8080}, {service: web, port: 8080}]\nworkloads: [{name: web, command: [w]}]"),
			[]string{"spec.expose[1].port: 8080 is exposed twice (also spec.expose[0])"}},
		{"expose port missing", meshYAML("expose: [{service: web}]\nworkloads: [{name: web, command: [w]}]"), []string{"spec.expose[0].port: 0 is out of range"}},
		{"bad protocol", meshYAML("workloads: [{name: web, command: [w], protocol: quic}]"), []string{`spec.workloads[0].protocol: unknown protocol "quic"`}},
		{"protocols differ", meshYAML("workloads:\n- {name: api, version: v1, command: [a], protocol: grpc}\n- {name: api, version: v2, command: [a], protocol: http1}"),
			[]string{`spec.workloads[1].protocol: "http1" differs from spec.workloads[0].protocol ("grpc")`}},
		{"missing name and command", meshYAML("workloads: [{port: 9000}]"), []string{"spec.workloads[0].name: required", "spec.workloads[0].command: required"}},
		{"bad name", meshYAML("workloads: [{name: Web_1, command: [w]}]"), []string{`spec.workloads[0].name: "Web_1" is not a valid service name`}},
		{"bad version", meshYAML("workloads: [{name: web, version: V.1, command: [w]}]"), []string{`spec.workloads[0].version: "V.1" must be a version`}},
		{"version as number", meshYAML("workloads: [{name: web, version: 2, command: [w]}]"), []string{"spec.workloads[0].version: must be a string, not the number 2 (quote it)"}},
		{"no workloads", meshYAML("expose: []"), []string{"spec.workloads: at least one workload is required"}},
		{"bad env name", meshYAML("workloads: [{name: web, command: [w], env: {1X: v}}]"), []string{"spec.workloads[0].env.1X: not a valid environment variable name"}},
		{"env value not string", meshYAML("workloads: [{name: web, command: [w], env: {X: 1}}]"), []string{"spec.workloads[0].env.X: must be a string, not the number 1 (quote it)"}},
		{"ready path", meshYAML("workloads: [{name: web, command: [w], ready: {httpGet: healthz}}]"), []string{`spec.workloads[0].ready.httpGet: "healthz" must be a path starting with '/'`}},
		{"unknown workload field", meshYAML("workloads: [{name: web, command: [w], replica: 2}]"), []string{`document 1 (Mesh demo): unknown field "spec.workloads[0].replica" (did you mean "replicas"?)`}},
		{"call twice", meshYAML("workloads: [{name: web, command: [w], calls: [web, web]}]"), []string{`spec.workloads[0].calls[1]: "web" is listed twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadMesh([]byte(tt.file))
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
		})
	}
}

func TestLoadWithoutMesh(t *testing.T) {
	m, rs, err := Load([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	if m != nil || len(rs) != 1 {
		t.Fatalf("got mesh %v and %d resources, want no mesh and 1 resource", m, len(rs))
	}
}
