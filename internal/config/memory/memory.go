// Package memory is an in-memory configuration source: the store behind
// local mode (`weft up`, `weft apply`) and behind tests. Every mutation
// publishes a new immutable config.Snapshot (copy on write) with a higher
// version and closes the channel returned by Changed.
//
// Any control-plane package, the local supervisor and tests may import
// memory. A Store is safe for concurrent use; readers never block writers
// for longer than a pointer swap.
package memory

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/policy"
	"weft.dev/weft/internal/control/resilience"
	"weft.dev/weft/internal/control/route"
	"weft.dev/weft/internal/control/split"
)

// ErrNotFound is returned (wrapped) by Delete when no resource has the ID.
var ErrNotFound = errors.New("not found")

// Store is a mutable configuration source publishing immutable snapshots.
type Store struct {
	snap atomic.Pointer[config.Snapshot]

	// mu serialises writers and guards changed.
	mu sync.Mutex
	// changed is closed when the snapshot after the current one is published.
	changed chan struct{}
}

// Store implements config.Source.
var _ config.Source = (*Store)(nil)

// New returns an empty store at version 1 for the given SPIFFE trust
// domain ("" means config.DefaultTrustDomain).
func New(trustDomain string) *Store {
	if trustDomain == "" {
		trustDomain = config.DefaultTrustDomain
	}
	s := &Store{changed: make(chan struct{})}
	s.snap.Store(&config.Snapshot{
		Version:     1,
		TrustDomain: trustDomain,
		Services:    map[config.ServiceKey]*config.Service{},
		Proxies:     map[string]*config.Proxy{},
	})
	return s
}

// Snapshot returns the current snapshot; never nil. Do not modify it.
func (s *Store) Snapshot() *config.Snapshot { return s.snap.Load() }

