package memory

import (
	"fmt"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/policy"
)

// checkPolicy verifies the references of an authorization document: the
// workload a Server selects and the target of an AuthorizationPolicy must
// exist, and two InboundPolicyDefaults must not claim the same scope. rs
// is the batch being applied, whose Servers count as existing.
func checkPolicy(snap *config.Snapshot, rs []config.Resource, r *config.Resource) []error {
	var errs []error
	id := r.ID()
	serviceMissing := func(field, name string) {
		if _, ok := snap.Services[config.Key(name, r.Namespace)]; !ok {
			errs = append(errs, fmt.Errorf("%s: %s: service %q not found in namespace %s (services: %s); start it or fix the name",
				id, field, name, r.Namespace, servicesIn(snap, r.Namespace)))
		}
	}
	switch spec := r.Spec.(type) {
	case *policy.Server:
		if spec.Service != "" {
			serviceMissing("spec.podSelector.service", spec.Service)
		}
		for _, k := range []string{"app", "service"} {
			if v, ok := spec.MatchLabels[k]; ok {
				serviceMissing("spec.podSelector.matchLabels."+k, v)
			}
		}
		if spec.PortName != "" {
			errs = append(errs, fmt.Errorf("%s: spec.port: workloads of this mesh have no named ports; give the port number (or omit port to select every port)", id))
		}
	case *policy.AuthorizationPolicy:
		switch spec.TargetKind {
		case policy.KindServer:
			if !hasResource(snap.Resources, rs, policy.KindServer, r.Namespace, spec.TargetName) {
				errs = append(errs, fmt.Errorf("%s: spec.targetRef.name: Server %q not found in namespace %s; apply the Server first (or in the same file)",
					id, spec.TargetName, r.Namespace))
			}
		case "Service":
			serviceMissing("spec.targetRef.name", spec.TargetName)
		}
	case *policy.InboundPolicyDefault:
		if spec.Workload != "" {
			serviceMissing("spec.workload", spec.Workload)
		}
		scope := defaultScope(r.Namespace, spec)
		for _, o := range append(append([]config.Resource(nil), snap.Resources...), rs...) {
			od, ok := o.Spec.(*policy.InboundPolicyDefault)
			if ok && o.ID() != id && defaultScope(o.Namespace, od) == scope {
				errs = append(errs, fmt.Errorf("%s: %s already sets the default of %s; edit or delete that one instead", id, o.ID(), scope))
				break
			}
		}
	}
	return errs
}

func defaultScope(ns string, d *policy.InboundPolicyDefault) string {
	switch {
	case d.MeshWide:
		return "the mesh"
	case d.Workload != "":
		return "workload " + d.Workload + " in namespace " + ns
	}
	return "namespace " + ns
}

func hasResource(applied, batch []config.Resource, kind, ns, name string) bool {
	for _, set := range [][]config.Resource{applied, batch} {
		for _, o := range set {
			if o.Kind == kind && o.Namespace == ns && o.Name == name {
				return true
			}
		}
	}
	return false
}
