package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextinstall "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apivalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/internal/config/file"
)

// load decodes every embedded CRD strictly as apiextensions.k8s.io/v1, as
// the API server would, and returns them by name.
func load(t *testing.T) map[string]*apiextv1.CustomResourceDefinition {
	t.Helper()
	scheme := runtime.NewScheme()
	apiextinstall.Install(scheme)
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	files, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*apiextv1.CustomResourceDefinition{}
	for _, f := range files {
		js, err := yaml.YAMLToJSON(f.YAML)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		obj, _, err := dec.Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("%s: not a valid apiextensions.k8s.io/v1 object: %v", f.Name, err)
		}
		crd, ok := obj.(*apiextv1.CustomResourceDefinition)
		if !ok {
			t.Fatalf("%s: decoded %T, want a CustomResourceDefinition", f.Name, obj)
		}
		scheme.Default(crd)
		out[crd.Spec.Names.Kind+"."+crd.Spec.Group] = crd
	}
	return out
}

func TestCRDsAreValid(t *testing.T) {
	scheme := runtime.NewScheme()
	apiextinstall.Install(scheme)
	crds := load(t)
	for _, want := range []string{
		"Server.policy.weft.dev", "AuthorizationPolicy.policy.weft.dev", "InboundPolicyDefault.policy.weft.dev",
		"RetryPolicy.policy.weft.dev", "CircuitBreaker.policy.weft.dev", "FaultInjection.policy.weft.dev",
		"RateLimit.policy.weft.dev", "TrafficSplit.split.smi-spec.io",
		"HTTPRoute.gateway.networking.k8s.io", "GRPCRoute.gateway.networking.k8s.io",
	} {
		if crds[want] == nil {
			t.Errorf("no CRD for %s", want)
		}
	}
	for name, crd := range crds {
		t.Run(name, func(t *testing.T) {
			var internal apiextensions.CustomResourceDefinition
			if err := scheme.Convert(crd, &internal, nil); err != nil {
				t.Fatal(err)
			}
			// The API server's own checks: structural schemas, CEL rules
			// compile within the cost budget, names, versions.
			if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
				t.Errorf("invalid CRD:\n%v", errs.ToAggregate())
			}
		})
	}
}

func TestSMIStorageVersion(t *testing.T) {
	crd := load(t)["TrafficSplit.split.smi-spec.io"]
	var served, storage []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			served = append(served, v.Name)
		}
		if v.Storage {
			storage = append(storage, v.Name)
		}
	}
	if got := strings.Join(served, ","); got != "v1alpha1,v1alpha2,v1alpha3,v1alpha4" {
		t.Errorf("served %s, want v1alpha1 to v1alpha4", got)
	}
	if got := strings.Join(storage, ","); got != "v1alpha4" {
		t.Errorf("storage %s, want v1alpha4", got)
	}
}

// validator checks documents against a CRD version's schema and CEL rules
// as the API server does on create.
type validator struct {
	schema apivalidation.SchemaValidator
	cel    *cel.Validator
	s      *schema.Structural
}

func newValidator(t *testing.T, crd *apiextv1.CustomResourceDefinition, version string) *validator {
	t.Helper()
	scheme := runtime.NewScheme()
	apiextinstall.Install(scheme)
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		var props apiextensions.JSONSchemaProps
		if err := scheme.Convert(v.Schema.OpenAPIV3Schema, &props, nil); err != nil {
			t.Fatal(err)
		}
		sv, _, err := apivalidation.NewSchemaValidator(&props)
		if err != nil {
			t.Fatal(err)
		}
		s, err := schema.NewStructural(&props)
		if err != nil {
			t.Fatal(err)
		}
		return &validator{schema: sv, s: s, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}
	}
	t.Fatalf("%s has no version %s", crd.Name, version)
	return nil
}

func (v *validator) validate(obj map[string]any) field.ErrorList {
	errs := apivalidation.ValidateCustomResource(nil, obj, v.schema)
	if v.cel != nil {
		celErrs, _ := v.cel.Validate(context.Background(), nil, v.s, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	return errs
}

// docs splits testdata/examples.yaml into objects.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, part := range regexp.MustCompile(`(?m)^---$`).Split(string(data), -1) {
		obj := decodeObject(t, part)
		if obj != nil {
			out = append(out, obj)
		}
	}
	return out
}

