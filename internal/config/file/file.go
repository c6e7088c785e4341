// Package file decodes the documents users write: the files given to
// `weft apply -f` and the `weft up -f mesh.yaml` workload declaration. It
// turns multi-document YAML into validated config.Resources (and a Mesh),
// rejecting unknown fields, and reports every error of a file at once, each
// naming the document and the field, so that a file is applied whole or not
// at all.
//
// The CLI, the local supervisor and the controller import file. Its
// functions are pure and safe to call concurrently.
package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/split"
)

// kind decodes and validates one supported document kind.
type kind struct {
	apiVersion string
	kind       string
	// decode checks and converts the document (a JSON object); it returns
	// the resource's spec and errors naming fields.
	decode func(obj map[string]any, raw []byte, apiVersion string) (any, []error)
}

var kinds = func() []kind {
	var ks []kind
	for _, v := range split.Versions {
		ks = append(ks, kind{apiVersion: split.Group + "/" + v, kind: split.Kind, decode: decodeTrafficSplit})
	}
	ks = append(ks, kind{apiVersion: MeshAPIVersion, kind: MeshKind, decode: decodeMesh})
	ks = append(ks, resilienceKinds()...)
	ks = append(ks, gatewayKinds()...)
	ks = append(ks, policyKinds()...)
	return ks
}()

func supported() string {
	var s []string
	for _, k := range kinds {
		s = append(s, k.apiVersion+" "+k.kind)
	}
	return strings.Join(s, ", ")
}

// Decode decodes the documents of a `weft apply` file. It refuses the whole
// file when any document is invalid, joining one error per problem
// (errors.Join), each starting with "document N" and naming the field. A
// Mesh document is refused: it declares workloads for `weft up -f`.
func Decode(data []byte) ([]config.Resource, error) {
	mesh, rs, err := decodeAll(data)
	if err != nil {
		return nil, err
	}
	if mesh != nil {
		return nil, fmt.Errorf("document %d (%s %s): kind %s declares the workloads of `weft up -f`; it cannot be applied to a running mesh, remove it from this file",
			mesh.doc, MeshKind, mesh.Name, MeshKind)
	}
	return rs, nil
}

// Load decodes a file that may contain one Mesh document beside other
// documents. The Mesh is nil when the file has none.
func Load(data []byte) (*Mesh, []config.Resource, error) {
	mesh, rs, err := decodeAll(data)
	if err != nil {
		return nil, nil, err
	}
	if mesh == nil {
		return nil, rs, nil
	}
	if r, ok := meshDefaultResource(&mesh.Mesh); ok {
		rs = append(rs, r)
	}
	return &mesh.Mesh, rs, nil
}

// LoadMesh decodes the file of `weft up -f`: exactly one Mesh document and
// any other documents, returned to be applied once the mesh runs.
func LoadMesh(data []byte) (*Mesh, []config.Resource, error) {
	mesh, rs, err := Load(data)
	if err != nil {
		return nil, nil, err
	}
	if mesh == nil {
		return nil, nil, fmt.Errorf("no %s document found: the file must declare its workloads with apiVersion: %s, kind: %s", MeshKind, MeshAPIVersion, MeshKind)
	}
	return mesh, rs, nil
}

type meshDoc struct {
	Mesh
	doc int
}

