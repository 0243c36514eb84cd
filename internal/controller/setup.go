package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// Setup registers the Service controller and the pool status writer with
// mgr. Both run only while mgr holds the leader lease.
func (r *Reconciler) Setup(mgr manager.Manager) error {
	workers := r.cfg.Workers
	if workers < 1 {
		workers = 1
	}
	kicks := source.Channel(r.kick, handler.TypedFuncs[reconcile.Request, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[reconcile.Request], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(e.Object)
		},
	})
	err := builder.ControllerManagedBy(mgr).
		Named("service").
		// Every Service update is looked at: most are cheap no-ops, and a
		// narrower filter would have to know every field the allocator reads.
		For(&corev1.Service{}).
		// Pool status writes do not bump the generation, so they do not
		// requeue every Service.
		Watches(&v1beta1.IPAddressPool{}, handler.EnqueueRequestsFromMapFunc(r.allServices),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.servicesIn),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WatchesRawSource(kicks).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
	if err != nil {
		return err
	}
	return mgr.Add(manager.RunnableFunc(r.runPoolStatus))
}

// allServices requeues every Service we may handle: a pool change can make
// addresses valid, invalid or free.
func (r *Reconciler) allServices(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.servicesMatching(ctx)
}

// servicesIn requeues the Services of a namespace whose labels changed:
// pools may select Services by namespace labels.
func (r *Reconciler) servicesIn(ctx context.Context, ns client.Object) []reconcile.Request {
	return r.servicesMatching(ctx, client.InNamespace(ns.GetName()))
}

func (r *Reconciler) servicesMatching(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	var list corev1.ServiceList
	// Read only: keys are all we take from the cache's objects.
	if err := r.client.List(ctx, &list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		r.log.Error("listing services to requeue", "err", err)
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		svc := &list.Items[i]
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)})
		}
	}
	return reqs
}
