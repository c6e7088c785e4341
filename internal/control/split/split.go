// Package split holds the SMI TrafficSplit kind (split.smi-spec.io,
// v1alpha1 to v1alpha4) as the control plane understands it: a root service
// whose traffic is shared by weight among backend services. Every
// configuration source (local files, Kubernetes) maps its documents to
// these types, and the push server turns them into destination backends.
//
// Any control-plane or configuration package may import split; the proxy
// does not. Values are plain data; a TrafficSplit stored in a snapshot must
// not be modified.
package split

import (
	"fmt"
	"regexp"
	"strings"
)

// Group is the API group of TrafficSplit.
const Group = "split.smi-spec.io"

// Kind is the document kind.
const Kind = "TrafficSplit"

// Versions lists the API versions accepted, oldest first.
var Versions = []string{"v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"}

// TrafficSplit shares the traffic sent to Service among Backends by weight.
// Service and the backends are services in the TrafficSplit's namespace.
type TrafficSplit struct {
	// Service is the root service clients address, e.g. "mon-service".
	Service  string    `json:"service"`
	Backends []Backend `json:"backends"`
}

// Backend is one service receiving a share of the root service's traffic.
type Backend struct {
	Service string `json:"service"`
	// Weight relative to the other backends; 0 receives no traffic.
	Weight uint32 `json:"weight"`
}

// FieldError is a validation error naming the field, relative to the
// document root ("spec.backends[1].weight").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Validate checks the spec alone (not whether the services exist) and
// returns one error per problem, each naming its field under "spec.".
func (ts *TrafficSplit) Validate() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if ts.Service == "" {
		add("spec.service", "required: name the root service whose traffic is split")
	} else if msg := CheckServiceName(ts.Service); msg != "" {
		add("spec.service", "%s", msg)
	}
	if len(ts.Backends) == 0 {
		add("spec.backends", "at least one backend is required")
		return errs
	}
	seen := map[string]int{}
	var total uint64
	for i, b := range ts.Backends {
		field := fmt.Sprintf("spec.backends[%d]", i)
		total += uint64(b.Weight)
		if b.Service == "" {
			add(field+".service", "required: name the backend service")
			continue
		}
		if msg := CheckServiceName(b.Service); msg != "" {
			add(field+".service", "%s", msg)
			continue
		}
		if j, dup := seen[b.Service]; dup {
			add(field+".service", "duplicate backend %q (also spec.backends[%d]); list each service once", b.Service, j)
			continue
		}
		seen[b.Service] = i
	}
	if total == 0 {
		add("spec.backends", "all weights are 0; give at least one backend a positive weight")
	}
	return errs
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckServiceName returns why name is not a valid service name (a DNS
// label as in RFC 1123), or "" when it is valid.
func CheckServiceName(name string) string {
	if len(name) > 63 {
		return fmt.Sprintf("%q is longer than 63 characters", name)
	}
	if !dnsLabel.MatchString(name) {
		if strings.Contains(name, ".") {
			return fmt.Sprintf("%q must be a service name without namespace (lowercase letters, digits and '-')", name)
		}
		return fmt.Sprintf("%q is not a valid service name: use lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return ""
}
