package ipvs

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// Schedulers are the IPVS schedulers the speaker accepts: round robin,
// weighted round robin, least connections and Maglev hashing.
var Schedulers = []string{"rr", "wrr", "lc", "mh"}

// FwdMasq is IP_VS_CONN_F_MASQ, the NAT forwarding method: the real
// server's address replaces the VIP and the reply is un-NATed on its way
// back through this node.
const FwdMasq uint32 = 0x0000

// fwdMask is IP_VS_CONN_F_FWD_MASK: the bits of a destination's connection
// flags that hold the forwarding method.
const fwdMask uint32 = 0x0007

// flagHashed is IP_VS_SVC_F_HASHED, which the kernel sets on every service
// it holds; it is not part of what we program.
const flagHashed uint32 = 0x0002

// Service is one IPVS virtual service (VIP, protocol, port) with its real
// servers, as desired or as read from the kernel.
type Service struct {
	forwarding.Key
	// Scheduler is the IPVS scheduler's name (rr, wrr, lc, mh, ...).
	Scheduler string
	// Flags are the service's IP_VS_SVC_F_* flags, without HASHED.
	Flags uint32
	// Dests are the real servers, sorted by address and port, distinct.
	Dests []Dest
}

// Dest is one real server of a service.
type Dest struct {
	netip.AddrPort
	// FwdMethod is the IP_VS_CONN_F_* forwarding method (FwdMasq).
	FwdMethod uint32
	Weight    uint32
}

// String names a service as ipvsadm does: "tcp 192.0.2.1:80".
func (s Service) String() string {
	return fmt.Sprintf("%s %s", s.Protocol, netip.AddrPortFrom(s.VIP, s.Port))
}

// sameConfig reports whether two services differ only in their real
// servers.
func (s Service) sameConfig(o Service) bool {
	return s.Scheduler == o.Scheduler && s.Flags == o.Flags
}

// Desired turns forwarding rules into IPVS services: one per rule, with
// the scheduler sched, and its endpoints as NAT real servers of weight 1.
// Rules without endpoints get no service. Sorted by key.
func Desired(rules []forwarding.Rule, sched string) []Service {
	out := make([]Service, 0, len(rules))
	for _, r := range rules {
		if len(r.Endpoints) == 0 {
			continue
		}
		s := Service{Key: r.Key, Scheduler: sched, Dests: make([]Dest, 0, len(r.Endpoints))}
		for _, ep := range r.Endpoints {
			s.Dests = append(s.Dests, Dest{AddrPort: ep, FwdMethod: FwdMasq, Weight: 1})
		}
		sortDests(s.Dests)
		s.Dests = slices.CompactFunc(s.Dests, func(a, b Dest) bool { return a.AddrPort == b.AddrPort })
		out = append(out, s)
	}
	sortServices(out)
	return slices.CompactFunc(out, func(a, b Service) bool { return a.Key == b.Key })
}

// OpKind is what one change to the IPVS table does.
type OpKind int

// The changes a diff is made of, each one generic netlink request.
const (
	AddService OpKind = iota + 1
	UpdateService
	DeleteService
	AddDest
	UpdateDest
	DeleteDest
)

var opNames = map[OpKind]string{
	AddService: "add service", UpdateService: "update service", DeleteService: "delete service",
	AddDest: "add destination", UpdateDest: "update destination", DeleteDest: "delete destination",
}

func (k OpKind) String() string {
	if n, ok := opNames[k]; ok {
		return n
	}
	return fmt.Sprintf("op %d", int(k))
}

// Op is one change: to Service (its key, scheduler and flags; its Dests
// are not read) or, for the destination kinds, to Dest within Service.
type Op struct {
	Kind    OpKind
	Service Service
	Dest    Dest
}

func (o Op) String() string {
	switch o.Kind {
	case AddDest, UpdateDest, DeleteDest:
		return fmt.Sprintf("%s %s of %s", o.Kind, o.Dest.AddrPort, o.Service)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Service)
}

