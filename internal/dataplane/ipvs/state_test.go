package ipvs

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/ironlb/ironlb/internal/forwarding"
)

func key(vip string, proto forwarding.Protocol, port uint16) forwarding.Key {
	return forwarding.Key{VIP: netip.MustParseAddr(vip), Protocol: proto, Port: port}
}

func dest(ap string) Dest {
	return Dest{AddrPort: netip.MustParseAddrPort(ap), FwdMethod: FwdMasq, Weight: 1}
}

func svc(k forwarding.Key, sched string, eps ...string) Service {
	s := Service{Key: k, Scheduler: sched}
	for _, ep := range eps {
		s.Dests = append(s.Dests, dest(ep))
	}
	sortDests(s.Dests)
	return s
}

// applyOps is what the kernel does with ops: the model the fuzz test and
// the fake kernel share. It fails on an op the kernel would refuse
// (adding what exists, changing or deleting what does not).
func applyOps(current []Service, ops []Op) ([]Service, error) {
	m := map[forwarding.Key]Service{}
	for _, s := range current {
		s.Dests = slices.Clone(s.Dests)
		m[s.Key] = s
	}
	for _, op := range ops {
		s, ok := m[op.Service.Key]
		switch op.Kind {
		case AddService:
			if ok {
				return nil, fmt.Errorf("%s: exists", op)
			}
			m[op.Service.Key] = bare(op.Service)
			continue
		case DeleteService:
			if !ok {
				return nil, fmt.Errorf("%s: no such service", op)
			}
			delete(m, op.Service.Key)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("%s: no such service", op)
		}
		i := slices.IndexFunc(s.Dests, func(d Dest) bool { return d.AddrPort == op.Dest.AddrPort })
		switch op.Kind {
		case UpdateService:
			s.Scheduler, s.Flags = op.Service.Scheduler, op.Service.Flags
		case AddDest:
			if i >= 0 {
				return nil, fmt.Errorf("%s: exists", op)
			}
			s.Dests = append(s.Dests, op.Dest)
		case UpdateDest:
			if i < 0 {
				return nil, fmt.Errorf("%s: no such destination", op)
			}
			s.Dests[i] = op.Dest
		case DeleteDest:
			if i < 0 {
				return nil, fmt.Errorf("%s: no such destination", op)
			}
			s.Dests = slices.Delete(s.Dests, i, i+1)
		default:
			return nil, fmt.Errorf("%s: unknown", op)
		}
		sortDests(s.Dests)
		m[s.Key] = s
	}
	out := make([]Service, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sortServices(out)
	return out, nil
}

func TestDesired(t *testing.T) {
	k := key("192.0.2.1", forwarding.TCP, 80)
	k6 := key("2001:db8::1", forwarding.UDP, 53)
	rules := []forwarding.Rule{
		{Key: k6, Service: "ns/b", Endpoints: []netip.AddrPort{netip.MustParseAddrPort("[fd00::2]:5353")}},
		{Key: key("192.0.2.9", forwarding.SCTP, 9), Service: "ns/empty"},
		{Key: k, Service: "ns/a", Endpoints: []netip.AddrPort{
			netip.MustParseAddrPort("10.244.1.3:8080"), netip.MustParseAddrPort("10.244.1.2:8080"), netip.MustParseAddrPort("10.244.1.3:8080"),
		}},
	}
	got := Desired(rules, "wrr")
	want := []Service{
		svc(k, "wrr", "10.244.1.2:8080", "10.244.1.3:8080"),
		svc(k6, "wrr", "[fd00::2]:5353"),
	}
	if !equalServices(got, want) {
		t.Errorf("Desired:\n got %v\nwant %v", got, want)
	}
}

// TestDiff walks a story: each row's current state is the previous row's
// desired one, as the kernel holds it after the diff is applied.
func TestDiff(t *testing.T) {
	a := key("192.0.2.1", forwarding.TCP, 80)
	b := key("192.0.2.1", forwarding.UDP, 53)
	c := key("2001:db8::1", forwarding.SCTP, 3868)
	for _, tc := range []struct {
		name             string
		current, desired []Service
		want             []string
	}{
		{
			name: "nothing to nothing",
		},
		{
			name:    "a new service and its real servers",
			desired: []Service{{Key: a, Scheduler: "rr", Dests: []Dest{dest("10.0.0.2:8080"), dest("10.0.0.1:8080")}}},
			want: []string{
				"add service tcp 192.0.2.1:80",
				"add destination 10.0.0.1:8080 of tcp 192.0.2.1:80",
				"add destination 10.0.0.2:8080 of tcp 192.0.2.1:80",
			},
		},
		{
			name:    "unchanged: nothing",
			current: []Service{svc(a, "rr", "10.0.0.1:8080", "10.0.0.2:8080")},
			desired: []Service{svc(a, "rr", "10.0.0.2:8080", "10.0.0.1:8080")},
		},
		{
			name:    "one endpoint replaced: one delete, one add, the service untouched",
			current: []Service{svc(a, "rr", "10.0.0.1:8080", "10.0.0.2:8080")},
			desired: []Service{svc(a, "rr", "10.0.0.1:8080", "10.0.0.3:8080")},
			want: []string{
				"delete destination 10.0.0.2:8080 of tcp 192.0.2.1:80",
				"add destination 10.0.0.3:8080 of tcp 192.0.2.1:80",
			},
		},
		{
			name:    "scheduler changed: update the service only",
			current: []Service{svc(a, "rr", "10.0.0.1:8080")},
			desired: []Service{svc(a, "mh", "10.0.0.1:8080")},
			want:    []string{"update service tcp 192.0.2.1:80"},
		},
		{
			name:    "a real server someone set to DR and weight 0 is put back",
			current: []Service{{Key: a, Scheduler: "rr", Dests: []Dest{{AddrPort: netip.MustParseAddrPort("10.0.0.1:8080"), FwdMethod: 3}}}},
			desired: []Service{svc(a, "rr", "10.0.0.1:8080")},
			want:    []string{"update destination 10.0.0.1:8080 of tcp 192.0.2.1:80"},
		},
		{
			name:    "services on the same VIP and across families, one goes",
			current: []Service{svc(a, "rr", "10.0.0.1:8080"), svc(b, "rr", "10.0.0.1:53"), svc(c, "rr", "[fd00::1]:3868")},
			desired: []Service{svc(c, "rr", "[fd00::1]:3868"), svc(a, "rr", "10.0.0.1:8080")},
			want:    []string{"delete service udp 192.0.2.1:53"},
		},
		{
			name:    "everything goes: services deleted whole",
			current: []Service{svc(a, "rr", "10.0.0.1:8080"), svc(c, "rr", "[fd00::1]:3868")},
			want:    []string{"delete service tcp 192.0.2.1:80", "delete service sctp [2001:db8::1]:3868"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := Diff(tc.current, tc.desired)
			var got []string
			for _, op := range ops {
				got = append(got, op.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tc.want)
			}
			after, err := applyOps(tc.current, ops)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tc.desired)
			for i := range want {
				want[i].Dests = distinct(want[i].Dests)
			}
			sortServices(want)
			if !equalServices(after, want) {
				t.Errorf("applying the diff:\n got %v\nwant %v", after, want)
			}
		})
	}
}

