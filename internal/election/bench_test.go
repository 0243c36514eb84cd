package election

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchInput is a cluster of nodes in two zones, two pools with one
// advertisement each (one limited to zone a and two interfaces), and
// services alternating between Cluster and Local with endpoints on three
// nodes; every tenth pair shares an address.
func benchInput(nodes, services int) Input {
	in := Input{
		Pools: []Pool{{Name: "p", Labels: kv("tier=gold")}, {Name: "q"}},
		Advertisements: []Advertisement{
			{Name: "gold", PoolSelectors: sels("tier=gold"), NodeSelectors: sels("zone=a"), Interfaces: []string{"eth1", "eth0"}},
			{Name: "q", Pools: []string{"q"}},
		},
		ExpectedSpeakers: nodes,
	}
	for i := range nodes {
		in.Nodes = append(in.Nodes, up(fmt.Sprintf("node-%03d", i), "zone="+[]string{"a", "b"}[i%2]))
	}
	v4, v6 := ip("10.0.0.0"), ip("fd00::")
	for i := range services {
		s := Service{Key: fmt.Sprintf("ns/svc-%05d", i), Pool: []string{"p", "q"}[i%2], Local: i%3 == 0}
		for j := range 3 {
			s.ReadyNodes = append(s.ReadyNodes, in.Nodes[(i+j)%nodes].Name)
		}
		if i%10 == 9 {
			s = in.Services[i-1]
			s.Key = fmt.Sprintf("ns/svc-%05d", i)
		} else {
			s.IPs = []netip.Addr{v4, v6}
			v4, v6 = v4.Next(), v6.Next()
		}
		in.Services = append(in.Services, s)
	}
	return in
}

func BenchmarkElect(b *testing.B) {
	for _, c := range []struct{ nodes, services int }{{100, 1000}, {3, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d/services=%d", c.nodes, c.services), func(b *testing.B) {
			in := benchInput(c.nodes, c.services)
			var r Result
			b.ReportAllocs()
			for b.Loop() {
				r = Elect(in)
			}
			b.ReportMetric(float64(len(r.Announcements)), "announcements/op")
			b.ReportMetric(float64(len(r.Problems)), "problems/op")
		})
	}
}
