// Package ipvs programs node-local service forwarding into the kernel's
// IPVS table over generic netlink, with the VIPs bound to a dummy
// interface this node owns.
//
// Each forwarding rule (VIP, protocol, port) becomes one IPVS virtual
// service whose real servers are the node's own endpoints, forwarded by
// NAT (masquerade: destination NAT only, the pod sees the client's
// address; replies are un-NATed because the pod's route back goes through
// this node). IPVS only takes packets for local addresses, so every VIP
// is bound to the dummy interface ironlb-ipvs0 (/32 or /128), and New sets
// arp_ignore=1 and arp_announce=2 so the kernel never answers ARP for
// them: the speaker answers for the node that won.
//
// A service is IronLB's if its VIP is bound to ironlb-ipvs0 or is one of
// the VIPs it forwards; every other IPVS service (kube-proxy's, say) is
// never read beyond the list nor changed.
//
// Each sync computes the difference between the desired services and
// those the kernel has (Diff) and sends only that, one request each: an
// unchanged service is not touched. A partial sync compares with what the
// last sync left after a cheap check (one dump of the service list, one
// of the interface's addresses); a full sync reads every one of our
// services and its real servers back from the kernel, so it restores
// whatever someone else changed or deleted.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// Kernel is the IPVS table: Client over generic netlink, or a fake.
type Kernel interface {
	Services() ([]Service, error)
	Dests(Service) ([]Dest, error)
	Apply(Op) error
}

// Kind says how much a sync read back.
type Kind string

const (
	// Full read our services and their real servers back from the kernel.
	Full Kind = "full"
	// Partial compared with what the last sync left.
	Partial Kind = "partial"
)

// Result says what a sync did.
type Result struct {
	Kind Kind
	// Reason is why a sync was full: "first", "requested", "interface
	// missing", "addresses changed", "services changed", "partial failed".
	Reason string
	// Operations counts the netlink changes made: services, real servers
	// and addresses. 0 means nothing changed.
	Operations int
}

// Syncer keeps the IPVS table and the VIP interface equal to a list of
// forwarding rules. It is not safe for concurrent use: one sync loop owns
// it.
type Syncer struct {
	ipvs  Kernel
	link  Link
	sched string
	// applied is what the last successful sync left, sorted; nil until
	// the first one, which is therefore full.
	applied []Service
	// vips are the addresses the last successful sync left bound.
	vips map[netip.Addr]bool
}

// ErrScheduler marks a scheduler New does not accept.
var ErrScheduler = errors.New("unsupported IPVS scheduler")

// CheckScheduler returns an error wrapping ErrScheduler unless sched is
// one of Schedulers.
func CheckScheduler(sched string) error {
	if !slices.Contains(Schedulers, sched) {
		return fmt.Errorf("%w %q: want one of %v", ErrScheduler, sched, Schedulers)
	}
	return nil
}

// New opens the kernel's IPVS table in this network namespace, creates
// and brings up the dummy interface ironlb-ipvs0 and writes Sysctls. It
// fails when the kernel lacks IPVS or dummy interfaces, or without
// privilege.
func New(sched string) (*Syncer, error) {
	if err := CheckScheduler(sched); err != nil {
		return nil, err
	}
	c, err := Dial()
	if err != nil {
		return nil, err
	}
	link := NewDummyLink(Interface)
	if err := link.Ensure(); err != nil {
		c.Close()
		return nil, err
	}
	if err := writeSysctls("/proc/sys", Sysctls); err != nil {
		c.Close()
		return nil, err
	}
	return NewWith(c, link, sched), nil
}

// NewWith returns a Syncer over any Kernel and Link (fakes in tests); it
// checks nothing and sets no sysctl.
func NewWith(k Kernel, l Link, sched string) *Syncer {
	return &Syncer{ipvs: k, link: l, sched: sched}
}