// Changed returns a channel closed when a newer snapshot is published.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// update runs fn on a shallow copy of the current snapshot under the write
// lock and publishes the copy if fn reports a change. fn must replace, not
// modify, any service, proxy or slice it changes.
func (s *Store) update(fn func(next *config.Snapshot) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.snap.Load()
	next := &config.Snapshot{
		Version:     cur.Version + 1,
		TrustDomain: cur.TrustDomain,
		Services:    maps.Clone(cur.Services),
		Proxies:     maps.Clone(cur.Proxies),
		Resources:   slices.Clone(cur.Resources),
	}
	if !fn(next) {
		return
	}
	s.snap.Store(next)
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetService creates or replaces a service. When svc.Endpoints is nil the
// endpoints the store already holds for the service are kept; a non-nil
// slice (even empty) replaces them. An empty namespace means
// config.DefaultNamespace.
func (s *Store) SetService(svc config.Service) {
	if svc.Namespace == "" {
		svc.Namespace = config.DefaultNamespace
	}
	key := svc.Key()
	s.update(func(next *config.Snapshot) bool {
		old := next.Services[key]
		n := &config.Service{Name: svc.Name, Namespace: svc.Namespace, Protocol: svc.Protocol,
			ClusterIPs: slices.Clone(svc.ClusterIPs), Ports: slices.Clone(svc.Ports)}
		switch {
		case svc.Endpoints != nil:
			n.Endpoints = make([]config.Endpoint, 0, len(svc.Endpoints))
			for _, ep := range svc.Endpoints {
				n.Endpoints = append(n.Endpoints, cloneEndpoint(ep))
			}
			sortEndpoints(n.Endpoints)
		case old != nil:
			n.Endpoints = old.Endpoints
		}
		if old != nil && reflect.DeepEqual(old, n) {
			return false
		}
		next.Services[key] = n
		return true
	})
}

// RemoveService removes a service and its endpoints; unknown keys are
// ignored.
func (s *Store) RemoveService(key config.ServiceKey) {
	s.update(func(next *config.Snapshot) bool {
		if _, ok := next.Services[key]; !ok {
			return false
		}
		delete(next.Services, key)
		return true
	})
}

// UpsertEndpoint adds the endpoint to the service or replaces the one with
// the same address. A service not yet known is created (protocol detect).
func (s *Store) UpsertEndpoint(key config.ServiceKey, ep config.Endpoint) {
	s.editEndpoints(key, true, func(eps []config.Endpoint) []config.Endpoint {
		ep := cloneEndpoint(ep)
		for i := range eps {
			if eps[i].Address == ep.Address {
				if reflect.DeepEqual(eps[i], ep) {
					return nil
				}
				eps[i] = ep
				return eps
			}
		}
		eps = append(eps, ep)
		sortEndpoints(eps)
		return eps
	})
}

// RemoveEndpoint removes the endpoint with address addr from the service;
// unknown services and addresses are ignored.
func (s *Store) RemoveEndpoint(key config.ServiceKey, addr string) {
	s.editEndpoints(key, false, func(eps []config.Endpoint) []config.Endpoint {
		i := slices.IndexFunc(eps, func(ep config.Endpoint) bool { return ep.Address == addr })
		if i < 0 {
			return nil
		}
		return slices.Delete(eps, i, i+1)
	})
}

// SetEndpointReady marks the endpoint with address addr ready or not;
// unknown services and addresses are ignored.
func (s *Store) SetEndpointReady(key config.ServiceKey, addr string, ready bool) {
	s.editEndpoints(key, false, func(eps []config.Endpoint) []config.Endpoint {
		i := slices.IndexFunc(eps, func(ep config.Endpoint) bool { return ep.Address == addr })
		if i < 0 || eps[i].Ready == ready {
			return nil
		}
		eps[i].Ready = ready
		return eps
	})
}

// editEndpoints applies fn to a copy of the service's endpoints; fn returns
// nil when nothing changed (an empty non-nil slice means "now empty").
func (s *Store) editEndpoints(key config.ServiceKey, create bool, fn func([]config.Endpoint) []config.Endpoint) {
	s.update(func(next *config.Snapshot) bool {
		old := next.Services[key]
		if old == nil {
			if !create {
				return false
			}
			old = &config.Service{Name: key.Name(), Namespace: key.Namespace()}
			if old.Namespace == "" {
				old.Namespace = config.DefaultNamespace
				key = old.Key()
			}
		}
		eps := fn(slices.Clone(old.Endpoints))
		if eps == nil {
			return false
		}
		n := *old
		n.Endpoints = slices.Clip(eps)
		next.Services[key] = &n
		return true
	})
}

// SetProxy registers or replaces a proxy by its ID.
func (s *Store) SetProxy(p config.Proxy) {
	if p.Namespace == "" {
		p.Namespace = config.DefaultNamespace
	}
	p.Ports = slices.Clone(p.Ports)
	s.update(func(next *config.Snapshot) bool {
		if old := next.Proxies[p.ID]; old != nil && reflect.DeepEqual(*old, p) {
			return false
		}
		next.Proxies[p.ID] = &p
		return true
	})
}

// RemoveProxy forgets a proxy; unknown IDs are ignored.
func (s *Store) RemoveProxy(id string) {
	s.update(func(next *config.Snapshot) bool {
		if _, ok := next.Proxies[id]; !ok {
			return false
		}
		delete(next.Proxies, id)
		return true
	})
}

// Change reports what Apply did (or would do) with one resource.
type Change struct {
	// ID is the resource's ID, "Kind/namespace/name".
	ID        string
	Kind      string
	Namespace string
	Name      string
	// Action is "created", "configured" or "unchanged".
	Action string
}

// Actions of a Change.
const (
	Created    = "created"
	Configured = "configured"
	Unchanged  = "unchanged"
)

// Apply validates the resources against the current snapshot (references
// to services, conflicts with other resources) and applies all of them, or
// none when any is invalid; the error then joins one error per problem,
// each naming the resource and field. Resources with an ID already applied
// replace it in place; new ones are appended.
func (s *Store) Apply(rs []config.Resource) ([]Change, error) {
	var changes []Change
	var err error
	s.update(func(next *config.Snapshot) bool {
		changes, err = plan(next, rs)
		if err != nil {
			return false
		}
		changed := false
		for i, r := range rs {
			if changes[i].Action == Unchanged {
				continue
			}
			changed = true
			r.Raw = slices.Clone(r.Raw)
			j := slices.IndexFunc(next.Resources, func(o config.Resource) bool { return o.ID() == r.ID() })
			if j >= 0 {
				next.Resources[j] = r
			} else {
				next.Resources = append(next.Resources, r)
			}
		}
		return changed
	})
	return changes, err
}

// Plan validates like Apply and reports what Apply would do, without
// changing anything (a dry run).
func (s *Store) Plan(rs []config.Resource) ([]Change, error) {
	return plan(s.Snapshot(), rs)
}

// Delete removes the applied resource with the given ID
// ("Kind/namespace/name"). It returns an error wrapping ErrNotFound when no
// resource has that ID.
func (s *Store) Delete(id string) error {
	found := false
	s.update(func(next *config.Snapshot) bool {
		i := slices.IndexFunc(next.Resources, func(r config.Resource) bool { return r.ID() == id })
		if i < 0 {
			return false
		}
		found = true
		next.Resources = slices.Delete(next.Resources, i, i+1)
		return true
	})
	if !found {
		return fmt.Errorf("resource %s: %w", id, ErrNotFound)
	}
	return nil
}

// plan checks rs against snap and returns one Change per resource.
func plan(snap *config.Snapshot, rs []config.Resource) ([]Change, error) {
	var errs []error
	changes := make([]Change, 0, len(rs))
	batch := map[string]int{}
	// splitOf maps a root service to the TrafficSplit ID splitting it, after
	// the batch is applied.
	splitOf := map[config.ServiceKey]string{}
	for _, r := range snap.Resources {
		if ts, ok := r.Spec.(*split.TrafficSplit); ok {
			splitOf[config.Key(ts.Service, r.Namespace)] = r.ID()
		}
	}
	for i, r := range rs {
		id := r.ID()
		c := Change{ID: id, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Action: Created}
		if j, dup := batch[id]; dup {
			errs = append(errs, fmt.Errorf("%s: appears twice in this apply (resources %d and %d); keep one", id, j+1, i+1))
		}
		batch[id] = i
		if r.Name == "" || r.Namespace == "" {
			errs = append(errs, fmt.Errorf("%s: name and namespace are required", id))
		}
		for _, old := range snap.Resources {
			if old.ID() != id {
				continue
			}
			c.Action = Configured
			if old.APIVersion == r.APIVersion && reflect.DeepEqual(old.Spec, r.Spec) {
				c.Action = Unchanged
			}
		}
		switch spec := r.Spec.(type) {
		case *split.TrafficSplit:
			errs = append(errs, checkSplit(snap, &r, spec, splitOf)...)
		case *route.Route:
			errs = append(errs, checkRoute(snap, &r, spec)...)
		case resilience.Policy:
			errs = append(errs, resilience.Check(snap, rs, &r)...)
		case *policy.Server, *policy.AuthorizationPolicy, *policy.InboundPolicyDefault:
			errs = append(errs, checkPolicy(snap, rs, &r)...)
		case nil:
			errs = append(errs, fmt.Errorf("%s: the document has no decoded spec", id))
		default:
			errs = append(errs, fmt.Errorf("%s: kind %s cannot be applied to this mesh", id, r.Kind))
		}
		changes = append(changes, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return changes, nil
}

// checkSplit verifies that the split's services exist and that no other
// TrafficSplit splits the same root service.
func checkSplit(snap *config.Snapshot, r *config.Resource, ts *split.TrafficSplit, splitOf map[config.ServiceKey]string) []error {
	var errs []error
	id := r.ID()
	root := config.Key(ts.Service, r.Namespace)
	if other, ok := splitOf[root]; ok && other != id {
		errs = append(errs, fmt.Errorf("%s: spec.service: service %q is already split by %s; edit or delete that one instead", id, ts.Service, other))
	} else {
		splitOf[root] = id
	}
	missing := func(field, name string) error {
		return fmt.Errorf("%s: %s: service %q not found in namespace %s (services: %s); start it or fix the name",
			id, field, name, r.Namespace, servicesIn(snap, r.Namespace))
	}
	if _, ok := snap.Services[root]; !ok {
		errs = append(errs, missing("spec.service", ts.Service))
	}
	for i, b := range ts.Backends {
		if _, ok := snap.Services[config.Key(b.Service, r.Namespace)]; !ok {
			errs = append(errs, missing(fmt.Sprintf("spec.backends[%d].service", i), b.Service))
		}
	}
	return errs
}

func servicesIn(snap *config.Snapshot, ns string) string {
	var names []string
	for _, svc := range snap.Services {
		if svc.Namespace == ns {
			names = append(names, svc.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func cloneEndpoint(ep config.Endpoint) config.Endpoint {
	ep.Labels = maps.Clone(ep.Labels)
	return ep
}

func sortEndpoints(eps []config.Endpoint) {
	slices.SortFunc(eps, func(a, b config.Endpoint) int { return strings.Compare(a.Address, b.Address) })
}