// FuzzDiff: for any current and desired tables, applying the diff to the
// current one yields the desired one, every op is one the kernel accepts,
// and a second diff is empty.
func FuzzDiff(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(3))
	f.Add(uint64(2), uint8(0), uint8(8))
	f.Add(uint64(3), uint8(8), uint8(0))
	f.Add(uint64(4), uint8(16), uint8(16))
	f.Fuzz(func(t *testing.T, seed uint64, nCur, nWant uint8) {
		r := rand.New(rand.NewPCG(seed, uint64(nCur)<<8|uint64(nWant)))
		current := randomTable(r, int(nCur%32))
		desired := randomTable(r, int(nWant%32))
		ops := Diff(current, desired)
		after, err := applyOps(current, ops)
		if err != nil {
			t.Fatalf("diff of %v to %v: %v", current, desired, err)
		}
		if !equalServices(after, desired) {
			t.Fatalf("applying the diff:\n got %v\nwant %v", after, desired)
		}
		if again := Diff(after, desired); len(again) != 0 {
			t.Fatalf("second diff not empty: %v", again)
		}
		// Order of the inputs does not matter.
		r.Shuffle(len(current), func(i, j int) { current[i], current[j] = current[j], current[i] })
		r.Shuffle(len(desired), func(i, j int) { desired[i], desired[j] = desired[j], desired[i] })
		if shuffled := Diff(current, desired); !slices.EqualFunc(shuffled, ops, func(a, b Op) bool {
			return a.String() == b.String() && a.Dest == b.Dest && a.Service.sameConfig(b.Service)
		}) {
			t.Fatalf("diff depends on input order:\n%v\n%v", shuffled, ops)
		}
	})
}

// randomTable draws up to n services from a small space of keys and real
// servers, so that current and desired overlap often.
func randomTable(r *rand.Rand, n int) []Service {
	protos := []forwarding.Protocol{forwarding.TCP, forwarding.UDP, forwarding.SCTP}
	m := map[forwarding.Key]Service{}
	for range n {
		v6 := r.IntN(3) == 0
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + r.IntN(3))})
		if v6 {
			vip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(1 + r.IntN(3))})
		}
		k := forwarding.Key{VIP: vip, Protocol: protos[r.IntN(3)], Port: uint16(80 + r.IntN(3))}
		s := Service{Key: k, Scheduler: Schedulers[r.IntN(len(Schedulers))], Flags: uint32(r.IntN(2)) * 0x8}
		for range r.IntN(5) {
			ep := netip.AddrFrom4([4]byte{10, 244, 0, byte(1 + r.IntN(4))})
			if v6 {
				ep = netip.AddrFrom16([16]byte{0xfd, 15: byte(1 + r.IntN(4))})
			}
			d := Dest{AddrPort: netip.AddrPortFrom(ep, uint16(8080+r.IntN(2))), Weight: uint32(r.IntN(3))}
			if r.IntN(4) == 0 {
				d.FwdMethod = 3
			}
			if !slices.ContainsFunc(s.Dests, func(o Dest) bool { return o.AddrPort == d.AddrPort }) {
				s.Dests = append(s.Dests, d)
			}
		}
		sortDests(s.Dests)
		m[k] = s
	}
	out := make([]Service, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sortServices(out)
	return out
}
