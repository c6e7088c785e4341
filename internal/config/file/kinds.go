package file

import "strings"

// KindVersion is one apiVersion and kind that Decode accepts.
type KindVersion struct {
	// Group is the API group ("split.smi-spec.io"), empty for the core group.
	Group string
	// Version is the group's version ("v1alpha4").
	Version string
	Kind    string
}

// APIVersion returns "group/version" (or "version" for the core group).
func (k KindVersion) APIVersion() string {
	if k.Group == "" {
		return k.Version
	}
	return k.Group + "/" + k.Version
}

// Kinds lists every apiVersion and kind Decode accepts, in the order of its
// registry (the versions of one kind oldest first), so that a configuration
// source reading them from elsewhere (the Kubernetes API) validates them
// exactly like `weft apply` does.
func Kinds() []KindVersion {
	out := make([]KindVersion, 0, len(kinds))
	for _, k := range kinds {
		group, version, ok := strings.Cut(k.apiVersion, "/")
		if !ok {
			group, version = "", k.apiVersion
		}
		out = append(out, KindVersion{Group: group, Version: version, Kind: k.kind})
	}
	return out
}
