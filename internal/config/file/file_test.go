package file

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/split"
)

const seed = `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: mon-service-canary}
spec:
  service: mon-service
  backends:
  - service: mon-service-v1
    weight: 95
  - service: mon-service-v2
    weight: 5
`

func TestDecodeSeed(t *testing.T) {
	for _, v := range split.Versions {
		t.Run(v, func(t *testing.T) {
			rs, err := Decode([]byte(strings.Replace(seed, "v1alpha1", v, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(rs), 1; got != want {
				t.Fatalf("resources: got %d, want %d", got, want)
			}
			r := rs[0]
			if got, want := r.ID(), "TrafficSplit/default/mon-service-canary"; got != want {
				t.Errorf("id: got %s, want %s", got, want)
			}
			if got, want := r.APIVersion, "split.smi-spec.io/"+v; got != want {
				t.Errorf("apiVersion: got %s, want %s", got, want)
			}
			want := &split.TrafficSplit{Service: "mon-service", Backends: []split.Backend{{Service: "mon-service-v1", Weight: 95}, {Service: "mon-service-v2", Weight: 5}}}
			if got := r.Spec; !reflect.DeepEqual(got, want) {
				t.Errorf("spec: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecodeWeights(t *testing.T) {
	doc := func(version, w1, w2 string) string {
		return "apiVersion: split.smi-spec.io/" + version + "\nkind: TrafficSplit\nmetadata: {name: s, namespace: demo}\nspec:\n  service: a\n  backends:\n  - {service: b, weight: " + w1 + "}\n  - {service: c, weight: " + w2 + "}\n"
	}
	tests := []struct {
		name         string
		version      string
		w1, w2       string
		want1, want2 uint32
	}{
		{"integers", "v1alpha4", "3", "1", 3, 1},
		{"zero allowed", "v1alpha2", "0", "1", 0, 1},
		{"quantity strings", "v1alpha1", `"500m"`, `"1"`, 500, 1000},
		{"integer strings", "v1alpha1", `"2"`, `"1"`, 2, 1},
		{"decimal", "v1alpha1", "0.5", "1", 500, 1000},
		{"kilo", "v1alpha1", `"1k"`, "1", 1000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode([]byte(doc(tt.version, tt.w1, tt.w2)))
			if err != nil {
				t.Fatal(err)
			}
			ts := rs[0].Spec.(*split.TrafficSplit)
			if got, want := [2]uint32{ts.Backends[0].Weight, ts.Backends[1].Weight}, [2]uint32{tt.want1, tt.want2}; got != want {
				t.Errorf("weights: got %v, want %v", got, want)
			}
			if got, want := rs[0].Namespace, "demo"; got != want {
				t.Errorf("namespace: got %s, want %s", got, want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	ts := func(body string) string {
		return "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: mon-service-canary}\n" + body
	}
	const backends = "spec:\n  service: mon-service\n  backends:\n  - {service: v1, weight: 1}\n"
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"negative weight, second document", seed + "---\n" + ts("spec:\n  service: mon-service\n  backends:\n  - {service: v1, weight: 1}\n  - {service: v2, weight: -5}\n"),
			[]string{"document 2 (TrafficSplit mon-service-canary): spec.backends[1].weight: must not be negative"}},
		{"unknown field", "apiVersion: split.smi-spec.io/v1alpha3\nkind: TrafficSplit\nmetadata: {name: x}\nspec:\n  service: s\n  backend: []\n",
			[]string{`document 1 (TrafficSplit x): unknown field "spec.backend" (did you mean "backends"?)`}},
		{"unknown field, case differs", ts("spec:\n  Service: s\n  backends: [{service: v1, weight: 1}]\n"),
			[]string{`unknown field "spec.Service" (did you mean "service"?)`}},
		{"unknown top-level field", ts(backends) + "status: {}\n", []string{`document 1 (TrafficSplit mon-service-canary): unknown field "status"`}},
		{"unsupported version", seed + "---\n" + seed + "---\n" + strings.Replace(seed, "v1alpha1", "v9", 1),
			[]string{"document 3: apiVersion/kind split.smi-spec.io/v9 TrafficSplit is not supported (supported: split.smi-spec.io/v1alpha1 TrafficSplit, split.smi-spec.io/v1alpha2 TrafficSplit"}},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"document 1: apiVersion and kind are required (supported: "}},
		{"not a mapping", "- a\n- b\n", []string{"document 1: must be a mapping with apiVersion, kind, metadata and spec, not a list"}},
		{"invalid YAML", "a: [b\n", []string{"document 1: invalid YAML: "}},
		{"missing name", "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {}\n" + backends, []string{"document 1: metadata.name: required"}},
		{"bad name", strings.Replace(seed, "mon-service-canary", "Mon_Service", 1), []string{`document 1 (TrafficSplit Mon_Service): metadata.name: "Mon_Service" is not valid`}},
		{"missing spec", ts(""), []string{"document 1 (TrafficSplit mon-service-canary): spec: required"}},
		{"missing service", ts("spec:\n  backends: [{service: v1, weight: 1}]\n"), []string{"spec.service: required"}},
		{"no backends", ts("spec:\n  service: s\n"), []string{"spec.backends: at least one backend is required"}},
		{"all weights zero", ts("spec:\n  service: s\n  backends: [{service: v1, weight: 0}, {service: v2, weight: 0}]\n"),
			[]string{"spec.backends: all weights are 0"}},
		{"duplicate backend", ts("spec:\n  service: s\n  backends: [{service: v1, weight: 1}, {service: v1, weight: 2}]\n"),
			[]string{`spec.backends[1].service: duplicate backend "v1" (also spec.backends[0])`}},
		{"missing weight", ts("spec:\n  service: s\n  backends: [{service: v1}]\n"), []string{"spec.backends[0].weight: required"}},
		{"quantity outside v1alpha1", ts("spec:\n  service: s\n  backends: [{service: v1, weight: \"500m\"}]\n"),
			[]string{`spec.backends[0].weight: must be an integer, not the string "500m" (quantities like "500m" are valid only in v1alpha1)`}},
		{"fraction outside v1alpha1", ts("spec:\n  service: s\n  backends: [{service: v1, weight: 0.5}]\n"),
			[]string{"spec.backends[0].weight: must be an integer, not 0.5"}},
		{"bad quantity", strings.Replace(seed, "weight: 95", "weight: lots", 1), []string{`spec.backends[0].weight: must be an integer or a quantity like "500m", not "lots"`}},
		{"negative quantity", strings.Replace(seed, "weight: 95", `weight: "-1"`, 1), []string{"spec.backends[0].weight: must not be negative"}},
		{"huge weight", ts("spec:\n  service: s\n  backends: [{service: v1, weight: 99999999999}]\n"), []string{"spec.backends[0].weight: too large"}},
		{"service with namespace", ts("spec:\n  service: s.demo\n  backends: [{service: v1, weight: 1}]\n"), []string{`spec.service: "s.demo" must be a service name without namespace`}},
		{"wrong type", ts("spec:\n  service: [s]\n  backends: [{service: v1, weight: 1}]\n"), []string{"spec.service: must be a string, not a list"}},
		{"backends not a list", ts("spec:\n  service: s\n  backends: {service: v1}\n"), []string{"spec.backends: must be a list, not a mapping"}},
		{"duplicate in file", seed + "---\n" + seed, []string{"TrafficSplit default/mon-service-canary appears 2 times in the file"}},
		{"empty file", "# nothing\n---\n", []string{"the file holds no documents"}},
		{"mesh refused by apply", meshYAML("workloads: [{name: web, command: [./web]}]"), []string{"document 1 (Mesh demo): kind Mesh declares the workloads of `weft up -f`"}},
		{"all errors reported", ts("spec:\n  service: s\n  backends: [{service: v1, weight: -1}]\n") + "---\n" + ts("spec: {service: s, backends: [], extra: 1}\n"),
			[]string{"document 1 (TrafficSplit mon-service-canary): spec.backends[0].weight: must not be negative", `document 2 (TrafficSplit mon-service-canary): unknown field "spec.extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode([]byte(tt.file))
			if err == nil {
				t.Fatalf("got %d resources and no error, want errors %q", len(rs), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				if got, want := len(joined.Unwrap()), len(tt.want); got < want {
					t.Errorf("got %d errors, want at least %d", got, want)
				}
			}
		})
	}
}

func TestDocumentNumbering(t *testing.T) {
	// A leading separator and comment-only documents do not count.
	file := "---\n# a comment\n---\n" + seed + "--- # second\n" + strings.Replace(seed, "weight: 5", "weight: -5", 1)
	_, err := Decode([]byte(file))
	if err == nil {
		t.Fatal("got no error")
	}
	if got, want := err.Error(), "document 2 (TrafficSplit mon-service-canary): spec.backends[1].weight: must not be negative"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestResourceSpec(t *testing.T) {
	rs, err := Decode([]byte(strings.Replace(seed, "weight: 5", `weight: "500m"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ResourceSpec(&rs[0])), `{"backends":[{"service":"mon-service-v1","weight":95},{"service":"mon-service-v2","weight":"500m"}],"service":"mon-service"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	r := config.Resource{Spec: &split.TrafficSplit{Service: "a"}}
	if got, want := string(ResourceSpec(&r)), `{"service":"a","backends":null}`; got != want {
		t.Errorf("without raw: got %s, want %s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(seed))
	f.Add([]byte(seed + "---\n" + strings.Replace(seed, "95", `"500m"`, 1)))
	f.Add([]byte(meshYAML("workloads: [{name: web, command: [./web], port: 9000, replicas: 2, calls: [web]}]")))
	f.Add([]byte("a: [b\n---\n- 1\n"))
	f.Add([]byte(strings.Replace(seed, "95", "1e3", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err == nil && len(rs) == 0 {
			t.Fatal("no error and no resources")
		}
		for _, r := range rs {
			if r.Spec == nil || r.Name == "" || r.Namespace == "" {
				t.Fatalf("incomplete resource %+v", r)
			}
		}
		_, _, _ = LoadMesh(data)
	})
}
