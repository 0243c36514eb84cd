package election

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// fuzzIPs is small so that Services often share an address.
var fuzzIPs = ips("192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.7",
	"2001:db8::1", "2001:db8::2", "::ffff:192.0.2.1", "fd00::ff")

var fuzzPoolList = []Pool{{Name: "p", Labels: kv("tier=gold")}, {Name: "q", Labels: kv("tier=silver")}, {Name: "r"}}

type decoder struct {
	b []byte
	i int
}

func (r *decoder) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// fuzzInput decodes an Input from data: a few nodes (names may repeat),
// the three pools, up to three advertisements and up to eleven Services.
func fuzzInput(data []byte) Input {
	r := &decoder{b: data}
	var in Input
	for range 1 + int(r.next()%7) {
		b := r.next()
		n := Node{Name: fmt.Sprintf("n%d", b%8), Alive: b&0x18 != 0x18, NetworkUnavailable: b&0xe0 == 0xe0}
		c := r.next()
		switch c % 3 {
		case 1:
			n.Labels = kv("zone=a")
		case 2:
			n.Labels = kv("zone=b")
		}
		if c&0x70 == 0x70 {
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels[ExcludeLabel] = ""
		}
		in.Nodes = append(in.Nodes, n)
	}
	in.Pools = slices.Clone(fuzzPoolList)
	for i := range int(r.next() % 4) {
		b := r.next()
		a := Advertisement{Name: fmt.Sprintf("ad%d", i)}
		switch b % 6 {
		case 1:
			a.Pools = []string{"p"}
		case 2:
			a.Pools = []string{"q", "p"}
		case 3:
			a.PoolSelectors = sels("tier=gold")
		case 4:
			a.PoolSelectors = sels("tier", "!tier")
		case 5:
			a.PoolSelectors = []labels.Selector{nil}
		}
		switch (b / 6) % 5 {
		case 1:
			a.NodeSelectors = sels("zone=a")
		case 2:
			a.NodeSelectors = sels("zone=b", "zone=a")
		case 3:
			a.NodeSelectors = sels("zone")
		case 4:
			a.NodeSelectors = []labels.Selector{nil}
		}
		switch r.next() % 3 {
		case 1:
			a.Interfaces = []string{"eth0"}
		case 2:
			a.Interfaces = []string{"eth1", "eth0", "eth1"}
		}
		in.Advertisements = append(in.Advertisements, a)
	}
	for range int(r.next() % 12) {
		b := r.next()
		s := Service{Key: fmt.Sprintf("ns/s%d", b%8), Pool: []string{"p", "q", "r", "", "gone", "p", "p", "q"}[b/8%8], Local: b&0x40 != 0}
		c := r.next()
		s.IPs = append(s.IPs, fuzzIPs[c%8])
		if c&0x08 != 0 {
			s.IPs = append(s.IPs, fuzzIPs[c/16%8])
		}
		ready := r.next()
		for i := range 8 {
			if ready&(1<<i) != 0 {
				s.ReadyNodes = append(s.ReadyNodes, fmt.Sprintf("n%d", i))
			}
		}
		in.Services = append(in.Services, s)
	}
	in.ExpectedSpeakers = int(r.next() % 9)
	return in
}

func cloneInput(in Input) Input {
	out := in
	out.Nodes = slices.Clone(in.Nodes)
	out.Pools = slices.Clone(in.Pools)
	out.Advertisements = slices.Clone(in.Advertisements)
	for i := range out.Advertisements {
		a := &out.Advertisements[i]
		a.Pools = slices.Clone(a.Pools)
		a.PoolSelectors = slices.Clone(a.PoolSelectors)
		a.NodeSelectors = slices.Clone(a.NodeSelectors)
		a.Interfaces = slices.Clone(a.Interfaces)
	}
	out.Services = slices.Clone(in.Services)
	for i := range out.Services {
		s := &out.Services[i]
		s.IPs = slices.Clone(s.IPs)
		s.ReadyNodes = slices.Clone(s.ReadyNodes)
	}
	return out
}

func shuffle[T any](rng *rand.Rand, s []T) {
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
}

