package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// fakeKernel is an IPVS table in memory that refuses what the kernel
// refuses (applyOps) and counts the changes.
type fakeKernel struct {
	services []Service
	ops      []Op
	fail     func(Op) error
}

func (k *fakeKernel) Services() ([]Service, error) { return withoutDests(k.services), nil }

func (k *fakeKernel) Dests(s Service) ([]Dest, error) {
	for _, h := range k.services {
		if h.Key == s.Key {
			return slices.Clone(h.Dests), nil
		}
	}
	return nil, fmt.Errorf("%s: no such service", s)
}

func (k *fakeKernel) Apply(op Op) error {
	if k.fail != nil {
		if err := k.fail(op); err != nil {
			return err
		}
	}
	next, err := applyOps(k.services, []Op{op})
	if err != nil {
		return err
	}
	k.services = next
	k.ops = append(k.ops, op)
	return nil
}

// fakeLink is the dummy interface in memory.
type fakeLink struct {
	up    bool
	addrs map[netip.Addr]bool
	calls int
}

func (l *fakeLink) Ensure() error {
	if !l.up {
		l.up, l.addrs = true, map[netip.Addr]bool{}
	}
	return nil
}

func (l *fakeLink) Addrs() ([]netip.Addr, error) {
	if !l.up {
		return nil, fmt.Errorf("interface %s: %w", Interface, ErrNoLink)
	}
	return sortedAddrs(l.addrs), nil
}

func (l *fakeLink) Add(ip netip.Addr) error {
	if !l.up {
		return ErrNoLink
	}
	l.calls++
	l.addrs[ip] = true
	return nil
}

func (l *fakeLink) Del(ip netip.Addr) error {
	if !l.up {
		return ErrNoLink
	}
	l.calls++
	delete(l.addrs, ip)
	return nil
}

func rule(vip string, proto forwarding.Protocol, port uint16, eps ...string) forwarding.Rule {
	r := forwarding.Rule{Key: key(vip, proto, port), Service: "ns/" + vip}
	for _, ep := range eps {
		r.Endpoints = append(r.Endpoints, netip.MustParseAddrPort(ep))
	}
	return r
}

