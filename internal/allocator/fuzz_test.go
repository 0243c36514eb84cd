package allocator

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// fuzzPools are the pool sets FuzzAllocator switches between: small, so
// exhaustion, sharing and overlap happen within a few steps.
var fuzzPools = [][]Pool{
	{
		mkPool("a", "10.0.0.0/30 fd00::/126"),
		mkPool("b", "10.0.0.2-10.0.0.5", prio(1), avoidBuggy),
		mkPool("c", "10.0.1.0/31 fd01::/127", manual),
	},
	{
		mkPool("a", "10.0.0.0/31"),
		mkPool("c", "10.0.1.0/30 fd01::/126", manual, inNS("x")),
	},
	{
		mkPool("b", "10.0.0.254-10.0.1.1 fd00::/127", avoidBuggy, svcSel("app=web")),
		mkPool("d", "fd00::/126", prio(2)),
	},
}

var fuzzIPs = addrs("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.255", "10.0.1.0", "10.0.1.1",
	"fd00::", "fd00::1", "fd01::1", "192.0.2.1", "fd00::3", "10.0.0.4")

// fuzzService decodes one Service from four bytes.
func fuzzService(b0, b1, b2, b3 byte) Service {
	key := fmt.Sprintf("%s/s%d", []string{"x", "y"}[b0&1], (b0>>1)%6)
	s := sv(key)
	s.SharingKey = []string{"", "k", "j", "k"}[b1&3]
	s.BackendKey = []string{"", "", "", "be"}[(b1>>2)&3]
	s.Ports = []Port{{"TCP", int32(80 + (b1>>4)&1)}}
	if b1&0x20 != 0 {
		s.Ports = append(s.Ports, Port{"UDP", 53})
	}
	if b1&0x40 != 0 {
		s.Labels = map[string]string{"app": "web"}
	}
	s.Policy = FamilyPolicy(b2 % 3)
	s.Families = [][]Family{nil, {IPv6}, {IPv4, IPv6}, {IPv6, IPv4}}[(b2>>2)&3]
	s.Pool = []string{"", "", "a", "b", "c", "d", "", "zz"}[(b2>>4)&7]
	switch b3 & 3 {
	case 1:
		s.RequestedIPs = []netip.Addr{fuzzIPs[int(b3>>2)%len(fuzzIPs)]}
	case 2:
		s.RequestedIPs = []netip.Addr{fuzzIPs[int(b3>>2)%6], fuzzIPs[6+int(b3>>5)%4]}
	}
	return s
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 2, 1, 0, 0, 0, 4, 1, 1, 0, 0, 0, 1, 2, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 3, 6, 0, 0, 2, 3, 9, 6, 0, 0, 3, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0})
	f.Add([]byte{0, 8, 0, 0x21, 1, 0, 0, 4, 0, 0x21, 2, 0, 4, 6, 0, 0x20, 5, 0, 3, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x41, 0x20, 0, 0, 0, 3, 0x41, 0x26, 0, 0, 2, 2, 0, 0, 0, 0, 0, 1, 0x41, 0x20, 0, 0, 4, 3, 1, 2, 1, 0})
	f.Add([]byte("the quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pools := fuzzPools[0]
		a := New(pools)
		for len(data) >= 6 {
			op, b := data[0], data[1:6]
			data = data[6:]
			svc := fuzzService(b[0], b[1], b[2], b[3])
			switch op % 5 {
			case 0, 4: // Assign, with no current, what it holds, or someone else's addresses
				var cur []netip.Addr
				switch b[4] % 3 {
				case 1:
					h, _ := a.Holds(svc.Key)
					cur = h.IPs
				case 2:
					other := fuzzService(b[4]>>2, 0, 0, 0)
					h, _ := a.Holds(other.Key)
					cur = h.IPs
				}
				before, had := a.Holds(svc.Key)
				res, err := a.Assign(svc, cur)
				if err != nil {
					if ReasonOf(err) == "" {
						t.Fatalf("Assign(%+v): error without reason: %v", svc, err)
					}
					if after, has := a.Holds(svc.Key); has != had || !reflect.DeepEqual(before, after) {
						t.Fatalf("failed Assign(%+v) changed holding %v -> %v", svc, before, after)
					}
					break
				}
				checkResult(t, a, svc, res)
			case 1: // Release returns exactly what Holds said
				before, _ := a.Holds(svc.Key)
				if got := a.Release(svc.Key); !slices.Equal(got, before.IPs) {
					t.Fatalf("Release(%s) = %v, Holds said %v", svc.Key, got, before.IPs)
				}
				if _, ok := a.Holds(svc.Key); ok {
					t.Fatalf("%s still holds after Release", svc.Key)
				}
			case 2:
				pools = fuzzPools[int(b[4])%len(fuzzPools)]
				a.SetPools(pools)
			case 3: // Restore one entry, possibly conflicting
				ips := []netip.Addr{fuzzIPs[int(b[4])%len(fuzzIPs)]}
				if b[3]&0x80 != 0 {
					ips = append(ips, fuzzIPs[int(b[4]>>4)%len(fuzzIPs)])
				}
				before, had := a.Holds(svc.Key)
				errs := a.Restore([]Held{{Service: svc, IPs: ips}})
				after, has := a.Holds(svc.Key)
				if errs != nil {
					if had != has || !reflect.DeepEqual(before, after) {
						t.Fatalf("failed Restore changed holding %v -> %v", before, after)
					}
				} else if !has || len(after.IPs) != len(ips) {
					t.Fatalf("Restore(%s, %v) holds %v", svc.Key, ips, after)
				}
			}
			if err := checkInvariants(a); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// checkResult verifies a successful Assign: the addresses lie in the
// result pool, which admits the Service, in the families its policy asks.
func checkResult(t *testing.T, a *Allocator, svc Service, res Result) {
	t.Helper()
	p, ok := a.pools[res.Pool]
	if !ok {
		t.Fatalf("Assign(%+v) = %v: no such pool", svc, res)
	}
	if !p.admits(&svc) || (svc.Pool != "" && svc.Pool != res.Pool) {
		t.Fatalf("Assign(%+v) = %v: pool does not admit the service", svc, res)
	}
	for _, ip := range res.IPs {
		if !p.contains(ip) {
			t.Fatalf("Assign(%+v) = %v: %s not in pool", svc, res, ip)
		}
	}
	fs := svc.Families
	if len(fs) == 0 {
		fs = []Family{IPv4}
	}
	switch n := len(res.IPs); {
	case n == 0 || n > 2:
		t.Fatalf("Assign(%+v) = %v: %d addresses", svc, res, n)
	case n == 2 && familyOf(res.IPs[0]) == familyOf(res.IPs[1]):
		t.Fatalf("Assign(%+v) = %v: two of one family", svc, res)
	case svc.Policy == SingleStack && (n != 1 || familyOf(res.IPs[0]) != fs[0]):
		t.Fatalf("Assign(%+v) = %v: not single stack %s", svc, res, fs[0])
	case svc.Policy == RequireDualStack && n != 2:
		t.Fatalf("Assign(%+v) = %v: not dual stack", svc, res)
	case n == 2 && familyOf(res.IPs[0]) != fs[0]:
		t.Fatalf("Assign(%+v) = %v: not in family order", svc, res)
	}
	if len(svc.RequestedIPs) > 0 {
		got := slices.Clone(res.IPs)
		want := slices.Clone(svc.RequestedIPs)
		slices.SortFunc(got, netip.Addr.Compare)
		slices.SortFunc(want, netip.Addr.Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("Assign(%+v) = %v: not the requested addresses", svc, res)
		}
	}
}
