// Package anchors copies the mesh's trust anchors into a ConfigMap in
// every namespace (weft-trust-anchors, key ca.crt), where injected proxies
// mount them, as Kubernetes does with kube-root-ca.crt: a pod can mount
// only its own namespace's ConfigMaps.
//
// The controller in Kubernetes mode imports it. New does no I/O; Run
// blocks until its context ends. A Publisher is not safe to Run twice.
package anchors

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"weft.dev/weft/internal/control/inject"
)

// ManagedByLabel marks the ConfigMaps the publisher owns.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// Publisher keeps the ConfigMap in every namespace.
type Publisher struct {
	client kubernetes.Interface
	pem    []byte
	resync time.Duration
	log    *slog.Logger
	// ownerNS, if set, owns every ConfigMap (an owner reference to that
	// Namespace), so deleting the control plane's namespace lets the
	// garbage collector delete them all.
	ownerNS string
	owner   []metav1.OwnerReference
}

// OwnedBy makes the control plane's namespace ns the owner of every
// ConfigMap the publisher writes: deleting that namespace (weft uninstall)
// deletes them, even one written while the uninstall runs. It returns p.
func (p *Publisher) OwnedBy(ns string) *Publisher {
	p.ownerNS = ns
	return p
}

// New returns a Publisher of pem (the trust anchors' PEM). resync is how
// often every namespace's ConfigMap is checked again (someone may edit or
// delete it); 0 means five minutes. log nil discards.
func New(client kubernetes.Interface, pem []byte, resync time.Duration, log *slog.Logger) *Publisher {
	if resync <= 0 {
		resync = 5 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{client: client, pem: bytes.Clone(pem), resync: resync, log: log.With("component", "anchors")}
}

// Run watches namespaces and their trust-anchor ConfigMaps and writes the
// ConfigMap wherever it is missing or differs, until ctx ends. Failed
// writes are retried with backoff and logged; Run returns nil at the end.
func (p *Publisher) Run(ctx context.Context) error {
	if p.ownerNS != "" {
		if err := p.lookUpOwner(ctx); err != nil {
			return err
		}
	}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	nsFactory := informers.NewSharedInformerFactory(p.client, p.resync)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(p.client, p.resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "metadata.name=" + inject.AnchorsConfigMap
		}))
	enqueueNS := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			q.Add(ns.Name)
		}
	}
	enqueueCM := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			q.Add(cm.Namespace)
		}
	}
	if _, err := nsFactory.Core().V1().Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueNS, UpdateFunc: func(_, n any) { enqueueNS(n) }}); err != nil {
		return fmt.Errorf("watch namespaces: %w", err)
	}
	cmInformer := cmFactory.Core().V1().ConfigMaps()
	if _, err := cmInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) { enqueueCM(n) }, DeleteFunc: enqueueCM}); err != nil {
		return fmt.Errorf("watch ConfigMaps: %w", err)
	}
	nsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	defer nsFactory.Shutdown()
	defer cmFactory.Shutdown()
	go func() { <-ctx.Done(); q.ShutDown() }()
	for {
		ns, quit := q.Get()
		if quit {
			return nil
		}
		if err := p.ensure(ctx, ns); err != nil && ctx.Err() == nil {
			p.log.Warn("trust anchors not written; retrying", "namespace", ns, "err", err)
			q.AddRateLimited(ns)
		} else {
			q.Forget(ns)
		}
		q.Done(ns)
	}
}

// lookUpOwner reads the owner namespace's UID, retrying until it answers.
func (p *Publisher) lookUpOwner(ctx context.Context) error {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		ns, err := p.client.CoreV1().Namespaces().Get(ctx, p.ownerNS, metav1.GetOptions{})
		if err == nil {
			p.owner = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: ns.Name, UID: ns.UID}}
			return nil
		}
		p.log.Warn("owner namespace not read; retrying", "namespace", p.ownerNS, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// owned reports whether refs already name the owner.
func (p *Publisher) owned(refs []metav1.OwnerReference) bool {
	for _, o := range p.owner {
		found := false
		for _, r := range refs {
			found = found || r.UID == o.UID
		}
		if !found {
			return false
		}
	}
	return true
}

// ensure creates or corrects the ConfigMap in ns.
func (p *Publisher) ensure(ctx context.Context, ns string) error {
	cms := p.client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: inject.AnchorsConfigMap, Namespace: ns, Labels: map[string]string{ManagedByLabel: "weft"},
				OwnerReferences: p.owner},
			Data: map[string]string{inject.AnchorsKey: string(p.pem)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) && terminating(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data[inject.AnchorsKey] == string(p.pem) && p.owned(cm.OwnerReferences) {
		return nil
	}
	cm = cm.DeepCopy()
	if !p.owned(cm.OwnerReferences) {
		cm.OwnerReferences = append(cm.OwnerReferences, p.owner...)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[inject.AnchorsKey] = string(p.pem)
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// terminating reports a create refused because the namespace is being
// deleted: nothing to publish there.
func terminating(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}
