// Package install renders the Kubernetes manifests of `weft install`,
// `weft install --crds` and `weft uninstall`: the CRDs embedded in package
// deploy and the control plane (namespace, RBAC, certificates, the
// controller's Deployment and Service, the injector's
// MutatingWebhookConfiguration), built from typed Kubernetes objects so
// the output is valid and, for fixed inputs, byte-for-byte deterministic.
//
// Only the CLI imports install. Its functions are pure apart from
// GenerateCerts (randomness, and files it is asked to read) and are safe
// to call concurrently.
package install

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"weft.dev/weft/deploy"
)

// Object is one manifest, as the JSON object it marshals to.
type Object map[string]any

// Kind returns the object's kind.
func (o Object) Kind() string { s, _ := o["kind"].(string); return s }

// Name returns metadata.name.
func (o Object) Name() string {
	md, _ := o["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}

// ToObject converts a typed Kubernetes object, dropping the empty fields
// typed objects always marshal (creationTimestamp: null, status: {},
// resources: {}) and status.
func ToObject(v any) (Object, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	prune(m)
	// Manifests never carry status.
	delete(m, "status")
	return m, nil
}

func prune(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			prune(c)
			if k == "creationTimestamp" && c == nil {
				delete(t, k)
			}
			if cm, ok := c.(map[string]any); ok && len(cm) == 0 && (k == "status" || k == "resources" || k == "metadata" || k == "spec" || k == "strategy") {
				delete(t, k)
			}
		}
	case []any:
		for _, c := range t {
			prune(c)
		}
	}
}

// CRDOptions choose the CRD sets `weft install --crds` prints.
type CRDOptions struct {
	// SkipGatewayAPI leaves out HTTPRoute and GRPCRoute (for clusters
	// where another release of Gateway API is installed).
	SkipGatewayAPI bool
	// SkipSMI leaves out TrafficSplit.
	SkipSMI bool
}

// CRDs returns the CustomResourceDefinitions to install.
func CRDs(o CRDOptions) ([]Object, error) {
	sets := []string{"weft"}
	if !o.SkipSMI {
		sets = append(sets, "smi")
	}
	if !o.SkipGatewayAPI {
		sets = append(sets, "gateway-api")
	}
	files, err := deploy.CRDs(sets...)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, f := range files {
		var m map[string]any
		if err := yaml.Unmarshal(f.YAML, &m); err != nil {
			return nil, fmt.Errorf("embedded CRD %s: %w", f.Name, err)
		}
		// The label lets weft uninstall find the Gateway API and SMI CRDs
		// this install created, beside Weft's own.
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			return nil, fmt.Errorf("embedded CRD %s has no metadata", f.Name)
		}
		labels, _ := md["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
		}
		labels[PartOfLabel] = "weft"
		md["labels"] = labels
		out = append(out, m)
	}
	return out, nil
}

// Write prints objects as a YAML stream ("yaml", documents separated by
// "---") or as one JSON v1 List ("json"); kubectl apply -f - reads both.
// header, when not empty, is printed as a YAML comment first.
func Write(w io.Writer, objs []Object, format, header string) error {
	switch format {
	case "yaml", "":
		var b strings.Builder
		if header != "" {
			for line := range strings.SplitSeq(strings.TrimRight(header, "\n"), "\n") {
				b.WriteString("# " + line + "\n")
			}
		}
		for _, o := range objs {
			y, err := yaml.Marshal(map[string]any(o))
			if err != nil {
				return fmt.Errorf("encode %s %s: %w", o.Kind(), o.Name(), err)
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		_, err := io.WriteString(w, b.String())
		return err
	case "json":
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = map[string]any(o)
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return fmt.Errorf("encode list: %w", err)
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	return fmt.Errorf("output format %q is not supported: use yaml or json", format)
}

// PartOfLabel, set to "weft", marks what weft install created, CRDs
// included.
const PartOfLabel = "app.kubernetes.io/part-of"

// Uninstall returns references to everything install creates, in an order
// that stops injection first: the webhook, then the control plane, the
// cluster-wide RBAC, Weft's CRDs (and with them every Weft resource), the
// CRDs named in installed (the Gateway API and SMI CRDs a cluster holds
// with PartOfLabel: weft install --crds created them) and the namespace,
// whose deletion also deletes the trust-anchor ConfigMaps it owns.
func Uninstall(namespace string, installed []string) ([]Object, error) {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	ref := func(apiVersion, kind, name, ns string) Object {
		md := map[string]any{"name": name}
		if ns != "" {
			md["namespace"] = ns
		}
		return Object{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	}
	out := []Object{
		ref("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", WebhookName, ""),
		ref("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", ControllerName, ""),
		ref("rbac.authorization.k8s.io/v1", "ClusterRole", ControllerName, ""),
	}
	crds, err := CRDs(CRDOptions{SkipGatewayAPI: true, SkipSMI: true})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range crds {
		names = append(names, c.Name())
	}
	for _, n := range installed {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, ref("apiextensions.k8s.io/v1", "CustomResourceDefinition", n, ""))
	}
	// Deleting the namespace deletes what lives in it.
	out = append(out, ref("v1", "Namespace", namespace, ""))
	return out, nil
}
