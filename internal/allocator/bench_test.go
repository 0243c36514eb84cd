package allocator

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkAssignRelease assigns n Services from one pool, then releases
// them all. A /16 holds 65,536 addresses, so the IPv4 case fills it
// completely; the /64 case takes 100,000. The fragmented case releases every
// other Service first, so the used set has one run per held address and each
// Assign must jump over a run to reach its gap.
func BenchmarkAssignRelease(b *testing.B) {
	cases := []struct {
		name     string
		pool     Pool
		n        int
		fam      Family
		fragment bool
	}{
		{"v4-slash16", mkPool("p", "10.0.0.0/16"), 1 << 16, IPv4, false},
		{"v6-slash64", mkPool("p", "fd00::/64"), 100_000, IPv6, false},
		{"v6-slash64-fragmented", mkPool("p", "fd00::/64"), 100_000, IPv6, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			svcs := make([]Service, c.n)
			for i := range svcs {
				svcs[i] = sv(fmt.Sprintf("ns/svc-%d", i), fams(SingleStack, c.fam), ports("TCP/80"))
			}
			b.ReportAllocs()
			var assignNs, releaseNs, bytesPer float64
			for b.Loop() {
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				a := New([]Pool{c.pool})
				if c.fragment {
					for _, s := range svcs {
						if _, err := a.Assign(s, nil); err != nil {
							b.Fatal(err)
						}
					}
					for i := 0; i < len(svcs); i += 2 {
						a.Release(svcs[i].Key)
					}
				}
				start := time.Now()
				for i, s := range svcs {
					if c.fragment && i%2 == 1 {
						continue
					}
					if _, err := a.Assign(s, nil); err != nil {
						b.Fatal(err)
					}
				}
				assigned := c.n
				if c.fragment {
					assigned = c.n / 2
				}
				assignNs = float64(time.Since(start).Nanoseconds()) / float64(assigned)
				runtime.GC()
				runtime.ReadMemStats(&m1)
				bytesPer = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(c.n)
				start = time.Now()
				for _, s := range svcs {
					a.Release(s.Key)
				}
				releaseNs = float64(time.Since(start).Nanoseconds()) / float64(c.n)
				runtime.KeepAlive(a)
			}
			b.ReportMetric(assignNs, "ns/assign")
			b.ReportMetric(releaseNs, "ns/release")
			b.ReportMetric(bytesPer, "B/service")
		})
	}
}
