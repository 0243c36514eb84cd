package election

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// prob is a Problem as a test expects it: has must be a substring of the
// message.
type prob struct {
	kind   ProblemKind
	reason Reason
	svc    string
	pool   string
	ip     string
	has    string
}

var (
	pools   = []Pool{{Name: "p", Labels: kv("tier=gold")}, {Name: "q", Labels: kv("tier=silver")}}
	adAll   = Advertisement{Name: "all"}
	adP     = Advertisement{Name: "only-p", Pools: []string{"p"}}
	adQ     = Advertisement{Name: "only-q", Pools: []string{"q"}}
	adGold  = Advertisement{Name: "gold", PoolSelectors: sels("tier=gold")}
	adZoneA = Advertisement{Name: "zone-a", NodeSelectors: sels("zone=a")}
)

func TestElect(t *testing.T) {
	tests := []struct {
		desc  string
		in    Input
		want  []Announcement
		probs []prob
	}{
		{
			desc: "one node announces an IPv4 address on all interfaces",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
		},
		{
			desc: "IPv6 address",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "2001:db8::1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("2001:db8::1", "n1", nil, "ns/a")},
		},
		{
			desc: "dual-stack service gets one announcement per address, sorted IPv4 first",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "2001:db8::1", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a"), ann("2001:db8::1", "n1", nil, "ns/a")},
		},
		{
			desc: "service without addresses and invalid addresses are ignored",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services:         []Service{cluster("ns/a", "p"), {Key: "ns/b", Pool: "p", IPs: []netip.Addr{{}}, ReadyNodes: []string{"n1"}}},
				ExpectedSpeakers: 1},
		},
		{
			desc: "node selector keeps only matching nodes",
			in: Input{Nodes: []Node{up("n1", "zone=b"), up("n2", "zone=a"), up("n3")}, Pools: pools,
				Advertisements: []Advertisement{adZoneA}, Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 3},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a")},
		},
		{
			desc: "several node selectors are ORed",
			in: Input{Nodes: []Node{up("n1", "zone=b"), up("n2", "zone=c")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "ac", NodeSelectors: sels("zone=a", "zone=c")}},
				Services:       []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 2},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a")},
		},
		{
			desc: "no node matches the node selectors",
			in: Input{Nodes: []Node{up("n1", "zone=b")}, Pools: pools,
				Advertisements: []Advertisement{adZoneA}, Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{{NoEligibleNode, ReasonNotSelected, "ns/a", "p", "192.0.2.1", "zone-a"}},
		},
		{
			desc: "empty node selector list selects all nodes",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "empty", Pools: []string{"q"}, NodeSelectors: sels()}},
				Services:       []Service{cluster("ns/a", "q", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
		},
		{
			desc: "pool selected by name",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adP},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
		},
		{
			desc: "pool not selected by name",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adQ},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1", "2001:db8::1")}, ExpectedSpeakers: 1},
			probs: []prob{{PoolNotAdvertised, "", "ns/a", "p", "", `no L2Advertisement selects pool "p"`}},
		},
		{
			desc: "pool selected by label selector",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adGold},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.2")}, ExpectedSpeakers: 1},
			want:  []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
			probs: []prob{{PoolNotAdvertised, "", "ns/b", "q", "", `"q"`}},
		},
		{
			desc: "pool names and pool selectors are ORed",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "x", Pools: []string{"q"}, PoolSelectors: sels("tier=gold")}},
				Services:       []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.2")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a"), ann("192.0.2.2", "n1", nil, "ns/b")},
		},
		{
			desc: "nil selectors in the lists match nothing",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "nilpool", PoolSelectors: append(sels(), nil)}, {Name: "nilnode", Pools: []string{"q"}, NodeSelectors: append(sels(), nil)}},
				Services:       []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.2")}, ExpectedSpeakers: 1},
			probs: []prob{
				{NoEligibleNode, ReasonNotSelected, "ns/b", "q", "192.0.2.2", "nilnode"},
				{PoolNotAdvertised, "", "ns/a", "p", "", `"p"`},
			},
		},
		{
			desc: "no advertisement at all",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{{PoolNotAdvertised, "", "ns/a", "p", "", "no L2Advertisement"}},
		},
		{
			desc: "unknown pool and missing pool annotation are not advertised",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "gone", "192.0.2.1"), cluster("ns/b", "", "192.0.2.2")}, ExpectedSpeakers: 1},
			probs: []prob{
				{PoolNotAdvertised, "", "ns/a", "gone", "", "does not exist"},
				{PoolNotAdvertised, "", "ns/b", "", "", "no pool annotation"},
			},
		},
		{
			desc: "interfaces are the sorted union over advertisements selecting pool and winner",
			in: Input{Nodes: []Node{up("n1", "zone=a")}, Pools: pools,
				Advertisements: []Advertisement{
					{Name: "x", Pools: []string{"p"}, Interfaces: []string{"eth1", "eth0"}},
					{Name: "y", PoolSelectors: sels("tier=gold"), Interfaces: []string{"eth0", "eth2"}},
					{Name: "other-node", Pools: []string{"p"}, NodeSelectors: sels("zone=b"), Interfaces: []string{"eth9"}},
					{Name: "other-pool", Pools: []string{"q"}, Interfaces: []string{"eth8"}},
				},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", []string{"eth0", "eth1", "eth2"}, "ns/a")},
		},
		{
			desc: "one selecting advertisement without interfaces means all interfaces",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "x", Interfaces: []string{"eth1"}}, {Name: "y", Pools: []string{"p"}}},
				Services:       []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
		},
		{
			desc: "excluded node does not announce, whatever the label value",
			in: Input{Nodes: []Node{up("n1", ExcludeLabel+"="), up("n2")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 2},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a")},
		},
		{
			desc: "all selected nodes excluded",
			in: Input{Nodes: []Node{up("n1", ExcludeLabel+"=true", "zone=a"), up("n2")}, Pools: pools, Advertisements: []Advertisement{adZoneA},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 2},
			probs: []prob{{NoEligibleNode, ReasonExcluded, "ns/a", "p", "192.0.2.1", ExcludeLabel}},
		},
		{
			desc: "NetworkUnavailable node does not announce",
			in: Input{Nodes: []Node{{Name: "n1", Alive: true, NetworkUnavailable: true}, up("n2")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 2},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a")},
		},
		{
			desc: "all nodes NetworkUnavailable",
			in: Input{Nodes: []Node{{Name: "n1", Alive: true, NetworkUnavailable: true}}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{{NoEligibleNode, ReasonNetworkUnavailable, "ns/a", "p", "192.0.2.1", "NetworkUnavailable"}},
		},
		{
			desc: "n1 wins 192.0.2.3 while alive",
			in: Input{Nodes: []Node{up("n1"), up("n2"), up("n3")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.3")}, ExpectedSpeakers: 3},
			want: []Announcement{ann("192.0.2.3", "n1", nil, "ns/a")},
		},
		{
			desc: "dead n1 does not announce 192.0.2.3",
			in: Input{Nodes: []Node{down("n1"), up("n2"), up("n3")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.3")}, ExpectedSpeakers: 3},
			want: []Announcement{ann("192.0.2.3", "n3", nil, "ns/a")},
		},
		{
			desc: "only selected node is dead",
			in: Input{Nodes: []Node{down("n1", "zone=a"), up("n2"), up("n3")}, Pools: pools, Advertisements: []Advertisement{adZoneA},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 3},
			probs: []prob{{NoEligibleNode, ReasonNotAlive, "ns/a", "p", "192.0.2.1", "alive"}},
		},
		{
			desc: "Local: only nodes with a ready endpoint",
			in: Input{Nodes: []Node{up("n1"), up("n2"), up("n3")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{local("ns/a", "p", []string{"n2", "gone"}, "192.0.2.1")}, ExpectedSpeakers: 3},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a")},
		},
		{
			desc: "Local: ready endpoints only on ineligible or unknown nodes",
			in: Input{Nodes: []Node{down("n1"), up("n2", ExcludeLabel+"="), up("n3")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{local("ns/a", "p", []string{"n1", "n2", "gone"}, "192.0.2.1", "2001:db8::1")}, ExpectedSpeakers: 3},
			probs: []prob{
				{NoEligibleNode, ReasonNoLocalEndpoint, "ns/a", "p", "192.0.2.1", "Local"},
				{NoEligibleNode, ReasonNoLocalEndpoint, "ns/a", "p", "2001:db8::1", "Local"},
			},
		},
		{
			desc: "Local without any ready endpoint",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{local("ns/a", "p", nil, "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{{NoEligibleNode, ReasonNoLocalEndpoint, "ns/a", "p", "192.0.2.1", "ready endpoint"}},
		},
		{
			desc: "Cluster with an endpoint on a node that cannot announce still uses every eligible node",
			in: Input{Nodes: []Node{up("n1", "zone=a"), up("n2")}, Pools: pools, Advertisements: []Advertisement{adZoneA},
				Services: []Service{{Key: "ns/a", Pool: "p", IPs: ips("192.0.2.1"), ReadyNodes: []string{"n2"}}}, ExpectedSpeakers: 2},
			want: []Announcement{ann("192.0.2.1", "n1", nil, "ns/a")},
		},
		{
			desc: "Cluster with no ready endpoint anywhere",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{{Key: "ns/a", Pool: "p", IPs: ips("192.0.2.1")}}, ExpectedSpeakers: 1},
			probs: []prob{{NoEligibleNode, ReasonNoEndpoint, "ns/a", "p", "192.0.2.1", "no ready endpoint"}},
		},
		{
			desc: "shared address goes to a node eligible for every service",
			in: Input{Nodes: []Node{up("n1"), up("n2"), up("n3")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{
					local("ns/b", "p", []string{"n2", "n3"}, "192.0.2.1"),
					local("ns/a", "p", []string{"n1", "n2"}, "192.0.2.1"),
					cluster("ns/c", "p", "192.0.2.1"),
				}, ExpectedSpeakers: 3},
			want: []Announcement{ann("192.0.2.1", "n2", nil, "ns/a", "ns/b", "ns/c")},
		},
		{
			desc: "shared address with an empty intersection: a problem per service",
			in: Input{Nodes: []Node{up("n1"), up("n2")}, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{
					local("ns/a", "p", []string{"n1"}, "192.0.2.1"),
					local("ns/b", "p", []string{"n2"}, "192.0.2.1", "192.0.2.2"),
				}, ExpectedSpeakers: 2},
			want: []Announcement{ann("192.0.2.2", "n2", nil, "ns/b")},
			probs: []prob{
				{NoEligibleNode, ReasonSharedIP, "ns/a", "p", "192.0.2.1", "ns/a, ns/b"},
				{NoEligibleNode, ReasonSharedIP, "ns/b", "p", "192.0.2.1", "ns/a, ns/b"},
			},
		},
		{
			desc: "shared address where one service's pool is not advertised",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools, Advertisements: []Advertisement{adP},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{
				{NoEligibleNode, ReasonSharedIP, "ns/a", "p", "192.0.2.1", "with ns/b"},
				{PoolNotAdvertised, "", "ns/b", "q", "", `"q"`},
			},
		},
		{
			desc: "shared address across pools unions the interfaces of both",
			in: Input{Nodes: []Node{up("n1")}, Pools: pools,
				Advertisements: []Advertisement{{Name: "x", Pools: []string{"p"}, Interfaces: []string{"eth0"}}, {Name: "y", Pools: []string{"q"}, Interfaces: []string{"eth1"}}},
				Services:       []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.1")}, ExpectedSpeakers: 1},
			want: []Announcement{ann("192.0.2.1", "n1", []string{"eth0", "eth1"}, "ns/a", "ns/b")},
		},
		{
			desc: "duplicate node entries merge conservatively",
			in: Input{Nodes: []Node{up("n1"), down("n1"), up("n2", "zone=a"), up("n2")}, Pools: pools, Advertisements: []Advertisement{adZoneA},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: 1},
			probs: []prob{{NoEligibleNode, ReasonNotSelected, "ns/a", "p", "192.0.2.1", ""}},
		},
		{
			desc: "no quorum: nothing announced, one problem",
			in: Input{Nodes: []Node{up("n1"), down("n2"), down("n3")}, Pools: pools, Advertisements: []Advertisement{adP},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1"), cluster("ns/b", "q", "192.0.2.2")}, ExpectedSpeakers: 3},
			probs: []prob{{NoQuorum, "", "", "", "", "1 of 3 expected speakers alive"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := Elect(tc.in)
			if !reflect.DeepEqual(got.Announcements, tc.want) {
				t.Errorf("announcements:\n%swant:\n%s", fmtResult(Result{Announcements: got.Announcements}), fmtResult(Result{Announcements: tc.want}))
			}
			if len(got.Problems) != len(tc.probs) {
				t.Fatalf("problems:\n%swant %d", fmtResult(Result{Problems: got.Problems}), len(tc.probs))
			}
			for i, w := range tc.probs {
				p := got.Problems[i]
				var wip netip.Addr
				if w.ip != "" {
					wip = ip(w.ip)
				}
				if p.Kind != w.kind || p.Reason != w.reason || p.Service != w.svc || p.Pool != w.pool || p.IP != wip || !strings.Contains(p.Message, w.has) {
					t.Errorf("problem %d: %+v, want %+v", i, p, w)
				}
			}
		})
	}
}

func TestHasQuorum(t *testing.T) {
	// need is the fewest alive speakers that keep announcing.
	for _, tc := range []struct{ expected, need int }{
		{1, 1}, {2, 2}, {3, 2}, {4, 3}, {5, 3},
	} {
		for alive := 0; alive <= tc.expected+1; alive++ {
			if got, want := HasQuorum(alive, tc.expected), alive >= tc.need; got != want {
				t.Errorf("HasQuorum(%d, %d) = %v, want %v", alive, tc.expected, got, want)
			}
		}
	}
	for _, alive := range []int{0, 1, 5} {
		for _, expected := range []int{0, -1} {
			if HasQuorum(alive, expected) {
				t.Errorf("HasQuorum(%d, %d) = true, want false: an unknown expected count fails closed", alive, expected)
			}
		}
	}
}

// TestElectQuorum walks clusters of 1 to 5 nodes from all alive to none.
func TestElectQuorum(t *testing.T) {
	for n := 1; n <= 5; n++ {
		for alive := n; alive >= 0; alive-- {
			var nodes []Node
			for i := range n {
				nd := Node{Name: string(rune('a' + i)), Alive: i < alive}
				nodes = append(nodes, nd)
			}
			got := Elect(Input{Nodes: nodes, Pools: pools, Advertisements: []Advertisement{adAll},
				Services: []Service{cluster("ns/a", "p", "192.0.2.1")}, ExpectedSpeakers: n})
			quorum := 2*alive > n
			if quorum {
				if len(got.Announcements) != 1 || len(got.Problems) != 0 {
					t.Errorf("%d/%d alive: want one announcement, got\n%s", alive, n, fmtResult(got))
				}
				continue
			}
			if len(got.Announcements) != 0 || len(got.Problems) != 1 || got.Problems[0].Kind != NoQuorum {
				t.Errorf("%d/%d alive: want only NoQuorum, got\n%s", alive, n, fmtResult(got))
			}
		}
	}
}

func TestFor(t *testing.T) {
	r := Result{Announcements: []Announcement{ann("192.0.2.1", "n1", nil), ann("192.0.2.2", "n2", nil), ann("2001:db8::1", "n1", nil)}}
	if got, want := r.For("n1"), []Announcement{r.Announcements[0], r.Announcements[2]}; !reflect.DeepEqual(got, want) {
		t.Errorf("For(n1) = %v, want %v", got, want)
	}
	if got := r.For("n3"); got != nil {
		t.Errorf("For(n3) = %v, want nil", got)
	}
}

// TestScoreStable pins winners: the score is a contract between speakers
// of different versions during a rolling upgrade (see hash.go), so a
// change here must be deliberate.
func TestScoreStable(t *testing.T) {
	nodes := []Node{up("n1"), up("n2"), up("n3")}
	for addr, want := range map[string]string{
		"192.0.2.1": "n2", "192.0.2.2": "n2", "192.0.2.3": "n1", "192.0.2.4": "n3",
		"2001:db8::1": "n2", "2001:db8::2": "n3",
		"::ffff:192.0.2.3": "n3", // hashed as 16 bytes, unlike 192.0.2.3
	} {
		r := Elect(Input{Nodes: nodes, Pools: pools, Advertisements: []Advertisement{adAll},
			Services: []Service{cluster("ns/a", "p", addr)}, ExpectedSpeakers: 3})
		if got := r.Announcements[0].Node; got != want {
			t.Errorf("%s won by %s, want %s", addr, got, want)
		}
	}
}