// decodeObject decodes YAML with integers as int64, as the API server
// does.
func decodeObject(t *testing.T, text string) map[string]any {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestExamplesPassSchemaAndDecoder keeps the CRD schemas and Weft's own
// decoders in step: one document of each kind passes both.
func TestExamplesPassSchemaAndDecoder(t *testing.T) {
	crds := load(t)
	data, err := os.ReadFile("testdata/examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.Decode(data); err != nil {
		t.Fatalf("weft's decoder refuses the examples:\n%v", err)
	}
	for _, obj := range docs(t, "testdata/examples.yaml") {
		gv := obj["apiVersion"].(string)
		group, version, _ := strings.Cut(gv, "/")
		kind := obj["kind"].(string)
		t.Run(kind+"/"+version, func(t *testing.T) {
			crd := crds[kind+"."+group]
			if crd == nil {
				t.Fatalf("no CRD for %s", kind)
			}
			if errs := newValidator(t, crd, version).validate(obj); len(errs) > 0 {
				t.Errorf("schema refuses a valid document:\n%v", errs.ToAggregate())
			}
		})
	}
}

func TestSchemaRefusals(t *testing.T) {
	crds := load(t)
	tests := []struct {
		name, kind, doc, want string
	}{
		{"server without selector", "Server", `spec: {port: 80}`, "spec.podSelector"},
		{"server with both selectors", "Server", `spec: {podSelector: {service: a}, workloadSelector: {service: a}}`, "give podSelector or workloadSelector, not both"},
		{"server bad port", "Server", `spec: {podSelector: {service: a}, port: 70000}`, "neither a port number"},
		{"server bad protocol", "Server", `spec: {podSelector: {service: a}, proxyProtocol: smtp}`, "unknown protocol"},
		{"policy without rules", "AuthorizationPolicy", `spec: {targetRef: {kind: Server, name: a}, rules: []}`, "spec.rules"},
		{"policy empty from", "AuthorizationPolicy", `spec: {targetRef: {kind: Server, name: a}, rules: [{from: {}}]}`, "give identities, serviceAccounts"},
		{"policy bad identity", "AuthorizationPolicy", `spec: {targetRef: {kind: Server, name: a}, rules: [{from: {identities: [web]}}]}`, "not a SPIFFE ID"},
		{"policy bad method", "AuthorizationPolicy", `spec: {targetRef: {kind: Server, name: a}, rules: [{to: {methods: [get]}}]}`, "spec.rules[0].to.methods[0]"},
		{"retry too many attempts", "RetryPolicy", `spec: {targetRef: {name: a}, maxAttempts: 11}`, "spec.maxAttempts"},
		{"retry on status needs retryable", "RetryPolicy", `spec: {targetRef: {name: a}, maxAttempts: 2, retryOn: ["503"]}`, "must be true to retry on statuses"},
		{"retry bad condition", "RetryPolicy", `spec: {targetRef: {name: a}, maxAttempts: 2, retryOn: [sometimes]}`, "not a retry condition"},
		{"retry bad duration", "RetryPolicy", `spec: {targetRef: {name: a}, maxAttempts: 2, perTryTimeout: 2 seconds}`, "spec.perTryTimeout"},
		{"fault without effect", "FaultInjection", `spec: {targetRef: {name: a}}`, "give a delay, an abort, or both"},
		{"fault percent", "FaultInjection", `spec: {targetRef: {name: a}, abort: {percent: 150, httpStatus: 503}}`, "spec.abort.percent"},
		{"rate zero", "RateLimit", `spec: {targetRef: {name: a}, requestsPerSecond: 0}`, "spec.requestsPerSecond"},
		{"default mesh-wide with workload", "InboundPolicyDefault", `spec: {policy: deny, workload: a, meshWide: true}`, "a mesh-wide default names no workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeObject(t, tt.doc)
			obj["apiVersion"], obj["kind"] = "policy.weft.dev/v1alpha1", tt.kind
			obj["metadata"] = map[string]any{"name": "x", "namespace": "shop"}
			errs := newValidator(t, load(t)[tt.kind+".policy.weft.dev"], "v1alpha1").validate(obj)
			_ = crds
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", errs.ToAggregate(), tt.want)
			}
		})
	}
}