var fuzzSeeds = [][]byte{
	{},
	{3, 1, 1, 2, 2, 3, 0, 2, 5, 0, 0, 1, 0x03, 0xff, 3},
	{6, 0, 1, 1, 2, 2, 0, 3, 1, 4, 2, 0, 5, 3, 1, 6, 0x40, 0x19, 0x06, 0x41, 0x19, 0x03, 0x00, 0x0c, 0x07, 4},
	{4, 0x18, 0, 1, 0xe1, 2, 0x72, 3, 1, 2, 30, 1, 8, 0x28, 0x80, 0xff, 0x10, 0x80, 0x02, 3},
	{2, 0, 0, 0, 0, 1, 7, 0, 5, 0x42, 0x99, 0x01, 0x4a, 0x99, 0x02, 0x00, 0x00, 0xff, 0x08, 0x0d, 0x03, 0x10, 0x1c, 0x00, 0x02},
}

// FuzzShuffle: the order of nodes, pools, advertisements, Services and of
// every list inside them never changes the Result.
func FuzzShuffle(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, uint64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		in := fuzzInput(data)
		want := Elect(in)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		sh := cloneInput(in)
		shuffle(rng, sh.Nodes)
		shuffle(rng, sh.Pools)
		shuffle(rng, sh.Advertisements)
		shuffle(rng, sh.Services)
		for i := range sh.Advertisements {
			a := &sh.Advertisements[i]
			shuffle(rng, a.Pools)
			shuffle(rng, a.PoolSelectors)
			shuffle(rng, a.NodeSelectors)
			shuffle(rng, a.Interfaces)
		}
		for i := range sh.Services {
			shuffle(rng, sh.Services[i].IPs)
			shuffle(rng, sh.Services[i].ReadyNodes)
		}
		if got := Elect(sh); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffled input changed the result:\n%swant:\n%s", fmtResult(got), fmtResult(want))
		}
	})
}

// FuzzAgree: every speaker computes the same Result, each address is
// announced by exactly one node, For partitions the announcements, every
// winner is eligible, and every Service address is either announced or
// explained by a problem.
func FuzzAgree(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzInput(data)
		r := Elect(in)
		if again := Elect(cloneInput(in)); !reflect.DeepEqual(again, r) {
			t.Fatalf("two speakers disagree:\n%svs\n%s", fmtResult(r), fmtResult(again))
		}
		checkAgree(t, in, r)
	})
}

func checkAgree(t *testing.T, in Input, r Result) {
	t.Helper()
	won := winners(t, r)
	if !slices.IsSortedFunc(r.Announcements, func(a, b Announcement) int { return a.IP.Compare(b.IP) }) {
		t.Errorf("announcements not sorted by IP")
	}
	if !slices.IsSortedFunc(r.Problems, compareProblems) {
		t.Errorf("problems not sorted")
	}
	if slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Kind == NoQuorum }) {
		if len(r.Announcements) != 0 || len(r.Problems) != 1 {
			t.Fatalf("without quorum want only the NoQuorum problem:\n%s", fmtResult(r))
		}
		return
	}
	names := map[string]bool{"ghost": true}
	bad := map[string]bool{}
	for _, n := range in.Nodes {
		names[n.Name] = true
		if _, excl := n.Labels[ExcludeLabel]; !n.Alive || n.NetworkUnavailable || excl {
			bad[n.Name] = true
		}
	}
	total := 0
	for name := range names {
		for _, a := range r.For(name) {
			if a.Node != name {
				t.Errorf("For(%s) holds %s for %s", name, a.IP, a.Node)
			}
			total++
		}
	}
	if total != len(r.Announcements) {
		t.Errorf("For over all nodes returns %d announcements, want %d", total, len(r.Announcements))
	}
	for _, a := range r.Announcements {
		if !names[a.Node] || bad[a.Node] {
			t.Errorf("%s announced by ineligible node %s", a.IP, a.Node)
		}
		if !slices.IsSorted(a.Interfaces) || len(slices.Compact(slices.Clone(a.Interfaces))) != len(a.Interfaces) || (a.Interfaces != nil && len(a.Interfaces) == 0) {
			t.Errorf("%s: interfaces %q not sorted, unique, nil for all", a.IP, a.Interfaces)
		}
	}
	for _, s := range in.Services {
		for _, addr := range s.IPs {
			if a, ok := won[addr]; ok && slices.Contains(a.Services, s.Key) {
				continue
			}
			explained := slices.ContainsFunc(r.Problems, func(p Problem) bool {
				return p.Service == s.Key && (p.IP == addr || p.Kind == PoolNotAdvertised)
			})
			if !explained {
				t.Errorf("%s %s neither announced nor explained:\n%s", s.Key, addr, fmtResult(r))
			}
		}
	}
}

