package routes

import (
	"net/netip"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func sel(t testing.TB, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// base is a three-node cluster with two peers (one iBGP), one pool and one
// Service ready everywhere, advertised by one Advertisement to all peers.
func base(t testing.TB) Input {
	return Input{
		Node: "node1",
		Nodes: []Node{
			{Name: "node1", Labels: map[string]string{"zone": "a"}},
			{Name: "node2", Labels: map[string]string{"zone": "b"}},
			{Name: "node3", Labels: map[string]string{"zone": "b"}},
		},
		Pools: []Pool{{Name: "prod", Labels: map[string]string{"tier": "prod"}}, {Name: "dev"}},
		Services: []Service{{Key: "ns/web", IPs: addrs("198.51.100.10", "2001:db8:100::10"), Pool: "prod",
			ReadyNodes: []string{"node1", "node2", "node3"}}},
		Peers: []Peer{{Name: "tor-v4"}, {Name: "tor-ibgp", IBGP: true}},
		Advertisements: []Advertisement{{Name: "all", Length4: 32, Length6: 128, LocalPref: 200,
			Communities: []string{"65535:65282", "large:1:2:3", "no-adv"}}},
		Aliases: map[string]string{"no-adv": "65535:65281"},
	}
}

func TestCompute(t *testing.T) {
	both := func(lp uint32) []Path {
		return []Path{
			{Prefix: pfx("198.51.100.10/32"), Communities: []uint32{0xFFFFFF01, 0xFFFFFF02}, LargeCommunities: []LargeCommunity{{1, 2, 3}}, LocalPref: lp, Services: []string{"ns/web"}},
			{Prefix: pfx("2001:db8:100::10/128"), Communities: []uint32{0xFFFFFF01, 0xFFFFFF02}, LargeCommunities: []LargeCommunity{{1, 2, 3}}, LocalPref: lp, Services: []string{"ns/web"}},
		}
	}
	tests := []struct {
		name   string
		change func(*Input)
		want   Result
	}{
		{"every peer gets both families; LOCAL_PREF only over iBGP", func(*Input) {},
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": both(200), "tor-v4": both(0)}}},
		{"excluded node keeps sessions, advertises nothing", func(in *Input) { in.Nodes[0].Labels[ExcludeLabel] = "" },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"NetworkUnavailable node advertises nothing", func(in *Input) { in.Nodes[0].NetworkUnavailable = true },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"unknown node opens no session", func(in *Input) { in.Node = "node9" },
			Result{Paths: map[string][]Path{}}},
		{"peer selecting other nodes: no session", func(in *Input) { in.Peers[1].NodeSelectors = []labels.Selector{sel(t, "zone=b")} },
			Result{Peers: []string{"tor-v4"}, Paths: map[string][]Path{"tor-v4": both(0)}}},
		{"advertisement limited to one peer", func(in *Input) { in.Advertisements[0].Peers = []string{"tor-v4"} },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": both(0)}}},
		{"advertisement selecting other nodes", func(in *Input) { in.Advertisements[0].NodeSelectors = []labels.Selector{sel(t, "zone=b")} },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"Local without an endpoint here", func(in *Input) {
			in.Services[0].Local = true
			in.Services[0].ReadyNodes = []string{"node2"}
		}, Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"Local with an endpoint here", func(in *Input) {
			in.Services[0].Local = true
			in.Services[0].ReadyNodes = []string{"node1"}
		}, Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": both(200), "tor-v4": both(0)}}},
		{"Cluster without any ready endpoint", func(in *Input) { in.Services[0].ReadyNodes = nil },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"pool not selected by name", func(in *Input) { in.Advertisements[0].Pools = []string{"dev"} },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"pool selected by label", func(in *Input) {
			in.Advertisements[0].PoolSelectors = []labels.Selector{sel(t, "tier=prod")}
			in.Advertisements[0].Peers = []string{"tor-v4"}
		}, Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": both(0)}}},
		{"unknown pool is not advertised", func(in *Input) { in.Services[0].Pool = "gone" },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil}}},
		{"unknown community name: nothing from that advertisement, a problem", func(in *Input) { in.Aliases = nil },
			Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-ibgp": nil, "tor-v4": nil},
				Problems: []Problem{{Advertisement: "all", Message: `community "no-adv": no Community object defines that name`}}}},
		{"aggregation and merge of two advertisements", func(in *Input) {
			in.Services = append(in.Services, Service{Key: "ns/api", IPs: addrs("198.51.100.77"), Pool: "prod", ReadyNodes: []string{"node3"}})
			in.Advertisements = []Advertisement{
				{Name: "agg", Length4: 24, Length6: 64, Peers: []string{"tor-ibgp"}, LocalPref: 50, Communities: []string{"1:1"}},
				{Name: "agg2", Length4: 24, Length6: 64, Peers: []string{"tor-ibgp"}, LocalPref: 70, Communities: []string{"1:2", "1:1"}},
			}
		}, Result{Peers: []string{"tor-ibgp", "tor-v4"}, Paths: map[string][]Path{"tor-v4": nil, "tor-ibgp": {
			{Prefix: pfx("198.51.100.0/24"), Communities: []uint32{1<<16 | 1, 1<<16 | 2}, LocalPref: 70, Services: []string{"ns/api", "ns/web"}},
			{Prefix: pfx("2001:db8:100::/64"), Communities: []uint32{1<<16 | 1, 1<<16 | 2}, LocalPref: 70, Services: []string{"ns/web"}},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base(t)
			tt.change(&in)
			got := Compute(in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Compute:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseCommunity(t *testing.T) {
	for _, tt := range []struct {
		in      string
		std     uint32
		large   LargeCommunity
		isLarge bool
		ok      bool
	}{
		{"65535:65282", 0xFFFFFF02, LargeCommunity{}, false, true},
		{"0:0", 0, LargeCommunity{}, false, true},
		{"large:1:2:3", 0, LargeCommunity{1, 2, 3}, true, true},
		{"large:4294967295:0:1", 0, LargeCommunity{4294967295, 0, 1}, true, true},
		{"65536:1", 0, LargeCommunity{}, false, false},
		{"1:2:3", 0, LargeCommunity{}, false, false},
		{"large:1:2", 0, LargeCommunity{}, false, false},
		{"large:4294967296:0:0", 0, LargeCommunity{}, false, false},
		{"no-export", 0, LargeCommunity{}, false, false},
	} {
		std, large, isLarge, err := ParseCommunity(tt.in)
		if (err == nil) != tt.ok || std != tt.std || large != tt.large || isLarge != tt.isLarge {
			t.Errorf("ParseCommunity(%q) = %d, %v, %v, %v", tt.in, std, large, isLarge, err)
		}
	}
}

func TestAdvertisedPools(t *testing.T) {
	pools := []Pool{{Name: "a", Labels: map[string]string{"bgp": "yes"}}, {Name: "b"}, {Name: "c"}}
	sel, err := labels.Parse("bgp=yes")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		ads  []Advertisement
		want map[string]bool
	}{
		{"none", nil, map[string]bool{}},
		{"by name", []Advertisement{{Pools: []string{"b", "missing"}}}, map[string]bool{"b": true}},
		{"by label", []Advertisement{{PoolSelectors: []labels.Selector{sel}}}, map[string]bool{"a": true}},
		{"all when unrestricted", []Advertisement{{}}, map[string]bool{"a": true, "b": true, "c": true}},
	} {
		if got := AdvertisedPools(Input{Pools: pools, Advertisements: tt.ads}); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: AdvertisedPools = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestResultServices(t *testing.T) {
	r := Result{Paths: map[string][]Path{
		"a": {{Services: []string{"ns/x", "ns/y"}}},
		"b": {{Services: []string{"ns/y"}}, {Services: []string{"ns/z"}}},
		"c": nil,
	}}
	got := r.Services()
	if len(got) != 3 || !got["ns/x"] || !got["ns/y"] || !got["ns/z"] {
		t.Errorf("Services() = %v, want ns/x, ns/y, ns/z", got)
	}
	if n := len((Result{}).Services()); n != 0 {
		t.Errorf("no paths: %d services", n)
	}
}
