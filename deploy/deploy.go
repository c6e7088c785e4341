// Package deploy holds the Kubernetes manifests `weft install` prints that
// are plain files: the CustomResourceDefinitions of Weft's kinds
// (policy.weft.dev), of SMI TrafficSplit and, copied unchanged from the
// upstream release, of Gateway API HTTPRoute and GRPCRoute. They are
// embedded with go:embed so the weft binary carries them.
//
// Only the CLI's install code imports deploy. Everything here is read-only
// and safe to use concurrently.
package deploy

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
)

// GatewayAPIVersion is the Gateway API release whose CRDs are embedded
// (the version of sigs.k8s.io/gateway-api in go.mod).
const GatewayAPIVersion = "v1.6.3"

//go:embed crds/weft/*.yaml crds/smi/*.yaml crds/gateway-api/*.yaml
var crds embed.FS

// CRD is one CustomResourceDefinition file.
type CRD struct {
	// Set is "weft", "smi" or "gateway-api".
	Set string
	// Name is the file name, e.g. policy.weft.dev_servers.yaml.
	Name string
	// YAML is the file's content.
	YAML []byte
}

// Sets of CRDs, in the order install prints them.
var Sets = []string{"weft", "smi", "gateway-api"}

// CRDs returns the CRD files of the given sets (all when none is given),
// by set in the order of Sets, then by file name.
func CRDs(sets ...string) ([]CRD, error) {
	if len(sets) == 0 {
		sets = Sets
	}
	var out []CRD
	for _, set := range Sets {
		want := false
		for _, s := range sets {
			want = want || s == set
		}
		if !want {
			continue
		}
		names, err := fs.Glob(crds, "crds/"+set+"/*.yaml")
		if err != nil {
			return nil, fmt.Errorf("deploy: list %s CRDs: %w", set, err)
		}
		sort.Strings(names)
		for _, n := range names {
			b, err := crds.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("deploy: read %s: %w", n, err)
			}
			out = append(out, CRD{Set: set, Name: n[len("crds/"+set+"/"):], YAML: b})
		}
	}
	return out, nil
}
