// Package kube is the configuration source of a control plane running on
// Kubernetes. It watches Services, EndpointSlices and Pods through
// client-go informers, and the documents users apply with kubectl (Weft's
// kinds, SMI TrafficSplit, Gateway API routes) as unstructured objects that
// it decodes with internal/config/file, so that they are validated exactly
// as in the local mode. It publishes immutable config.Snapshots, rebuilt
// from the informers' caches after a short debounce.
//
// Only the controller imports kube (never the proxy: it pulls in
// client-go). A Source's methods are safe to call concurrently; Run is
// called once.
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/control/split"
)

// Annotations and names the injector puts on a pod; a pod carrying either
// has the proxy.
const (
	InjectedAnnotation = "weft.dev/injected"
	ProxyContainer     = "weft-proxy"
	// AdminPort is the proxy's admin port in an injected pod.
	AdminPort = 4191
)

// Options configure a Source.
type Options struct {
	// Client reads Services, EndpointSlices and Pods; required.
	Client kubernetes.Interface
	// Dynamic reads the users' documents (custom resources); nil watches
	// none.
	Dynamic dynamic.Interface
	// TrustDomain of the SPIFFE IDs; "" means config.DefaultTrustDomain.
	TrustDomain string
	// Namespace restricts the source to one namespace; "" watches all.
	Namespace string
	// Debounce is how long changes gather before a new snapshot is built;
	// 0 means 100ms.
	Debounce time.Duration
	// Rediscover is how often the API server is asked for kinds installed
	// since the source started (CRDs applied after the controller); 0
	// means one minute, a negative value never.
	Rediscover time.Duration
	// Logger receives rejected documents and watch problems; nil discards.
	Logger *slog.Logger
}

// Source is a config.Source fed by the Kubernetes API.
type Source struct {
	opts Options
	log  *slog.Logger

	snap atomic.Pointer[config.Snapshot]
	// kick has room for one pending "something changed".
	kick chan struct{}
	// synced is closed once the caches are filled and the first snapshot
	// is published.
	synced chan struct{}

	// mu guards changed, rejected and watched.
	mu sync.Mutex
	// changed is closed when the snapshot after the current one is published.
	changed chan struct{}
	// rejected maps the ID of each document that failed validation to why.
	rejected map[string]string
	// watched lists the apiVersion/kind of the documents being watched.
	watched []string
}

var _ config.Source = (*Source)(nil)

// New returns a Source; it does nothing until Run.
func New(opts Options) *Source {
	if opts.TrustDomain == "" {
		opts.TrustDomain = config.DefaultTrustDomain
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Rediscover == 0 {
		opts.Rediscover = time.Minute
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		opts:     opts,
		log:      logger.With("component", "kube-source"),
		kick:     make(chan struct{}, 1),
		synced:   make(chan struct{}),
		changed:  make(chan struct{}),
		rejected: map[string]string{},
	}
	s.snap.Store(&config.Snapshot{
		Version:     1,
		TrustDomain: opts.TrustDomain,
		Services:    map[config.ServiceKey]*config.Service{},
		Proxies:     map[string]*config.Proxy{},
	})
	return s
}

// Snapshot returns the current snapshot; never nil. Do not modify it.
func (s *Source) Snapshot() *config.Snapshot { return s.snap.Load() }

// Changed returns a channel closed when a newer snapshot is published.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Synced returns a channel closed once the first snapshot built from
// filled caches is published.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Rejected returns, for every watched document that failed validation, its
// ID ("Kind/namespace/name") and why. Such documents are left out of the
// snapshot.
func (s *Source) Rejected() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.rejected))
	for k, v := range s.rejected {
		out[k] = v
	}
	return out
}

// Watched returns the apiVersion and kind ("split.smi-spec.io/v1alpha4
// TrafficSplit") of the documents the source watches: those whose
// definitions the API server serves (looked for again every Rediscover).
func (s *Source) Watched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.watched)
}

// listers are the caches a snapshot is built from.
type listers struct {
	services  listerscorev1.ServiceLister
	pods      listerscorev1.PodLister
	slices    listersdiscoveryv1.EndpointSliceLister
	documents []cache.GenericLister
}