// TestGatewayAPIUnchanged checks the embedded Gateway API CRDs are the
// upstream files of the version in go.mod.
func TestGatewayAPIUnchanged(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Skipf("go list -m sigs.k8s.io/gateway-api: %v", err)
	}
	var mod struct{ Version, Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	if mod.Version != GatewayAPIVersion {
		t.Errorf("go.mod has sigs.k8s.io/gateway-api %s, the embedded CRDs are %s: copy the new ones (see crds/gateway-api/README.md)", mod.Version, GatewayAPIVersion)
	}
	if mod.Dir == "" {
		t.Skip("sigs.k8s.io/gateway-api is not in the module cache (go mod download sigs.k8s.io/gateway-api)")
	}
	files, err := CRDs("gateway-api")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(mod.Dir, "config", "crd", "standard", f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.YAML, want) {
			t.Errorf("crds/gateway-api/%s differs from the upstream file of %s", f.Name, mod.Version)
		}
	}
}

// schemaPaths lists the field paths a structural schema declares, with
// "[]" for list items; maps and int-or-string values are leaves.
func schemaPaths(s *schema.Structural, prefix string, out map[string]bool) {
	if len(s.Properties) == 0 && s.Items == nil {
		out[prefix] = true
		return
	}
	for name, p := range s.Properties {
		p := p
		schemaPaths(&p, prefix+"."+name, out)
	}
	if s.Items != nil {
		schemaPaths(s.Items, prefix+"[]", out)
	}
}

// objectPaths lists the leaf field paths of a decoded document.
func objectPaths(v any, prefix string, out map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			objectPaths(c, prefix+"."+k, out)
		}
	case []any:
		for _, c := range t {
			objectPaths(c, prefix+"[]", out)
		}
	default:
		out[prefix] = true
	}
}

// TestSchemasMatchDecoders holds the CRD schemas and weft's decoders to
// the same fields: the examples (which weft's decoder accepts, refusing
// unknown fields) use every field a schema declares, and the API server's
// pruning drops no field of theirs (every field they use is declared).
func TestSchemasMatchDecoders(t *testing.T) {
	crds := load(t)
	scheme := runtime.NewScheme()
	apiextinstall.Install(scheme)
	used := map[string]map[string]bool{}
	for _, obj := range docs(t, "testdata/examples.yaml") {
		group, version, _ := strings.Cut(obj["apiVersion"].(string), "/")
		kind := obj["kind"].(string)
		crd := crds[kind+"."+group]
		v := newValidator(t, crd, version)
		copied := runtime.DeepCopyJSON(obj)
		if pruned := pruning.PruneWithOptions(copied, v.s, true, schema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(pruned) > 0 {
			t.Errorf("%s/%s %v: the schema lacks fields the decoder accepts: %v", kind, version, obj["metadata"], pruned)
		}
		key := kind + "/" + version
		if used[key] == nil {
			used[key] = map[string]bool{}
		}
		objectPaths(obj["spec"], "spec", used[key])
	}
	for key, paths := range used {
		kind, version, _ := strings.Cut(key, "/")
		crd := crds[kind+".policy.weft.dev"]
		if crd == nil {
			continue // SMI: its schema follows upstream, not weft's decoder
		}
		v := newValidator(t, crd, version)
		declared := map[string]bool{}
		spec := v.s.Properties["spec"]
		schemaPaths(&spec, "spec", declared)
		for p := range declared {
			covered := false
			for u := range paths {
				covered = covered || u == p || strings.HasPrefix(u, p+".")
			}
			if !covered {
				t.Errorf("%s: schema field %s appears in no example, so nothing shows weft's decoder accepts it: add it to testdata/examples.yaml", kind, p)
			}
		}
	}
}
