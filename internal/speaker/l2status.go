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

// l2Status is what a ServiceL2Status says: as the cache keeps it (the
// informer's transform parses each object into one), and as this node
// wants its own to say.
type l2Status struct {
	// namespace/name of the object, and its resource version (empty
	// when wanted, not read).
	namespace, name, rv string
	// node answers for addrs on ifaces (none: every interface), for the
	// Service namespace/name.
	node, service string
	addrs         []netip.Addr // sorted
	ifaces        []string     // sorted
}

func (st *l2Status) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: st.namespace, Name: st.name, ResourceVersion: st.rv}
}

// l2StatusOf parses obj, keeping the strings intern returns for its
// namespace, node and interfaces (nil: obj's own). Addresses that do not
// parse are left out: no speaker writes one.
func l2StatusOf(obj *v1beta1.ServiceL2Status, intern func(string) string) *l2Status {
	if intern == nil {
		intern = func(s string) string { return s }
	}
	out := &l2Status{
		namespace: intern(obj.Namespace), name: obj.Name, rv: obj.ResourceVersion, node: intern(obj.Status.Node),
		service: obj.Status.ServiceNamespace + "/" + obj.Status.ServiceName,
	}
	for _, a := range obj.Status.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out.addrs = append(out.addrs, ip)
		}
	}
	for _, i := range obj.Status.Interfaces {
		out.ifaces = append(out.ifaces, intern(i.Name))
	}
	return out
}

// object is the ServiceL2Status that says st, labelled with its Service.
func (st *l2Status) object() *v1beta1.ServiceL2Status {
	ns, name, _ := strings.Cut(st.service, "/")
	obj := &v1beta1.ServiceL2Status{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: st.namespace, Name: st.name, ResourceVersion: st.rv,
			Labels: map[string]string{LabelServiceName: name, LabelServiceNamespace: ns},
		},
		Status: v1beta1.ServiceL2StatusStatus{Node: st.node, ServiceName: name, ServiceNamespace: ns},
	}
	for _, ip := range st.addrs {
		obj.Status.Addresses = append(obj.Status.Addresses, ip.String())
	}
	for _, i := range st.ifaces {
		obj.Status.Interfaces = append(obj.Status.Interfaces, v1beta1.InterfaceInfo{Name: i})
	}
	return obj
}

// says tells whether st and o say the same.
func (st *l2Status) says(o *l2Status) bool {
	return st.node == o.node && st.service == o.service && slices.Equal(st.addrs, o.addrs) && slices.Equal(st.ifaces, o.ifaces)
}

// desiredStatuses are the statuses this node must have: one per Service
// it announces, by object name.
func desiredStatuses(node, namespace string, mine map[netip.Addr]election.Announcement) map[string]*l2Status {
	out := map[string]*l2Status{}
	for _, a := range mine {
		for _, key := range a.Services {
			name := l2StatusName(key, node)
			st := out[name]
			if st == nil {
				st = &l2Status{namespace: namespace, name: name, node: node, service: key}
				out[name] = st
			}
			// A dual-stack Service has two addresses; list both and
			// every interface either is answered on.
			st.addrs = append(st.addrs, a.IP)
			slices.SortFunc(st.addrs, netip.Addr.Compare)
			for _, i := range a.Interfaces {
				if !slices.Contains(st.ifaces, i) {
					st.ifaces = append(st.ifaces, i)
				}
			}
			slices.Sort(st.ifaces)
		}
	}
	return out
}

// listStatuses reads every ServiceL2Status from the cache, shared with
// it: read them, never change them.
func (s *speaker) listStatuses() []*l2Status {
	objs := s.api.l2Statuses.GetStore().List()
	out := make([]*l2Status, 0, len(objs))
	for _, o := range objs {
		if st, ok := o.(*l2Status); ok {
			out = append(out, st)
		}
	}
	return out
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
func (s *speaker) hold(statuses []*l2Status, mine map[netip.Addr]election.Announcement, alive []string) map[netip.Addr]bool {
	claimed := map[netip.Addr]string{}
	listed := map[netip.Addr]bool{}
	for _, st := range statuses {
		self := st.node == s.cfg.NodeName
		if !self && !slices.Contains(alive, st.node) {
			continue
		}
		for _, ip := range st.addrs {
			if self {
				listed[ip] = true
			} else {
				claimed[ip] = st.node
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
	have := make(map[string]*l2Status, len(statuses))
	for _, st := range statuses {
		have[st.name] = st
	}
	want := desiredStatuses(s.cfg.NodeName, s.cfg.Namespace, mine)
	reporter := len(alive) > 0 && alive[0] == s.cfg.NodeName

	var errs []error
	for name, w := range want {
		cur := have[name]
		if cur == nil {
			created, err := s.api.l2Client.Create(ctx, w.object(), metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("creating servicel2status %s: %w", name, err))
				continue
			} else if err != nil {
				continue // the cache is behind; the next sync updates it
			}
			cur = l2StatusOf(created, nil)
		}
		if cur.says(w) {
			continue
		}
		// The API server takes only the status (and the resource
		// version, checked) of a status update.
		upd := *w
		upd.rv = cur.rv
		if _, err := s.api.l2Client.UpdateStatus(ctx, upd.object(), metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("writing servicel2status %s: %w", name, err))
		}
	}
	for name, cur := range have {
		if want[name] != nil {
			continue
		}
		mineToDrop := cur.node == s.cfg.NodeName
		orphan := reporter && !slices.Contains(alive, cur.node)
		if !mineToDrop && !orphan {
			continue
		}
		err := s.api.l2Client.Delete(ctx, cur.name, deleteIfUnchanged(cur.rv))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting servicel2status %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// deleteIfUnchanged deletes an object only at the resource version read:
// one changed since (by its owner, say) is left for the next sync to judge.
func deleteIfUnchanged(rv string) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}
}
