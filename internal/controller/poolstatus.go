package controller

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/allocator"
)

// poolStatusDelay coalesces bursts of allocations into one status write per
// pool: 10,000 Services assigned at start-up cost a handful of pool writes,
// not 10,000.
const poolStatusDelay = 250 * time.Millisecond

// runPoolStatus writes every pool's status after the pools or their usage
// change, until ctx ends.
func (r *Reconciler) runPoolStatus(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.poolsChanged:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poolStatusDelay):
		}
		if err := r.writePoolStatuses(ctx); err != nil {
			r.log.Warn("pool status not written", "err", err)
			r.signalPools() // try again after the next delay
		}
	}
}

// poolFacts is what the status of one pool is made from, read under the
// lock in one go.
type poolFacts struct {
	usage   allocator.Usage
	err     error
	overlap []string
}

func (r *Reconciler) writePoolStatuses(ctx context.Context) error {
	var list v1beta1.IPAddressPoolList
	if err := r.client.List(ctx, &list, client.InNamespace(r.cfg.Namespace)); err != nil {
		return fmt.Errorf("listing pools in %s: %w", r.cfg.Namespace, err)
	}
	r.mu.Lock()
	if !r.restored {
		// Usage is unknown until the allocator is rebuilt; writing zeros
		// would mislead.
		r.mu.Unlock()
		return nil
	}
	facts := map[string]*poolFacts{}
	for name, err := range r.badPools {
		facts[name] = &poolFacts{err: err}
	}
	for _, p := range r.pools {
		facts[p.Name] = &poolFacts{usage: r.alloc.Usage(p.Name)}
	}
	for _, o := range allocator.Overlaps(r.pools) {
		facts[o.A].overlap = append(facts[o.A].overlap, fmt.Sprintf("%s (%s-%s)", o.B, o.Range.First, o.Range.Last))
		facts[o.B].overlap = append(facts[o.B].overlap, fmt.Sprintf("%s (%s-%s)", o.A, o.Range.First, o.Range.Last))
	}
	r.mu.Unlock()

	var errs []error
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range list.Items {
		obj := &list.Items[i]
		f, ok := facts[obj.Name]
		if !ok {
			continue // created after the allocator last looked; its own event brings it
		}
		status := poolStatus(obj, f, now)
		r.metrics.setPool(obj.Name, status.AssignedIPv4, status.AssignedIPv6, status.AvailableIPv4, status.AvailableIPv6)
		if equality.Semantic.DeepEqual(status, obj.Status) {
			continue
		}
		r.recordPoolChange(obj, status)
		upd := obj.DeepCopy()
		upd.Status = status
		if err := r.client.Status().Update(ctx, upd); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", obj.Name, err))
		}
	}
	r.forgetDeletedPools(list.Items)
	if len(errs) > 0 {
		return fmt.Errorf("writing pool status: %v", errs)
	}
	return nil
}

// poolStatus is the status a pool should have. Conditions keep their
// transition time while unchanged.
func poolStatus(obj *v1beta1.IPAddressPool, f *poolFacts, now metav1.Time) v1beta1.IPAddressPoolStatus {
	s := v1beta1.IPAddressPoolStatus{
		AssignedIPv4:  clamp(f.usage.AssignedV4),
		AssignedIPv6:  clamp(f.usage.AssignedV6),
		AvailableIPv4: clamp(f.usage.AvailableV4),
		AvailableIPv6: clamp(f.usage.AvailableV6),
		Conditions:    append([]metav1.Condition(nil), obj.Status.Conditions...),
	}
	s.Assigned = clamp(f.usage.AssignedV4 + f.usage.AssignedV6)
	s.Available = s.AvailableIPv4
	if s.AvailableIPv6 > math.MaxInt64-s.Available {
		s.Available = math.MaxInt64
	} else {
		s.Available += s.AvailableIPv6
	}
	ready := metav1.Condition{Type: v1beta1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Valid",
		Message: "addresses are handed out from this pool", ObservedGeneration: obj.Generation, LastTransitionTime: now}
	if f.err != nil {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "InvalidAddresses", f.err.Error()
	}
	meta.SetStatusCondition(&s.Conditions, ready)
	overlap := metav1.Condition{Type: v1beta1.ConditionOverlapping, Status: metav1.ConditionFalse, Reason: "NoOverlap",
		Message: "no other pool holds these addresses", ObservedGeneration: obj.Generation, LastTransitionTime: now}
	if len(f.overlap) > 0 {
		overlap.Status, overlap.Reason = metav1.ConditionTrue, "Overlap"
		overlap.Message = "addresses also in pool " + strings.Join(f.overlap, ", ") +
			"; each address is still given to one Service only"
	}
	// SetStatusCondition keeps the old transition time of an unchanged
	// condition, so an unchanged pool compares equal and is not written.
	meta.SetStatusCondition(&s.Conditions, overlap)
	return s
}

// recordPoolChange turns condition changes into Events on the pool.
func (r *Reconciler) recordPoolChange(obj *v1beta1.IPAddressPool, s v1beta1.IPAddressPoolStatus) {
	for _, c := range []struct{ typ, reason string }{
		{v1beta1.ConditionOverlapping, ReasonPoolOverlap},
	} {
		cond := meta.FindStatusCondition(s.Conditions, c.typ)
		old := meta.FindStatusCondition(obj.Status.Conditions, c.typ)
		if cond != nil && cond.Status == metav1.ConditionTrue && (old == nil || old.Status != metav1.ConditionTrue || old.Message != cond.Message) {
			r.log.Warn("pools overlap", "pool", obj.Name, "reason", cond.Message)
			r.events.Eventf(obj, nil, corev1.EventTypeWarning, c.reason, "Validate", "%s", cond.Message)
		}
	}
	ready := meta.FindStatusCondition(s.Conditions, v1beta1.ConditionReady)
	old := meta.FindStatusCondition(obj.Status.Conditions, v1beta1.ConditionReady)
	if ready.Status == metav1.ConditionFalse && (old == nil || old.Status != metav1.ConditionFalse || old.Message != ready.Message) {
		r.log.Warn("pool invalid", "pool", obj.Name, "err", ready.Message)
		r.events.Eventf(obj, nil, corev1.EventTypeWarning, ReasonPoolInvalid, "Validate", "%s", ready.Message)
	}
}

// forgetDeletedPools drops the metric series of pools that are gone.
func (r *Reconciler) forgetDeletedPools(live []v1beta1.IPAddressPool) {
	seen := map[string]bool{}
	for _, p := range live {
		seen[p.Name] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.metricPools {
		if !seen[name] {
			r.metrics.deletePool(name)
			delete(r.metricPools, name)
		}
	}
	for name := range seen {
		r.metricPools[name] = true
	}
}

func clamp(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