// Sync makes IPVS forward exactly rules and binds exactly their VIPs to
// the interface, changing only what differs. With full, on the first call,
// or when the cheap check finds the service list or the addresses not as
// the last sync left them, it reads all our services back from the kernel
// first. A failed partial sync is retried as a full one; a failed change
// is reported but does not stop the others.
func (s *Syncer) Sync(ctx context.Context, rules []forwarding.Rule, full bool) (Result, error) {
	want := Desired(rules, s.sched)
	wantVIPs := vipsOf(want)
	reason := "requested"
	switch {
	case s.applied == nil:
		full, reason = true, "first"
	case !full:
		if why := s.intact(); why != "" {
			full, reason = true, why
		}
	}
	if !full {
		res := Result{Kind: Partial}
		addrs := slices.Collect(maps.Keys(s.vips))
		n, err := s.apply(ctx, s.applied, addrs, want, wantVIPs)
		res.Operations = n
		if err == nil {
			return res, nil
		}
		full, reason = true, "partial failed"
	}
	res := Result{Kind: Full, Reason: reason}
	if err := s.link.Ensure(); err != nil {
		s.applied = nil
		return res, err
	}
	addrs, err := s.link.Addrs()
	if err != nil {
		s.applied = nil
		return res, err
	}
	owned := map[netip.Addr]bool{}
	for _, set := range []map[netip.Addr]bool{wantVIPs, s.vips, setOf(addrs)} {
		maps.Copy(owned, set)
	}
	current, err := s.read(owned)
	if err != nil {
		s.applied = nil
		return res, err
	}
	res.Operations, err = s.apply(ctx, current, addrs, want, wantVIPs)
	return res, err
}

// read returns the kernel's services on the VIPs in owned, with their
// real servers.
func (s *Syncer) read(owned map[netip.Addr]bool) ([]Service, error) {
	all, err := s.ipvs.Services()
	if err != nil {
		return nil, err
	}
	var out []Service
	for _, svc := range all {
		if !owned[svc.VIP] {
			continue
		}
		if svc.Dests, err = s.ipvs.Dests(svc); err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}

// apply binds the missing VIPs, makes the changes from current to want,
// then unbinds the VIPs no longer wanted. On success it records want as
// applied; on any failure it forgets, so the next sync is full.
func (s *Syncer) apply(ctx context.Context, current []Service, addrs []netip.Addr, want []Service, wantVIPs map[netip.Addr]bool) (int, error) {
	var (
		errs []error
		n    int
	)
	have := setOf(addrs)
	for _, ip := range sortedAddrs(wantVIPs) {
		if have[ip] {
			continue
		}
		n++
		if err := s.link.Add(ip); err != nil {
			errs = append(errs, err)
		}
	}
	for _, op := range Diff(current, want) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		n++
		if err := s.ipvs.Apply(op); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ip := range sortedAddrs(have) {
		if wantVIPs[ip] {
			continue
		}
		n++
		if err := s.link.Del(ip); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.applied, s.vips = nil, nil
		return n, err
	}
	s.applied, s.vips = want, wantVIPs
	return n, nil
}

// intact says why the kernel cannot be trusted to hold what the last sync
// left ("" when it can): the interface is gone or its addresses changed,
// or one of our services is missing, changed or added. It reads the
// service list and the addresses, not the real servers: a changed real
// server is repaired by the next full sync.
func (s *Syncer) intact() string {
	addrs, err := s.link.Addrs()
	switch {
	case errors.Is(err, ErrNoLink):
		return "interface missing"
	case err != nil:
		return "interface unreadable: " + err.Error()
	case !maps.Equal(setOf(addrs), s.vips):
		return "addresses changed"
	}
	all, err := s.ipvs.Services()
	if err != nil {
		return "services unreadable: " + err.Error()
	}
	var ours []Service
	for _, svc := range all {
		if s.vips[svc.VIP] {
			ours = append(ours, svc)
		}
	}
	if !equalServices(ours, withoutDests(s.applied)) {
		return "services changed"
	}
	return ""
}

// Remove deletes our services and unbinds every VIP from the interface;
// the interface itself stays.
func (s *Syncer) Remove(ctx context.Context) error {
	s.applied = nil
	_, err := s.Sync(ctx, nil, true)
	return err
}

func vipsOf(ss []Service) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(ss))
	for _, s := range ss {
		m[s.VIP] = true
	}
	return m
}

func setOf(as []netip.Addr) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(as))
	for _, a := range as {
		m[a] = true
	}
	return m
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func withoutDests(ss []Service) []Service {
	out := make([]Service, len(ss))
	for i, s := range ss {
		out[i] = bare(s)
	}
	return out
}