// FuzzNodeChange: removing one node (or, read backwards, adding it) moves
// only the addresses that node held (or now wins); every other
// announcement is unchanged, interfaces included.
func FuzzNodeChange(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, byte(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, pick byte) {
		with := fuzzInput(data)
		// Quorum is not what this checks: with one expected speaker it
		// holds whenever any node is alive.
		with.ExpectedSpeakers = 1
		k := with.Nodes[int(pick)%len(with.Nodes)].Name
		without := cloneInput(with)
		without.Nodes = slices.DeleteFunc(without.Nodes, func(n Node) bool { return n.Name == k })
		rw, ro := Elect(with), Elect(without)
		if len(rw.Problems) > 0 && rw.Problems[0].Kind == NoQuorum || len(ro.Problems) > 0 && ro.Problems[0].Kind == NoQuorum {
			t.Skip("no quorum")
		}
		ww, wo := winners(t, rw), winners(t, ro)
		for addr, a := range ww {
			if a.Node == k {
				continue
			}
			if b, ok := wo[addr]; !ok || !reflect.DeepEqual(a, b) {
				t.Errorf("removing %s moved %s from %+v to %+v", k, addr, a, b)
			}
		}
		for addr, b := range wo {
			if _, ok := ww[addr]; !ok {
				t.Errorf("removing %s made %s announceable by %s", k, addr, b.Node)
			}
		}
	})
}

// TestSpread: rendezvous hashing spreads addresses evenly over equal nodes.
func TestSpread(t *testing.T) {
	nodes := []Node{up("node-1"), up("node-2"), up("node-3")}
	for _, base := range []string{"10.0.0.0", "2001:db8::"} {
		var svcs []Service
		addr := netip.MustParseAddr(base)
		for i := range 300 {
			svcs = append(svcs, Service{Key: fmt.Sprintf("ns/s%d", i), Pool: "p", IPs: []netip.Addr{addr}, ReadyNodes: []string{"node-1"}})
			addr = addr.Next()
		}
		r := Elect(Input{Nodes: nodes, Pools: pools, Advertisements: []Advertisement{adAll}, Services: svcs, ExpectedSpeakers: 3})
		count := map[string]int{}
		for _, a := range r.Announcements {
			count[a.Node]++
		}
		for _, n := range nodes {
			if c := count[n.Name]; c < 60 || c > 141 {
				t.Errorf("%s: %s holds %d of 300, want 20%% to 47%%", base, n.Name, c)
			}
		}
		t.Logf("%s: %v", base, count)
	}
}

// TestNodeChurn: with 10 nodes and 1,000 addresses, a node leaving moves
// exactly the addresses it held, and a node joining takes about a
// eleventh and moves nothing else.
func TestNodeChurn(t *testing.T) {
	var nodes []Node
	for i := range 10 {
		nodes = append(nodes, up(fmt.Sprintf("node-%d", i)))
	}
	var svcs []Service
	addr := ip("10.1.0.0")
	for i := range 1000 {
		svcs = append(svcs, cluster(fmt.Sprintf("ns/s%d", i), "p", addr.String()))
		addr = addr.Next()
	}
	elect := func(nodes []Node) map[netip.Addr]Announcement {
		return winners(t, Elect(Input{Nodes: nodes, Pools: pools, Advertisements: []Advertisement{adAll}, Services: svcs, ExpectedSpeakers: 1}))
	}
	before := elect(nodes)
	left := elect(slices.Delete(slices.Clone(nodes), 3, 4))
	joined := elect(append(slices.Clone(nodes), up("node-10")))
	movedLeft, movedJoin := 0, 0
	for a, b := range before {
		if left[a].Node != b.Node {
			movedLeft++
			if b.Node != "node-3" {
				t.Errorf("node-3 leaving moved %s off %s", a, b.Node)
			}
		}
		if joined[a].Node != b.Node {
			movedJoin++
			if joined[a].Node != "node-10" {
				t.Errorf("node-10 joining moved %s to %s", a, joined[a].Node)
			}
		}
	}
	if movedJoin < 50 || movedJoin > 150 {
		t.Errorf("node-10 joining took %d of 1000 addresses, want about 91", movedJoin)
	}
	t.Logf("leave moved %d, join moved %d", movedLeft, movedJoin)
}