// Run watches the API until ctx ends. It returns an error only when it
// cannot start (the API's discovery fails); once the caches are filled
// watch errors are retried by client-go and logged.
func (s *Source) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	factory := informers.NewSharedInformerFactoryWithOptions(s.opts.Client, 0, informers.WithNamespace(s.opts.Namespace))
	// Shutdown waits for the informers, which stop when ctx ends: cancel
	// first, whatever way Run returns.
	defer func() { cancel(); factory.Shutdown() }()
	var l listers
	svc := factory.Core().V1().Services()
	pods := factory.Core().V1().Pods()
	eps := factory.Discovery().V1().EndpointSlices()
	for _, inf := range []cache.SharedIndexInformer{svc.Informer(), pods.Informer(), eps.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
	}
	l.services, l.pods, l.slices = svc.Lister(), pods.Lister(), eps.Lister()

	var docs *documentWatch
	if s.opts.Dynamic != nil {
		docs = &documentWatch{
			factory: dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.opts.Dynamic, 0, s.opts.Namespace, nil),
			known:   map[schema.GroupResource]bool{},
			handler: handler,
		}
		defer func() { cancel(); docs.factory.Shutdown() }()
		if err := s.discover(ctx, docs, &l, true); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("kubernetes source: the cache of %v did not fill", typ)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	s.rebuild(&l)
	close(s.synced)

	var rediscover <-chan time.Time
	if docs != nil && s.opts.Rediscover > 0 {
		ticker := time.NewTicker(s.opts.Rediscover)
		defer ticker.Stop()
		rediscover = ticker.C
	}
	// The debounce timer runs only while a change is pending: a snapshot
	// follows the first change of a burst by at most Debounce.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			if !pending {
				pending = true
				timer.Reset(s.opts.Debounce)
			}
		case <-timer.C:
			pending = false
			s.rebuild(&l)
		case <-rediscover:
			if err := s.discover(ctx, docs, &l, false); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "looking for newly installed kinds", "err", err)
			}
		}
	}
}

// documentWatch holds the informers of the users' documents.
type documentWatch struct {
	factory dynamicinformer.DynamicSharedInformerFactory
	// known lists the resources being watched, whatever their version.
	known   map[schema.GroupResource]bool
	handler cache.ResourceEventHandler
}

// discover starts informers for the kinds the API server serves that are
// not watched yet, and waits for their caches.
func (s *Source) discover(ctx context.Context, docs *documentWatch, l *listers, first bool) error {
	gvrs, watched, err := s.resolveKinds(ctx, first)
	if err != nil {
		return err
	}
	added := false
	for _, gvr := range gvrs {
		if docs.known[gvr.GroupResource()] {
			continue
		}
		inf := docs.factory.ForResource(gvr)
		if _, err := inf.Informer().AddEventHandler(docs.handler); err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
		docs.known[gvr.GroupResource()] = true
		l.documents = append(l.documents, inf.Lister())
		added = true
		if !first {
			s.log.InfoContext(ctx, "watching a newly installed kind", "resource", gvr.String())
		}
	}
	if !added {
		return nil
	}
	docs.factory.Start(ctx.Done())
	for gvr, ok := range docs.factory.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("kubernetes source: the cache of %v did not fill", gvr)
		}
	}
	s.mu.Lock()
	s.watched = watched
	s.mu.Unlock()
	s.poke()
	return nil
}

func (s *Source) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// resolveKinds finds, for every kind the file decoder accepts, the
// resource the API server serves it as, preferring the newest version.
// Kinds whose definitions are not installed are skipped (logged when
// logMissing). It also returns their "apiVersion kind" names.
func (s *Source) resolveKinds(ctx context.Context, logMissing bool) ([]schema.GroupVersionResource, []string, error) {
	type groupKind struct{ group, kind string }
	versions := map[groupKind][]string{}
	var order []groupKind
	for _, k := range file.Kinds() {
		gk := groupKind{k.Group, k.Kind}
		if _, ok := versions[gk]; !ok {
			order = append(order, gk)
		}
		versions[gk] = append(versions[gk], k.Version)
	}
	disc := s.opts.Client.Discovery()
	var out []schema.GroupVersionResource
	var watched []string
	for _, gk := range order {
		found := false
		vs := versions[gk]
		for i := len(vs) - 1; i >= 0 && !found; i-- {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			gv := schema.GroupVersion{Group: gk.group, Version: vs[i]}
			list, err := disc.ServerResourcesForGroupVersion(gv.String())
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("kubernetes source: discovering %s: %w; check that the API server is reachable and the controller may read its discovery", gv, err)
			}
			for _, r := range list.APIResources {
				if r.Kind == gk.kind && !strings.Contains(r.Name, "/") {
					out = append(out, gv.WithResource(r.Name))
					watched = append(watched, gv.String()+" "+gk.kind)
					found = true
					break
				}
			}
		}
		if !found && logMissing && gk.group != strings.SplitN(file.MeshAPIVersion, "/", 2)[0] {
			s.log.InfoContext(ctx, "kind not installed in the cluster; watched once it is (install the CRDs with `weft install --crds`)",
				"group", gk.group, "kind", gk.kind)
		}
	}
	return out, watched, nil
}

