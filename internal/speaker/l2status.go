package speaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
)

// Labels on ServiceL2Status objects, to find them by Service.
const (
	LabelServiceName      = "ironlb.io/service-name"
	LabelServiceNamespace = "ironlb.io/service-namespace"
)

// l2StatusName names the ServiceL2Status of a Service announced by a node:
// stable, unique and a valid object name whatever they are called. One per
// node, not per Service: a dual-stack Service's two addresses may be won by
// two nodes, and each must own its object.
func l2StatusName(key, node string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + node))
	return "l2-" + hex.EncodeToString(sum[:8])
}

// desiredStatuses are the ServiceL2Status objects this node must have: one
// per Service it announces, by object name.
func desiredStatuses(node, namespace string, mine map[netip.Addr]election.Announcement) map[string]*v1beta1.ServiceL2Status {
	out := map[string]*v1beta1.ServiceL2Status{}
	for _, a := range mine {
		for _, key := range a.Services {
			ns, name, _ := strings.Cut(key, "/")
			obj := &v1beta1.ServiceL2Status{
				ObjectMeta: metav1.ObjectMeta{
					Name:      l2StatusName(key, node),
					Namespace: namespace,
					Labels:    map[string]string{LabelServiceName: name, LabelServiceNamespace: ns},
				},
				Status: v1beta1.ServiceL2StatusStatus{Node: node, ServiceName: name, ServiceNamespace: ns},
			}
			if prev, ok := out[obj.Name]; ok {
				// A dual-stack Service has two addresses; list every
				// interface either is answered on.
				obj.Status.Interfaces = prev.Status.Interfaces
			}
			for _, i := range a.Interfaces {
				if !slices.ContainsFunc(obj.Status.Interfaces, func(x v1beta1.InterfaceInfo) bool { return x.Name == i }) {
					obj.Status.Interfaces = append(obj.Status.Interfaces, v1beta1.InterfaceInfo{Name: i})
				}
			}
			slices.SortFunc(obj.Status.Interfaces, func(a, b v1beta1.InterfaceInfo) int { return strings.Compare(a.Name, b.Name) })
			out[obj.Name] = obj
		}
	}
	return out
}

// writeStatuses makes the ServiceL2Status objects say what this node
// announces. Each node writes and deletes its own; the first alive node
// also removes those of nodes that no longer announce (a crashed node
// cannot remove its own).
func (s *speaker) writeStatuses(ctx context.Context, res election.Result, mine map[netip.Addr]election.Announcement, alive []string) error {
	var list v1beta1.ServiceL2StatusList
	if err := s.client.List(ctx, &list, client.InNamespace(s.cfg.Namespace)); err != nil {
		return fmt.Errorf("listing servicel2statuses in %s: %w", s.cfg.Namespace, err)
	}
	have := map[string]*v1beta1.ServiceL2Status{}
	for i := range list.Items {
		have[list.Items[i].Name] = &list.Items[i]
	}
	want := desiredStatuses(s.cfg.NodeName, s.cfg.Namespace, mine)
	announced := map[string]bool{}
	for _, a := range res.Announcements {
		for _, key := range a.Services {
			announced[l2StatusName(key, a.Node)] = true
		}
	}
	reporter := len(alive) > 0 && alive[0] == s.cfg.NodeName

	var errs []error
	for name, w := range want {
		cur := have[name]
		if cur == nil {
			cur = w.DeepCopy()
			if err := s.client.Create(ctx, cur); err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("creating servicel2status %s: %w", name, err))
				continue
			} else if err != nil {
				continue // the cache is behind; the next sync updates it
			}
			cur.Status = v1beta1.ServiceL2StatusStatus{}
		}
		if statusEqual(cur.Status, w.Status) {
			continue
		}
		upd := cur.DeepCopy()
		upd.Status = w.Status
		if err := s.client.Status().Update(ctx, upd); err != nil {
			errs = append(errs, fmt.Errorf("writing servicel2status %s: %w", name, err))
		}
	}
	for name, cur := range have {
		if want[name] != nil {
			continue
		}
		mineToDrop := cur.Status.Node == s.cfg.NodeName
		orphan := reporter && !announced[name]
		if !mineToDrop && !orphan {
			continue
		}
		err := s.client.Delete(ctx, cur, client.Preconditions{ResourceVersion: &cur.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting servicel2status %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func statusEqual(a, b v1beta1.ServiceL2StatusStatus) bool {
	return a.Node == b.Node && a.ServiceName == b.ServiceName && a.ServiceNamespace == b.ServiceNamespace &&
		slices.Equal(a.Interfaces, b.Interfaces)
}
