package memory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/route"
)

// checkRoute verifies that every service an HTTPRoute or GRPCRoute names
// (parents, backends, mirrors) exists, with the port when one is given.
func checkRoute(snap *config.Snapshot, r *config.Resource, rt *route.Route) []error {
	var errs []error
	id := r.ID()
	check := func(ref route.Ref, field, what string) {
		ns := ref.Namespace
		if ns == "" {
			ns = r.Namespace
		}
		key := config.Key(ref.Name, ns)
		if _, ok := snap.Services[key]; !ok {
			errs = append(errs, fmt.Errorf("%s: %s.name: %s service %q not found in namespace %s (services: %s); start it or fix the name",
				id, field, what, ref.Name, ns, servicesIn(snap, ns)))
			return
		}
		if ref.Port == 0 {
			return
		}
		ports := servicePorts(snap, key)
		if len(ports) > 0 && !slices.Contains(ports, uint32(ref.Port)) {
			var ss []string
			for _, p := range ports {
				ss = append(ss, strconv.FormatUint(uint64(p), 10))
			}
			errs = append(errs, fmt.Errorf("%s: %s.port: service %q has no port %d (ports: %s)", id, field, ref.Name, ref.Port, strings.Join(ss, ", ")))
		}
	}
	for _, p := range rt.Parents {
		check(p, p.Field, "parent")
	}
	for _, rule := range rt.Rules {
		for i, b := range rule.Backends {
			check(b.Ref, fmt.Sprintf("%s.backendRefs[%d]", rule.Field, i), "backend")
		}
		for i, f := range rule.Filters {
			if f.Mirror != nil {
				check(f.Mirror.Backend, fmt.Sprintf("%s.filters[%d].requestMirror.backendRef", rule.Field, i), "mirror")
			}
		}
	}
	return errs
}

// servicePorts returns the application ports the proxies of key declare,
// sorted; empty when none is known.
func servicePorts(snap *config.Snapshot, key config.ServiceKey) []uint32 {
	var out []uint32
	for _, p := range snap.Proxies {
		if config.Key(p.Service, p.Namespace) != key {
			continue
		}
		for _, port := range p.Ports {
			if !slices.Contains(out, port.Port) {
				out = append(out, port.Port)
			}
		}
	}
	slices.Sort(out)
	return out
}