func decodeAll(data []byte) (*meshDoc, []config.Resource, error) {
	var errs []error
	var rs []config.Resource
	var mesh *meshDoc
	for i, text := range splitDocuments(data) {
		n := i + 1
		r, docErrs := decodeDocument(n, text)
		if len(docErrs) > 0 {
			errs = append(errs, docErrs...)
			continue
		}
		if m, ok := r.Spec.(*Mesh); ok {
			if mesh != nil {
				errs = append(errs, fmt.Errorf("document %d (%s %s): a file declares one %s (already document %d); merge their workloads",
					n, MeshKind, m.Name, MeshKind, mesh.doc))
				continue
			}
			mesh = &meshDoc{Mesh: *m, doc: n}
			continue
		}
		rs = append(rs, r)
	}
	seen := map[string]int{}
	for _, r := range rs {
		seen[r.ID()]++
	}
	for _, r := range rs {
		if seen[r.ID()] > 1 {
			errs = append(errs, fmt.Errorf("%s %s/%s appears %d times in the file; keep one", r.Kind, r.Namespace, r.Name, seen[r.ID()]))
			seen[r.ID()] = 0
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if len(rs) == 0 && mesh == nil {
		return nil, nil, errors.New("the file holds no documents; give at least one (apiVersion, kind, metadata, spec)")
	}
	return mesh, rs, nil
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?\r?$`)

// splitDocuments cuts a multi-document YAML stream at "---" lines and
// drops documents holding only blank lines and comments, so "document N"
// counts the documents a reader sees.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, part := range separator.Split(string(data), -1) {
		empty := true
		for line := range strings.SplitSeq(part, "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") && line != "..." {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(part))
		}
	}
	return docs
}

// header is the part of every document outside spec.
type header struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   metadata `json:"metadata"`
	Spec       any      `json:"spec"`
}

type metadata struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// decodeDocument decodes document n; errors start with "document n".
func decodeDocument(n int, text []byte) (config.Resource, []error) {
	var r config.Resource
	prefix := fmt.Sprintf("document %d", n)
	fail := func(errs ...error) (config.Resource, []error) {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("%s: %w", prefix, e)
		}
		return r, out
	}
	raw, err := yaml.YAMLToJSON(text)
	if err != nil {
		return fail(fmt.Errorf("invalid YAML: %w", err))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fail(fmt.Errorf("invalid document: %w", err))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fail(fmt.Errorf("must be a mapping with apiVersion, kind, metadata and spec, not %s", describe(v)))
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kindName, _ := obj["kind"].(string)
	if apiVersion == "" || kindName == "" {
		return fail(fmt.Errorf("apiVersion and kind are required (supported: %s)", supported()))
	}
	var k *kind
	for i := range kinds {
		if kinds[i].apiVersion == apiVersion && kinds[i].kind == kindName {
			k = &kinds[i]
		}
	}
	if k == nil {
		return fail(fmt.Errorf("apiVersion/kind %s %s is not supported (supported: %s)", apiVersion, kindName, supported()))
	}
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if name != "" {
		prefix = fmt.Sprintf("document %d (%s %s)", n, kindName, name)
	}
	errs := checkShape(obj, reflectHeader, "")
	if len(errs) > 0 {
		return fail(errs...)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return fail(fmt.Errorf("invalid document: %w", err))
	}
	ns := h.Metadata.Namespace
	switch {
	case name == "" && kindName != MeshKind:
		errs = append(errs, errors.New("metadata.name: required"))
	case name != "" && (len(name) > 253 || !dnsSubdomain.MatchString(name)):
		errs = append(errs, fmt.Errorf("metadata.name: %q is not valid: use lowercase letters, digits, '-' and '.'", name))
	}
	if ns == "" {
		ns = config.DefaultNamespace
	} else if msg := split.CheckServiceName(ns); msg != "" {
		errs = append(errs, fmt.Errorf("metadata.namespace: %s", strings.Replace(msg, "service name", "namespace", 1)))
	}
	if _, ok := obj["spec"].(map[string]any); !ok {
		errs = append(errs, errors.New("spec: required"))
		return fail(errs...)
	}
	spec, specErrs := k.decode(obj, raw, apiVersion)
	errs = append(errs, specErrs...)
	if len(errs) > 0 {
		return fail(errs...)
	}
	return config.Resource{APIVersion: apiVersion, Kind: kindName, Name: name, Namespace: ns, Spec: spec, Raw: raw}, nil
}

// decodeSpec checks and decodes the document's spec into a value of type S.
func decodeSpec[S any](obj map[string]any, raw []byte) (*S, []error) {
	var doc struct {
		Spec S `json:"spec"`
	}
	if errs := checkShape(obj["spec"], reflectOf[S](), "spec"); len(errs) > 0 {
		return nil, errs
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, []error{fmt.Errorf("invalid document: %w", err)}
	}
	return &doc.Spec, nil
}

type trafficSplitSpec struct {
	Service  string                `json:"service"`
	Backends []trafficSplitBackend `json:"backends"`
}

type trafficSplitBackend struct {
	Service string          `json:"service"`
	Weight  json.RawMessage `json:"weight"`
}

func decodeTrafficSplit(obj map[string]any, raw []byte, apiVersion string) (any, []error) {
	spec, errs := decodeSpec[trafficSplitSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	quantities := apiVersion == split.Group+"/v1alpha1"
	ts := &split.TrafficSplit{Service: spec.Service}
	milli := make([]uint64, len(spec.Backends))
	scale := true
	for i, b := range spec.Backends {
		field := fmt.Sprintf("spec.backends[%d].weight", i)
		m, err := parseWeight(b.Weight, quantities)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		milli[i] = m
		if m%1000 != 0 {
			scale = false
		}
	}
	if errs != nil {
		return nil, errs
	}
	for i, b := range spec.Backends {
		w := milli[i]
		if scale {
			w /= 1000
		}
		if w > 1<<32-1 {
			errs = append(errs, fmt.Errorf("spec.backends[%d].weight: too large (at most 4294967295)", i))
		}
		ts.Backends = append(ts.Backends, split.Backend{Service: b.Service, Weight: uint32(w)})
	}
	errs = append(errs, ts.Validate()...)
	if errs != nil {
		return nil, errs
	}
	return ts, nil
}

var (
	reflectHeader = reflect.TypeFor[header]()
)

func reflectOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

var quantity = regexp.MustCompile(`^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m|k|M|G|Ki|Mi|Gi)?$`)

// parseWeight returns a weight in thousandths. Integers are valid in every
// version; v1alpha1 weights are Kubernetes quantities ("500m", "1", 0.5).
func parseWeight(raw json.RawMessage, quantities bool) (uint64, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, errors.New("required: give the backend a weight (an integer, 0 for no traffic)")
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, fmt.Errorf("must be an integer: %w", err)
		}
		if !quantities {
			return 0, fmt.Errorf("must be an integer, not the string %q (quantities like \"500m\" are valid only in v1alpha1)", str)
		}
		s = strings.TrimSpace(str)
	} else if strings.ContainsAny(s, ".eE") && !quantities {
		return 0, fmt.Errorf("must be an integer, not %s", s)
	}
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("must not be negative")
	}
	if strings.ContainsAny(s, "eE") { // a JSON number in exponent form
		var f float64
		if err := json.Unmarshal([]byte(s), &f); err != nil || f > 1e15 {
			return 0, fmt.Errorf("must be an integer or a quantity like \"500m\", not %s", s)
		}
		return uint64(f*1000 + 0.5), nil
	}
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		if quantities {
			return 0, fmt.Errorf("must be an integer or a quantity like \"500m\", not %q", s)
		}
		return 0, fmt.Errorf("must be an integer, not %s", s)
	}
	mult := map[string]uint64{"m": 1, "": 1000, "k": 1e6, "M": 1e9, "G": 1e12, "Ki": 1024e3, "Mi": 1024 * 1024e3, "Gi": 1024 * 1024 * 1024e3}[m[2]]
	whole, frac, _ := strings.Cut(m[1], ".")
	var v uint64
	for _, c := range whole {
		v = v*10 + uint64(c-'0')
		if v > 1<<32 {
			return 0, errors.New("too large (at most 4294967295)")
		}
	}
	if v > (1<<32-1)*1000/mult {
		return 0, errors.New("too large (at most 4294967295)")
	}
	v *= mult
	// Fractional digits beyond a thousandth of the unit are dropped.
	scaleDown := mult
	for _, c := range frac {
		scaleDown /= 10
		if scaleDown == 0 {
			break
		}
		v += uint64(c-'0') * scaleDown
	}
	if v > (1<<32-1)*1000 {
		return 0, errors.New("too large (at most 4294967295)")
	}
	return v, nil
}

// ResourceSpec returns the spec of r as the user wrote it (from r.Raw),
// falling back to the decoded spec.
func ResourceSpec(r *config.Resource) json.RawMessage {
	var doc struct {
		Spec json.RawMessage `json:"spec"`
	}
	if len(r.Raw) > 0 && json.Unmarshal(r.Raw, &doc) == nil && len(doc.Spec) > 0 {
		return doc.Spec
	}
	b, err := json.Marshal(r.Spec)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// sortedUnique returns the distinct strings of ss in order.
func sortedUnique(ss []string) []string {
	m := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !m[s] {
			m[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