// rebuild builds a snapshot from the caches and publishes it when it
// differs from the current one.
func (s *Source) rebuild(l *listers) {
	next, rejected := s.build(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, msg := range rejected {
		if s.rejected[id] != msg {
			s.log.Warn("document rejected; fix it and apply it again", "resource", id, "err", msg)
		}
	}
	s.rejected = rejected
	cur := s.snap.Load()
	if reflect.DeepEqual(cur.Services, next.Services) && reflect.DeepEqual(cur.Proxies, next.Proxies) &&
		sameResources(cur.Resources, next.Resources) && s.isSynced() {
		return
	}
	next.Version = cur.Version + 1
	s.snap.Store(next)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Source) isSynced() bool {
	select {
	case <-s.synced:
		return true
	default:
		return false
	}
}

func sameResources(a, b []config.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID() != b[i].ID() || a[i].APIVersion != b[i].APIVersion || string(a[i].Raw) != string(b[i].Raw) {
			return false
		}
	}
	return true
}

// build returns the snapshot of the caches (without a version) and the
// documents it left out.
func (s *Source) build(l *listers) (*config.Snapshot, map[string]string) {
	snap := &config.Snapshot{
		TrustDomain: s.opts.TrustDomain,
		Services:    map[config.ServiceKey]*config.Service{},
		Proxies:     map[string]*config.Proxy{},
	}
	pods := map[string]*corev1.Pod{}
	podList, _ := l.pods.List(labels.Everything())
	sort.Slice(podList, func(i, j int) bool {
		return podList[i].Namespace+"/"+podList[i].Name < podList[j].Namespace+"/"+podList[j].Name
	})
	for _, p := range podList {
		pods[p.Namespace+"/"+p.Name] = p
		if px, ok := proxyOf(p); ok {
			if _, dup := snap.Proxies[px.ID]; !dup {
				snap.Proxies[px.ID] = px
			}
		}
	}
	svcList, _ := l.services.List(labels.Everything())
	for _, svc := range svcList {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		snap.Services[config.Key(svc.Name, svc.Namespace)] = &config.Service{
			Name: svc.Name, Namespace: svc.Namespace, Protocol: protocolOf(svc),
			ClusterIPs: clusterIPs(svc), Ports: servicePorts(svc),
		}
	}
	sliceList, _ := l.slices.List(labels.Everything())
	byAddr := map[config.ServiceKey]map[string]config.Endpoint{}
	for _, es := range sliceList {
		name := es.Labels[discoveryv1.LabelServiceName]
		key := config.Key(name, es.Namespace)
		if name == "" || snap.Services[key] == nil || es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		if byAddr[key] == nil {
			byAddr[key] = map[string]config.Endpoint{}
		}
		for _, port := range es.Ports {
			if port.Port == nil || (port.Protocol != nil && *port.Protocol != corev1.ProtocolTCP) {
				continue
			}
			portName := ""
			if port.Name != nil {
				portName = *port.Name
			}
			for _, ep := range es.Endpoints {
				for _, addr := range ep.Addresses {
					e := s.endpoint(pods, es.Namespace, ep, net.JoinHostPort(addr, strconv.Itoa(int(*port.Port))))
					e.PortName = portName
					// The same address may be in two slices while they
					// change: a ready copy wins. Two service ports may
					// share a target port: one endpoint per port name.
					k := e.Address + "/" + portName
					if old, ok := byAddr[key][k]; !ok || (!old.Ready && e.Ready) {
						byAddr[key][k] = e
					}
				}
			}
		}
	}
	for key, m := range byAddr {
		svc := snap.Services[key]
		for _, e := range m {
			svc.Endpoints = append(svc.Endpoints, e)
		}
		sort.Slice(svc.Endpoints, func(i, j int) bool {
			a, b := svc.Endpoints[i], svc.Endpoints[j]
			return a.Address < b.Address || (a.Address == b.Address && a.PortName < b.PortName)
		})
	}
	rejected := map[string]string{}
	for _, dl := range l.documents {
		objs, _ := dl.List(labels.Everything())
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			r, err := decodeDocument(u)
			if err != nil {
				rejected[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = err.Error()
				continue
			}
			snap.Resources = append(snap.Resources, r)
		}
	}
	// Apply order: oldest first, as the API server accepted them.
	created := map[string]time.Time{}
	for _, dl := range l.documents {
		objs, _ := dl.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				created[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = u.GetCreationTimestamp().Time
			}
		}
	}
	sort.SliceStable(snap.Resources, func(i, j int) bool {
		a, b := snap.Resources[i].ID(), snap.Resources[j].ID()
		if ta, tb := created[a], created[b]; !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a < b
	})
	// As `weft apply` refuses a second TrafficSplit of a root service, the
	// newer one is left out here (the cluster accepted both).
	splitOf := map[config.ServiceKey]string{}
	kept := snap.Resources[:0]
	for _, r := range snap.Resources {
		if ts, ok := r.Spec.(*split.TrafficSplit); ok {
			root := config.Key(ts.Service, r.Namespace)
			if other, dup := splitOf[root]; dup {
				rejected[r.ID()] = fmt.Sprintf("%s %s/%s: spec.service: service %q is already split by %s; edit or delete one of them",
					r.Kind, r.Namespace, r.Name, ts.Service, other)
				continue
			}
			splitOf[root] = r.ID()
		}
		kept = append(kept, r)
	}
	snap.Resources = kept
	return snap, rejected
}