// Diff returns the changes that turn the services in current into those in
// desired: services only in current are deleted (with their real
// servers), services only in desired are added and then filled, and a
// service in both gets an update if its scheduler or flags differ and
// destination changes for the real servers that differ. Services and real
// servers that are equal produce nothing. Pure and deterministic: the
// result does not depend on the order of either argument. Within one
// service, deletions come before additions.
func Diff(current, desired []Service) []Op {
	have := make(map[forwarding.Key]Service, len(current))
	for _, s := range current {
		have[s.Key] = s
	}
	want := make(map[forwarding.Key]Service, len(desired))
	for _, s := range desired {
		want[s.Key] = s
	}
	keys := make([]forwarding.Key, 0, len(have)+len(want))
	for k := range have {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, forwarding.Key.Compare)

	var ops []Op
	for _, k := range keys {
		h, had := have[k]
		w, wanted := want[k]
		switch {
		case !wanted:
			ops = append(ops, Op{Kind: DeleteService, Service: bare(h)})
		case !had:
			ops = append(ops, Op{Kind: AddService, Service: bare(w)})
			for _, d := range distinct(w.Dests) {
				ops = append(ops, Op{Kind: AddDest, Service: bare(w), Dest: d})
			}
		default:
			if !h.sameConfig(w) {
				ops = append(ops, Op{Kind: UpdateService, Service: bare(w)})
			}
			ops = append(ops, diffDests(bare(w), h.Dests, w.Dests)...)
		}
	}
	return ops
}

// diffDests returns the destination changes of one service.
func diffDests(svc Service, current, desired []Dest) []Op {
	have := map[netip.AddrPort]Dest{}
	for _, d := range current {
		have[d.AddrPort] = d
	}
	want := map[netip.AddrPort]Dest{}
	for _, d := range desired {
		want[d.AddrPort] = d
	}
	var dels, rest []Op
	for _, d := range distinct(current) {
		if _, ok := want[d.AddrPort]; !ok {
			dels = append(dels, Op{Kind: DeleteDest, Service: svc, Dest: d})
		}
	}
	for _, d := range distinct(desired) {
		switch h, ok := have[d.AddrPort]; {
		case !ok:
			rest = append(rest, Op{Kind: AddDest, Service: svc, Dest: d})
		case h != d:
			rest = append(rest, Op{Kind: UpdateDest, Service: svc, Dest: d})
		}
	}
	return append(dels, rest...)
}

// bare is s without its real servers, as an Op carries it.
func bare(s Service) Service {
	s.Dests = nil
	return s
}

// distinct returns ds sorted with one entry per address and port (the
// last given wins, as in a map).
func distinct(ds []Dest) []Dest {
	m := make(map[netip.AddrPort]Dest, len(ds))
	for _, d := range ds {
		m[d.AddrPort] = d
	}
	out := make([]Dest, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sortDests(out)
	return out
}

func sortDests(ds []Dest) {
	slices.SortFunc(ds, func(a, b Dest) int { return a.AddrPort.Compare(b.AddrPort) })
}

func sortServices(ss []Service) {
	slices.SortStableFunc(ss, func(a, b Service) int { return a.Key.Compare(b.Key) })
}

// equalServices reports whether two sorted service lists hold the same
// services, configuration and real servers.
func equalServices(a, b []Service) bool {
	return slices.EqualFunc(a, b, func(x, y Service) bool {
		return x.Key == y.Key && x.sameConfig(y) && slices.Equal(x.Dests, y.Dests)
	})
}

// protocolNumber is the IP protocol number IPVS keys services on.
func protocolNumber(p forwarding.Protocol) (uint16, bool) {
	switch p {
	case forwarding.TCP:
		return 6, true
	case forwarding.UDP:
		return 17, true
	case forwarding.SCTP:
		return 132, true
	}
	return 0, false
}

func protocolOf(n uint16) (forwarding.Protocol, bool) {
	for _, p := range []forwarding.Protocol{forwarding.TCP, forwarding.UDP, forwarding.SCTP} {
		if m, _ := protocolNumber(p); m == n {
			return p, true
		}
	}
	return "", false
}
