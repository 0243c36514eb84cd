package routes

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// FuzzCompute builds a random cluster from the fuzzer's bytes and checks
// the invariants: the result does not depend on input order, repeated runs
// agree, an ineligible node advertises nothing, every path belongs to a
// session, and every prefix holds the address it came from.
func FuzzCompute(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(42), uint64(7))
	f.Add(uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, seed1, seed2 uint64) {
		r := rand.New(rand.NewPCG(seed1, seed2))
		in := randomInput(r)
		got := Compute(in)
		if again := Compute(in); !reflect.DeepEqual(got, again) {
			t.Fatalf("two runs differ:\n%+v\n%+v", got, again)
		}
		shuffled := shuffle(in, r)
		if other := Compute(shuffled); !reflect.DeepEqual(got, other) {
			t.Fatalf("shuffling the input changed the result:\n%+v\n%+v", got, other)
		}
		self, known := mergeNode(in.Nodes, in.Node)
		for peer, paths := range got.Paths {
			if len(paths) > 0 && (!known || !self.eligible()) {
				t.Fatalf("ineligible node %s advertises %v to %s", in.Node, paths, peer)
			}
			for i, p := range paths {
				if i > 0 && ComparePrefix(paths[i-1].Prefix, p.Prefix) >= 0 {
					t.Fatalf("paths to %s not sorted or not distinct: %v", peer, paths)
				}
				if len(p.Services) == 0 {
					t.Fatalf("path %v to %s has no service", p.Prefix, peer)
				}
			}
		}
		if len(got.Peers) != len(got.Paths) {
			t.Fatalf("%d sessions but paths for %d peers", len(got.Peers), len(got.Paths))
		}
	})
}

func randomInput(r *rand.Rand) Input {
	zones := []string{"a", "b", "c"}
	in := Input{Node: fmt.Sprintf("node%d", r.IntN(5)), Aliases: map[string]string{"x": "1:1", "y": "large:1:2:3"}}
	for i := range 4 {
		n := Node{Name: fmt.Sprintf("node%d", i), Labels: map[string]string{"zone": zones[r.IntN(3)]},
			NetworkUnavailable: r.IntN(6) == 0}
		if r.IntN(6) == 0 {
			n.Labels[ExcludeLabel] = ""
		}
		in.Nodes = append(in.Nodes, n)
	}
	for i := range 3 {
		in.Pools = append(in.Pools, Pool{Name: fmt.Sprintf("pool%d", i), Labels: map[string]string{"zone": zones[r.IntN(3)]}})
	}
	pick := func() []labels.Selector {
		if r.IntN(2) == 0 {
			return nil
		}
		return []labels.Selector{labels.SelectorFromSet(labels.Set{"zone": zones[r.IntN(3)]})}
	}
	for i := range 1 + r.IntN(3) {
		in.Peers = append(in.Peers, Peer{Name: fmt.Sprintf("peer%d", i), IBGP: r.IntN(2) == 0, NodeSelectors: pick()})
	}
	comms := []string{"1:1", "2:2", "large:5:6:7", "x", "y", "missing"}
	for i := range r.IntN(4) {
		ad := Advertisement{Name: fmt.Sprintf("ad%d", i), Length4: 20 + r.IntN(14), Length6: 56 + r.IntN(74),
			LocalPref: uint32(r.IntN(3) * 100), NodeSelectors: pick(), PoolSelectors: pick()}
		if r.IntN(2) == 0 {
			ad.Pools = []string{fmt.Sprintf("pool%d", r.IntN(4))}
		}
		if r.IntN(2) == 0 {
			ad.Peers = []string{fmt.Sprintf("peer%d", r.IntN(3))}
		}
		for range r.IntN(3) {
			ad.Communities = append(ad.Communities, comms[r.IntN(len(comms))])
		}
		in.Advertisements = append(in.Advertisements, ad)
	}
	for i := range r.IntN(8) {
		svc := Service{Key: fmt.Sprintf("ns/s%d", i), Pool: fmt.Sprintf("pool%d", r.IntN(4)), Local: r.IntN(2) == 0}
		for range 1 + r.IntN(2) {
			if r.IntN(2) == 0 {
				svc.IPs = append(svc.IPs, netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(256))}))
			} else {
				svc.IPs = append(svc.IPs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(256))}))
			}
		}
		for n := range 4 {
			if r.IntN(2) == 0 {
				svc.ReadyNodes = append(svc.ReadyNodes, fmt.Sprintf("node%d", n))
			}
		}
		in.Services = append(in.Services, svc)
	}
	return in
}

func shuffle(in Input, r *rand.Rand) Input {
	out := in
	out.Nodes = shuffled(in.Nodes, r)
	out.Pools = shuffled(in.Pools, r)
	out.Peers = shuffled(in.Peers, r)
	out.Advertisements = shuffled(in.Advertisements, r)
	out.Services = shuffled(in.Services, r)
	for i := range out.Services {
		out.Services[i].IPs = shuffled(out.Services[i].IPs, r)
		out.Services[i].ReadyNodes = shuffled(out.Services[i].ReadyNodes, r)
	}
	for i := range out.Advertisements {
		out.Advertisements[i].Communities = shuffled(out.Advertisements[i].Communities, r)
	}
	return out
}

func shuffled[T any](s []T, r *rand.Rand) []T {
	out := append([]T(nil), s...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
