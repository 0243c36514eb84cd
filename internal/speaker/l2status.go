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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
	"github.com/ironlb/ironlb/internal/kube"
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
				// A dual-stack Service has two addresses; list both and
				// every interface either is answered on.
				obj.Status.Interfaces = prev.Status.Interfaces
				obj.Status.Addresses = prev.Status.Addresses
			}
			obj.Status.Addresses = append(obj.Status.Addresses, a.IP.String())
			slices.Sort(obj.Status.Addresses)
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

// listStatuses reads every ServiceL2Status from the cache, shared with
// it: read them, never change them.
func (s *speaker) listStatuses() []v1beta1.ServiceL2Status {
	return kube.Items[v1beta1.ServiceL2Status](s.api.l2Statuses)
}

// handoverTimeout bounds how long a newly won address waits for the live
// speaker that still lists it to let go (see holdHandovers). That speaker
// lets go within one memberlist propagation and one status write; one
// that has not after this long is cut off from the API server or from
// gossip, and the address must not stay dark because of it.
const handoverTimeout = 2 * time.Second

// holdHandovers keeps this node silent for the addresses it has just won
// that another speaker, alive in this node's view, still lists in its
// ServiceL2Status: that speaker has not yet seen the change that moved
// them (a rejoining node sees everyone at once; the others learn of it by
// gossip a moment later), and answering now would make two MACs answer.
// The old owner stops answering before it rewrites its status, so once
// the status lets go, taking over is break-before-make. A crashed or
// leaving owner is not alive and is not waited for. The held addresses
// are removed from mine; an address is held at most handoverTimeout.
//
// It returns the newly won addresses this node's own statuses already
// list: a restarted speaker's, which are no news. When nothing is newly
// won it reads no statuses at all.
func (s *speaker) holdHandovers(mine map[netip.Addr]election.Announcement, alive []string) map[netip.Addr]bool {
	won := false
	for ip := range mine {
		if _, had := s.announced[ip]; !had {
			won = true
			break
		}
	}
	if !won {
		s.held = nil
		s.holding.Store(false)
		return nil
	}
	return s.hold(s.listStatuses(), mine, alive)
}

// hold is holdHandovers on statuses read.
func (s *speaker) hold(statuses []v1beta1.ServiceL2Status, mine map[netip.Addr]election.Announcement, alive []string) map[netip.Addr]bool {
	claimed := map[netip.Addr]string{}
	listed := map[netip.Addr]bool{}
	for i := range statuses {
		st := &statuses[i].Status
		self := st.Node == s.cfg.NodeName
		if !self && !slices.Contains(alive, st.Node) {
			continue
		}
		for _, a := range st.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			if self {
				listed[ip] = true
			} else {
				claimed[ip] = st.Node
			}
		}
	}
	now := time.Now()
	held := map[netip.Addr]time.Time{}
	var next time.Duration
	for ip := range mine {
		owner, ok := claimed[ip]
		if _, had := s.announced[ip]; had || !ok {
			continue
		}
		since, waiting := s.held[ip]
		if !waiting {
			since = now
			s.log.Info("waiting for the previous owner to stop answering", "ip", ip.String(), "node", s.cfg.NodeName, "owner", owner)
		}
		left := handoverTimeout - now.Sub(since)
		if left <= 0 {
			s.log.Warn("taking over although the previous owner still lists the address", "ip", ip.String(),
				"node", s.cfg.NodeName, "owner", owner, "waited", handoverTimeout.String())
			continue
		}
		held[ip] = since
		delete(mine, ip)
		if next == 0 || left < next {
			next = left
		}
	}
	s.held = held
	s.holding.Store(len(held) > 0)
	if next > 0 {
		time.AfterFunc(next, s.markDirty)
	}
	return listed
}

// writeStatuses makes the ServiceL2Status objects say what this node
// announces. Each node writes and deletes its own; the first alive node
// also removes those of nodes that are not alive (a crashed node cannot
// remove its own). A live node's are left to it: holdHandovers reads
// them to know when that node has let go.
func (s *speaker) writeStatuses(ctx context.Context, mine map[netip.Addr]election.Announcement, alive []string) error {
	statuses := s.listStatuses()
	have := map[string]*v1beta1.ServiceL2Status{}
	for i := range statuses {
		have[statuses[i].Name] = &statuses[i]
	}
	want := desiredStatuses(s.cfg.NodeName, s.cfg.Namespace, mine)
	reporter := len(alive) > 0 && alive[0] == s.cfg.NodeName

	var errs []error
	for name, w := range want {
		cur := have[name]
		if cur == nil {
			created, err := s.api.l2Client.Create(ctx, w, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("creating servicel2status %s: %w", name, err))
				continue
			} else if err != nil {
				continue // the cache is behind; the next sync updates it
			}
			cur = created
		}
		if statusEqual(cur.Status, w.Status) {
			continue
		}
		upd := cur.DeepCopy()
		upd.Status = w.Status
		if _, err := s.api.l2Client.UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("writing servicel2status %s: %w", name, err))
		}
	}
	for name, cur := range have {
		if want[name] != nil {
			continue
		}
		mineToDrop := cur.Status.Node == s.cfg.NodeName
		orphan := reporter && !slices.Contains(alive, cur.Status.Node)
		if !mineToDrop && !orphan {
			continue
		}
		err := s.api.l2Client.Delete(ctx, cur.Name, deleteIfUnchanged(cur.ResourceVersion))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting servicel2status %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func statusEqual(a, b v1beta1.ServiceL2StatusStatus) bool {
	return a.Node == b.Node && a.ServiceName == b.ServiceName && a.ServiceNamespace == b.ServiceNamespace &&
		slices.Equal(a.Interfaces, b.Interfaces) && slices.Equal(a.Addresses, b.Addresses)
}

// deleteIfUnchanged deletes an object only at the resource version read:
// one changed since (by its owner, say) is left for the next sync to judge.
func deleteIfUnchanged(rv string) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}
}
