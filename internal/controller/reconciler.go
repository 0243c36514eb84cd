package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/allocator"
)

// Config is what the controller is told by its flags.
type Config struct {
	// Namespace holds the IPAddressPools the controller uses.
	Namespace string
	// Class is the spec.loadBalancerClass the controller answers to.
	Class string
	// Unclassed makes Services without a loadBalancerClass ours too.
	Unclassed bool
	// Workers is how many Services are reconciled at once. The allocator
	// is serialised; workers overlap the API writes.
	Workers int
	// IPMode is written in status.loadBalancer.ingress[].ipMode: Proxy when
	// the speakers forward the traffic themselves (--dataplane=nftables),
	// so that kube-proxy does not capture it too; VIP (the default)
	// otherwise.
	IPMode corev1.LoadBalancerIPMode
}

// Reconciler keeps every LoadBalancer Service's addresses in step with the
// pools. The allocator is its memory; the Service status is its output.
type Reconciler struct {
	client  client.Client
	events  events.EventRecorder
	log     *slog.Logger
	metrics *Metrics
	cfg     Config

	// kick requeues Services from inside the controller: those waiting for
	// addresses when some are released.
	kick chan event.TypedGenericEvent[reconcile.Request]
	// poolsChanged wakes the pool status writer.
	poolsChanged chan struct{}

	mu       sync.Mutex
	alloc    *allocator.Allocator
	restored bool
	// poolsSeen fingerprints the pool objects last given to the allocator.
	poolsSeen string
	pools     []allocator.Pool
	badPools  map[string]error
	pending   map[types.NamespacedName]bool
	// metricPools are the pools whose metric series exist.
	metricPools map[string]bool
}

// NewReconciler builds a Reconciler. Wire it into a manager with Setup.
func NewReconciler(c client.Client, rec events.EventRecorder, log *slog.Logger, m *Metrics, cfg Config) *Reconciler {
	return &Reconciler{
		client:       c,
		events:       rec,
		log:          log,
		metrics:      m,
		cfg:          cfg,
		kick:         make(chan event.TypedGenericEvent[reconcile.Request], 1024),
		poolsChanged: make(chan struct{}, 1),
		alloc:        allocator.New(nil),
		badPools:     map[string]error{},
		pending:      map[types.NamespacedName]bool{},
		metricPools:  map[string]bool{},
	}
}

// Reconcile brings one Service's addresses in line with the pools.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if err := r.prepare(ctx); err != nil {
		return reconcile.Result{}, err
	}
	key := req.String()
	var svc corev1.Service
	if err := r.client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			r.release(req.NamespacedName, "service deleted")
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting service %s: %w", key, err)
	}
	if !handles(&svc, r.cfg.Class, r.cfg.Unclassed) || !svc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.drop(ctx, &svc)
	}

	var ns corev1.Namespace
	if err := r.client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("getting namespace %s: %w", svc.Namespace, err)
	}
	want, err := request(&svc, ns.Labels)
	if err != nil {
		// The Service asks for something malformed. Nothing it holds is taken
		// away: the user fixes the annotation and the next update retries.
		r.refuse(&svc, allocator.ReasonInvalidRequest, err.Error())
		return reconcile.Result{}, nil
	}

	status := ingressIPs(&svc)
	res, prev, err := r.assign(want, status)
	if err != nil {
		return reconcile.Result{}, r.refused(ctx, &svc, status, err)
	}
	if err := r.writeStatus(ctx, &svc, res); err != nil {
		return reconcile.Result{}, err
	}
	r.announce(&svc, prev, status, res)
	return reconcile.Result{}, nil
}