// endpoint describes one address of an EndpointSlice; the pod behind it
// gives its identity and whether it is meshed.
func (s *Source) endpoint(pods map[string]*corev1.Pod, ns string, ep discoveryv1.Endpoint, addr string) config.Endpoint {
	e := config.Endpoint{
		Address: addr,
		// A nil ready condition means unknown, which consumers must take as ready.
		Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready,
	}
	if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
		return e
	}
	refNS := ep.TargetRef.Namespace
	if refNS == "" {
		refNS = ns
	}
	pod := pods[refNS+"/"+ep.TargetRef.Name]
	if pod == nil {
		return e
	}
	if len(pod.Labels) > 0 {
		e.Labels = make(map[string]string, len(pod.Labels))
		for k, v := range pod.Labels {
			e.Labels[k] = v
		}
	}
	if injected(pod) {
		e.Meshed = true
		e.Identity = config.SpiffeID(s.opts.TrustDomain, pod.Namespace, serviceAccount(pod))
	}
	return e
}

func serviceAccount(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName != "" {
		return p.Spec.ServiceAccountName
	}
	return "default"
}

// injected reports whether the pod carries the proxy.
func injected(p *corev1.Pod) bool {
	if p.Annotations[InjectedAnnotation] == "true" {
		return true
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name == ProxyContainer {
				return true
			}
		}
	}
	return false
}

// ProxyID is the proxy id of pod name in namespace ns, as the injector
// passes it (--id=$(WEFT_POD_NAME).$(WEFT_NAMESPACE)): pod names are unique
// per namespace only.
func ProxyID(name, ns string) string { return name + "." + ns }

// proxyOf returns the proxy of an injected, running pod with an IP.
func proxyOf(p *corev1.Pod) (*config.Proxy, bool) {
	if !injected(p) || p.Status.PodIP == "" || p.DeletionTimestamp != nil ||
		p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, false
	}
	service := p.Labels["app.kubernetes.io/name"]
	if service == "" {
		service = p.Labels["app"]
	}
	if service == "" {
		service = serviceAccount(p)
	}
	version := p.Labels["app.kubernetes.io/version"]
	if version == "" {
		version = p.Labels["version"]
	}
	px := &config.Proxy{
		ID:        ProxyID(p.Name, p.Namespace),
		Service:   service,
		Namespace: p.Namespace,
		Version:   version,
		AdminAddr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(AdminPort)),
	}
	for _, c := range p.Spec.Containers {
		if c.Name == ProxyContainer {
			continue
		}
		for _, port := range c.Ports {
			if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
				px.Ports = append(px.Ports, config.InboundPort{Port: uint32(port.ContainerPort), Probes: probesOn(c, port)})
			}
		}
	}
	return px, true
}