// TestSyncer walks a node's life: first sync, no-op, endpoint change,
// hand deletions found by the cheap check or only by a full sync, a lost
// interface, a VIP that goes, and a foreign service left alone.
func TestSyncer(t *testing.T) {
	ctx := context.Background()
	foreign := Service{Key: key("10.96.0.10", forwarding.UDP, 53), Scheduler: "rr", Dests: []Dest{dest("10.244.9.9:53")}}
	k := &fakeKernel{services: []Service{foreign}}
	l := &fakeLink{}
	// A VIP from an earlier run: bound, with a service, no longer wanted.
	l.Ensure()
	l.addrs[netip.MustParseAddr("192.0.2.99")] = true
	k.services = append(k.services, svc(key("192.0.2.99", forwarding.TCP, 80), "rr", "10.244.1.9:80"))
	s := NewWith(k, l, "rr")

	a := rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080", "10.244.1.3:8080")
	b := rule("2001:db8::1", forwarding.UDP, 53, "[fd00::2]:53")
	rules := []forwarding.Rule{a, b}

	type step struct {
		name   string
		before func()
		full   bool
		kind   Kind
		reason string
		ops    int
		// missing is a real server the kernel lacks though wanted.
		missing string
		vips    []string
	}
	for _, st := range []step{
		{
			name: "first sync: binds both VIPs, adds two services and three real servers, removes the stale VIP and its service",
			// 2 addresses + 2 services + 3 dests + 1 service deleted + 1 address unbound
			kind: Full, reason: "first", ops: 9,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name: "nothing changed: partial, no operation",
			kind: Partial, ops: 0,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name:   "an endpoint replaced: one delete and one add",
			before: func() { a.Endpoints[1] = netip.MustParseAddrPort("10.244.1.4:8080") },
			kind:   Partial, ops: 2,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name:   "a service deleted by hand: the cheap check sees it, the full sync restores it",
			before: func() { k.services = slices.DeleteFunc(k.services, func(s Service) bool { return s.Key == b.Key }) },
			kind:   Full, reason: "services changed", ops: 2,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name: "a real server deleted by hand: invisible to the partial check",
			before: func() {
				k.services[slices.IndexFunc(k.services, func(s Service) bool { return s.Key == a.Key })].Dests = []Dest{dest("10.244.1.2:8080")}
			},
			kind: Partial, ops: 0,
			missing: "10.244.1.4:8080", vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name: "the periodic full sync restores it",
			full: true, kind: Full, reason: "requested", ops: 1,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name:   "the interface deleted: recreated and both VIPs bound again",
			before: func() { l.up, l.addrs = false, nil },
			kind:   Full, reason: "interface missing", ops: 2,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name: "the scheduler someone changed is put back by the full sync",
			before: func() {
				k.services[slices.IndexFunc(k.services, func(s Service) bool { return s.Key == a.Key })].Scheduler = "wlc"
			},
			kind: Full, reason: "services changed", ops: 1,
			vips: []string{"192.0.2.1", "2001:db8::1"},
		},
		{
			name:   "the IPv6 VIP lost: its service deleted and the address unbound",
			before: func() { rules = []forwarding.Rule{a} },
			kind:   Partial, ops: 2,
			vips: []string{"192.0.2.1"},
		},
		{
			name:   "a service without endpoints is deleted, its VIP unbound",
			before: func() { a.Endpoints = nil; rules = []forwarding.Rule{a} },
			kind:   Partial, ops: 2,
			vips: nil,
		},
	} {
		if st.before != nil {
			st.before()
		}
		res, err := s.Sync(ctx, rules, st.full)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if res.Kind != st.kind || res.Reason != st.reason || res.Operations != st.ops {
			t.Errorf("%s: %+v, want kind %s reason %q operations %d (ops %v)", st.name, res, st.kind, st.reason, st.ops, k.ops)
		}
		wantSvcs := append([]Service{foreign}, Desired(rules, "rr")...)
		sortServices(wantSvcs)
		if st.missing != "" {
			wantSvcs = withoutEndpoint(wantSvcs, a.Key, st.missing)
		}
		if !equalServices(k.services, wantSvcs) {
			t.Errorf("%s: kernel has\n %v\nwant\n %v", st.name, k.services, wantSvcs)
		}
		var vips []netip.Addr
		for _, v := range st.vips {
			vips = append(vips, netip.MustParseAddr(v))
		}
		if got, _ := l.Addrs(); !slices.Equal(got, vips) {
			t.Errorf("%s: interface has %v, want %v", st.name, got, vips)
		}
		k.ops = nil
	}
}

func withoutEndpoint(ss []Service, k forwarding.Key, ep string) []Service {
	out := slices.Clone(ss)
	for i := range out {
		if out[i].Key == k {
			out[i].Dests = slices.DeleteFunc(slices.Clone(out[i].Dests), func(d Dest) bool { return d.AddrPort == netip.MustParseAddrPort(ep) })
		}
	}
	return out
}

// TestSyncerFailure: one refused change does not stop the others, the
// error names it, and the next sync is full and completes the job.
func TestSyncerFailure(t *testing.T) {
	ctx := context.Background()
	refuse := errors.New("refused")
	k := &fakeKernel{fail: func(op Op) error {
		if op.Kind == AddService && op.Service.Port == 80 {
			return refuse
		}
		return nil
	}}
	l := &fakeLink{}
	s := NewWith(k, l, "lc")
	rules := []forwarding.Rule{
		rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080"),
		rule("192.0.2.1", forwarding.TCP, 443, "10.244.1.2:8443"),
	}
	_, err := s.Sync(ctx, rules, false)
	if !errors.Is(err, refuse) {
		t.Fatalf("error %v, want the refusal", err)
	}
	if len(k.services) != 1 || k.services[0].Port != 443 || len(k.services[0].Dests) != 1 {
		t.Errorf("the other service should be programmed: %v", k.services)
	}
	k.fail = nil
	res, err := s.Sync(ctx, rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != Full || res.Reason != "first" {
		t.Errorf("after a failure: %+v, want a full sync", res)
	}
	if want := Desired(rules, "lc"); !equalServices(k.services, want) {
		t.Errorf("kernel has %v, want %v", k.services, want)
	}
}

func TestCheckScheduler(t *testing.T) {
	for _, s := range Schedulers {
		if err := CheckScheduler(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "wlc", "RR"} {
		if err := CheckScheduler(s); !errors.Is(err, ErrScheduler) {
			t.Errorf("%q: %v, want ErrScheduler", s, err)
		}
	}
}