// prepare rebuilds the allocator from every Service's status the first time
// it runs, before any new address is handed out, so that a restart or a
// change of leader moves nothing; and gives it the current pools.
func (r *Reconciler) prepare(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.syncPoolsLocked(ctx); err != nil {
		return err
	}
	if r.restored {
		return nil
	}
	var list corev1.ServiceList
	// Read only: no need to copy 10,000 Services out of the cache.
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing services to restore allocations: %w", err)
	}
	svcs := list.Items
	// Oldest first: if two Services claim one address, the one that had it
	// first keeps it.
	sort.Slice(svcs, func(i, j int) bool {
		a, b := svcs[i].CreationTimestamp, svcs[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	nsLabels := map[string]map[string]string{}
	var held []allocator.Held
	for i := range svcs {
		svc := &svcs[i]
		ips := ingressIPs(svc)
		if len(ips) == 0 || !handles(svc, r.cfg.Class, r.cfg.Unclassed) {
			continue
		}
		if _, ok := nsLabels[svc.Namespace]; !ok {
			var ns corev1.Namespace
			if err := r.client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("getting namespace %s: %w", svc.Namespace, err)
			}
			nsLabels[svc.Namespace] = ns.Labels
		}
		want, err := request(svc, nsLabels[svc.Namespace])
		if err != nil {
			// Its requested addresses are malformed now, but it was given
			// these: hold them for it all the same.
			want.RequestedIPs = nil
		}
		held = append(held, allocator.Held{Service: want, IPs: ips})
	}
	failed := r.alloc.Restore(held)
	for key, err := range failed {
		r.log.Warn("allocation not restored", "service", key, "err", err)
	}
	r.log.Info("allocations restored", "services", len(held)-len(failed), "failed", len(failed))
	r.restored = true
	r.signalPools()
	return nil
}

// syncPoolsLocked gives the allocator the pools from the cache when they
// changed since last time.
func (r *Reconciler) syncPoolsLocked(ctx context.Context) error {
	var list v1beta1.IPAddressPoolList
	if err := r.client.List(ctx, &list, client.InNamespace(r.cfg.Namespace)); err != nil {
		return fmt.Errorf("listing pools in %s: %w", r.cfg.Namespace, err)
	}
	var fp strings.Builder
	for _, p := range list.Items {
		fmt.Fprintf(&fp, "%s/%s/%d;", p.Name, p.UID, p.Generation)
	}
	if fp.String() == r.poolsSeen && r.pools != nil {
		return nil
	}
	r.poolsSeen = fp.String()
	r.pools, r.badPools = parsePools(list.Items)
	r.alloc.SetPools(r.pools)
	r.signalPools()
	return nil
}

// assign runs the allocator for one Service. current is what the allocator
// already holds for it, or else what its status says: the allocator's memory
// is newer than a status read from the cache.
func (r *Reconciler) assign(want allocator.Service, status []netip.Addr) (res allocator.Result, prev []netip.Addr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := types.NamespacedName{}
	key.Namespace, key.Name, _ = strings.Cut(want.Key, "/")
	prev = status
	if held, ok := r.alloc.Holds(want.Key); ok {
		prev = held.IPs
	}
	res, err = r.alloc.Assign(want, prev)
	if err != nil {
		r.pending[key] = true
	} else {
		delete(r.pending, key)
	}
	if err == nil && !slices.Equal(res.IPs, prev) {
		r.signalPools()
	}
	return res, prev, err
}

// refused handles an allocation the allocator turned down. A Service whose
// current addresses still lie in a pool keeps them: refusing a new request
// must not take away what works. One whose addresses left every pool loses
// them.
func (r *Reconciler) refused(ctx context.Context, svc *corev1.Service, status []netip.Addr, err error) error {
	var aerr *allocator.Error
	reason := allocator.ReasonInvalidRequest
	if errors.As(err, &aerr) {
		reason = aerr.Reason
	}
	name := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	r.mu.Lock()
	held, holds := r.alloc.Holds(name.String())
	inPools := holds && len(held.IPs) > 0 && !slices.ContainsFunc(held.IPs, func(ip netip.Addr) bool {
		_, ok := r.alloc.PoolOf(ip)
		return !ok
	})
	r.mu.Unlock()
	if inPools {
		r.refuse(svc, reason, fmt.Sprintf("%v; keeping %s from pool %s", err, joinIPs(held.IPs), held.Pool))
		return r.writeStatus(ctx, svc, held)
	}
	r.refuse(svc, reason, err.Error())
	if holds {
		r.release(name, "no longer in any pool: "+err.Error())
		r.mu.Lock()
		r.pending[name] = true
		r.mu.Unlock()
	}
	if len(status) > 0 {
		return r.writeStatus(ctx, svc, allocator.Result{})
	}
	return nil
}

func (r *Reconciler) refuse(svc *corev1.Service, reason allocator.Reason, msg string) {
	r.metrics.allocationErrors.WithLabelValues(string(reason)).Inc()
	r.log.Info("allocation failed", "service", svc.Namespace+"/"+svc.Name, "reason", reason, "err", msg)
	r.events.Eventf(svc, nil, corev1.EventTypeWarning, ReasonAllocationFailed, "Allocate", "%s: %s", reason, msg)
}

// announce logs and records what changed for a Service.
func (r *Reconciler) announce(svc *corev1.Service, prev, status []netip.Addr, res allocator.Result) {
	if slices.Equal(res.IPs, status) {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	ips := joinIPs(res.IPs)
	if len(status) == 0 {
		r.log.Info("ip allocated", "service", key, "ip", ips, "pool", res.Pool)
		r.events.Eventf(svc, nil, corev1.EventTypeNormal, ReasonIPAllocated, "Allocate", "Assigned %s from pool %s", ips, res.Pool)
		return
	}
	r.log.Info("ip reassigned", "service", key, "ip", ips, "previous", joinIPs(status), "pool", res.Pool)
	r.events.Eventf(svc, nil, corev1.EventTypeNormal, ReasonIPReassigned, "Allocate",
		"Assigned %s from pool %s in place of %s, which no longer fits the pools or the Service's request", ips, res.Pool, joinIPs(status))
}

// writeStatus makes the Service's status and pool annotation say res. It
// writes nothing when they already do.
//
// Both go in one write to the status subresource: for Services the API
// server keeps metadata changes made there, which halves the writes per
// Service. TestStatusWriteKeepsAnnotation guards that behaviour.
func (r *Reconciler) writeStatus(ctx context.Context, svc *corev1.Service, res allocator.Result) error {
	want := ingress(res.IPs, r.cfg.IPMode)
	if len(res.IPs) == 0 {
		want = nil
	}
	pool := svc.Annotations[v1beta1.AnnotationAllocatedFromPool]
	if ingressEqual(svc.Status.LoadBalancer.Ingress, want) && pool == res.Pool {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = want
	if res.Pool == "" {
		delete(upd.Annotations, v1beta1.AnnotationAllocatedFromPool)
	} else {
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[v1beta1.AnnotationAllocatedFromPool] = res.Pool
	}
	if err := r.client.Status().Update(ctx, upd); err != nil {
		return fmt.Errorf("writing status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname &&
			(x.IPMode == nil) == (y.IPMode == nil) && (x.IPMode == nil || *x.IPMode == *y.IPMode)
	})
}

// drop releases a Service that is no longer ours (type or class changed,
// or it is being deleted) and clears the status we wrote.
func (r *Reconciler) drop(ctx context.Context, svc *corev1.Service) error {
	name := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	released := r.release(name, "service is no longer a load balancer of ours")
	if len(released) == 0 || !svc.DeletionTimestamp.IsZero() {
		return nil
	}
	r.events.Eventf(svc, nil, corev1.EventTypeNormal, ReasonIPReleased, "Release", "Released %s", joinIPs(released))
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 || svc.Annotations[v1beta1.AnnotationAllocatedFromPool] != "" {
		return r.writeStatus(ctx, svc, allocator.Result{})
	}
	return nil
}

// release frees what a Service holds and requeues those waiting for an
// address, since one may now be free.
func (r *Reconciler) release(name types.NamespacedName, why string) []netip.Addr {
	r.mu.Lock()
	delete(r.pending, name)
	ips := r.alloc.Release(name.String())
	var waiting []types.NamespacedName
	if len(ips) > 0 {
		for k := range r.pending {
			waiting = append(waiting, k)
		}
		r.signalPools()
	}
	r.mu.Unlock()
	if len(ips) > 0 {
		r.log.Info("ip released", "service", name.String(), "ip", joinIPs(ips), "reason", why)
	}
	for _, k := range waiting {
		r.kick <- event.TypedGenericEvent[reconcile.Request]{Object: reconcile.Request{NamespacedName: k}}
	}
	return ips
}

// signalPools marks pool status out of date without blocking.
func (r *Reconciler) signalPools() {
	select {
	case r.poolsChanged <- struct{}{}:
	default:
	}
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}