// probesOn lists the HTTP and gRPC probes of container c that reach port.
// A probe whose path carries a query is allowed by its path alone.
func probesOn(c corev1.Container, port corev1.ContainerPort) []config.Probe {
	var out []config.Probe
	for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		switch {
		case pr == nil:
		case pr.HTTPGet != nil && targets(pr.HTTPGet.Port, port):
			path, _, _ := strings.Cut(pr.HTTPGet.Path, "?")
			if path == "" {
				path = "/"
			}
			out = append(out, config.Probe{Path: path})
		case pr.GRPC != nil && pr.GRPC.Port == port.ContainerPort:
			out = append(out, config.Probe{GRPC: true})
		}
	}
	return out
}

// targets reports whether a probe's port (a number or a port name) is port.
func targets(p intstr.IntOrString, port corev1.ContainerPort) bool {
	if p.Type == intstr.String {
		return p.StrVal != "" && p.StrVal == port.Name
	}
	return p.IntVal == port.ContainerPort
}

// clusterIPs returns the virtual IPs of svc; none for a headless service.
func clusterIPs(svc *corev1.Service) []string {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if ip != "" && ip != corev1.ClusterIPNone {
			out = append(out, ip)
		}
	}
	return out
}

// servicePorts returns the TCP ports of svc; a target port left unset is
// the port itself, as Kubernetes defaults it.
func servicePorts(svc *corev1.Service) []config.ServicePort {
	var out []config.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		target := p.TargetPort.String()
		if p.TargetPort.IntValue() == 0 && p.TargetPort.StrVal == "" {
			target = strconv.Itoa(int(p.Port))
		}
		out = append(out, config.ServicePort{Name: p.Name, Port: uint32(p.Port), TargetPort: target})
	}
	return out
}

// protocolOf reads the protocol of a Service from its first port's
// appProtocol; without one the proxies detect it.
func protocolOf(svc *corev1.Service) config.Protocol {
	for _, p := range svc.Spec.Ports {
		if p.AppProtocol == nil {
			continue
		}
		switch strings.ToLower(*p.AppProtocol) {
		case "http", "kubernetes.io/http":
			return config.ProtocolHTTP1
		case "kubernetes.io/h2c", "http2", "h2c":
			return config.ProtocolHTTP2
		case "grpc":
			return config.ProtocolGRPC
		case "tcp", "opaque":
			return config.ProtocolTCP
		}
		return config.ProtocolDetect
	}
	return config.ProtocolDetect
}

var documentPrefix = regexp.MustCompile(`(?m)^document 1( \([^)]*\))?: `)

// decodeDocument validates a custom resource with the local mode's decoder,
// from the fields a user writes (server-set metadata dropped).
func decodeDocument(u *unstructured.Unstructured) (config.Resource, error) {
	md := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()}
	if l := u.GetLabels(); len(l) > 0 {
		md["labels"] = l
	}
	if a := u.GetAnnotations(); len(a) > 0 {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
		if len(a) > 0 {
			md["annotations"] = a
		}
	}
	doc := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": md}
	if spec, ok := u.Object["spec"]; ok {
		doc["spec"] = spec
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return config.Resource{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	decodeRaw := raw
	if gv, _ := schema.ParseGroupVersion(u.GetAPIVersion()); gv.Group == split.Group && u.GetKind() == split.Kind {
		// TrafficSplit's versions convert with strategy None: an object
		// written as v1alpha1 keeps its quantity weights ("500m") when read
		// as another version. v1alpha1 decoding accepts both forms.
		doc["apiVersion"] = split.Group + "/" + split.Versions[0]
		if decodeRaw, err = json.Marshal(doc); err != nil {
			return config.Resource{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	rs, err := file.Decode(decodeRaw)
	if err != nil {
		// The decoder names "document 1" of a file; here the object is the document.
		id := fmt.Sprintf("%s %s/%s: ", u.GetKind(), u.GetNamespace(), u.GetName())
		return config.Resource{}, errors.New(documentPrefix.ReplaceAllLiteralString(err.Error(), id))
	}
	if len(rs) != 1 {
		return config.Resource{}, errors.New("decoder returned no document")
	}
	r := rs[0]
	r.APIVersion, r.Raw = u.GetAPIVersion(), raw
	return r, nil
}
