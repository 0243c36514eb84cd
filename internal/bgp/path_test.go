package bgp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"

	"github.com/ironlb/ironlb/internal/routes"
)

// attrs decodes a path's attributes for inspection.
func attrs(t *testing.T, p *api.Path) []proto.Message {
	t.Helper()
	var out []proto.Message
	for _, a := range p.Pattrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestAPIPathNextHopsAndAttributes(t *testing.T) {
	v4peer := PeerConfig{Name: "tor4", Address: netip.MustParseAddr("192.168.100.1"),
		NextHop4: netip.MustParseAddr("192.168.100.11"), NextHop6: netip.MustParseAddr("fd00:100::11")}
	v6peer := PeerConfig{Name: "tor6", Address: netip.MustParseAddr("fd00:100::1"),
		NextHop4: netip.MustParseAddr("192.168.100.11"), NextHop6: netip.MustParseAddr("fd00:100::11")}
	path4 := routes.Path{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Communities: []uint32{65535<<16 | 65282},
		LargeCommunities: []routes.LargeCommunity{{Global: 64501, Local1: 1, Local2: 2}}, LocalPref: 150}
	path6 := routes.Path{Prefix: netip.MustParsePrefix("2001:db8:100::10/128")}

	for _, tt := range []struct {
		name    string
		pc      PeerConfig
		p       routes.Path
		nexthop string
	}{
		{"v4 path on a v4 session: the session's own address", v4peer, path4, "0.0.0.0"},
		{"v6 path on a v6 session: the session's own address", v6peer, path6, "::"},
		{"v6 path on a v4 session: the node's IPv6 address", v4peer, path6, "fd00:100::11"},
		{"v4 path on a v6 session: the node's IPv4 address", v6peer, path4, "192.168.100.11"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ap, err := apiPath(tt.pc, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			var nh string
			var communities []uint32
			var large, localPref int
			for _, a := range attrs(t, ap) {
				switch a := a.(type) {
				case *api.NextHopAttribute:
					nh = a.NextHop
				case *api.MpReachNLRIAttribute:
					nh = strings.Join(a.NextHops, ",")
				case *api.CommunitiesAttribute:
					communities = a.Communities
				case *api.LargeCommunitiesAttribute:
					large = len(a.Communities)
				case *api.LocalPrefAttribute:
					localPref = int(a.LocalPref)
				}
			}
			if nh != tt.nexthop {
				t.Errorf("next hop %q, want %q", nh, tt.nexthop)
			}
			if !slices.Equal(communities, tt.p.Communities) || large != len(tt.p.LargeCommunities) || localPref != int(tt.p.LocalPref) {
				t.Errorf("attributes: communities %v, %d large, localPref %d; want %v, %d, %d",
					communities, large, localPref, tt.p.Communities, len(tt.p.LargeCommunities), tt.p.LocalPref)
			}
		})
	}

	// A session of one family with a node that has no address of the other
	// cannot carry the other family's paths: an error, not a bad UPDATE.
	noV6 := v4peer
	noV6.NextHop6 = netip.Addr{}
	if _, err := apiPath(noV6, path6); err == nil {
		t.Error("IPv6 path over IPv4 session without an IPv6 next hop: no error")
	}
}

func TestAPIPeerFamiliesAndTimers(t *testing.T) {
	pc := PeerConfig{Name: "tor", MyASN: 64501, PeerASN: 64500, Address: netip.MustParseAddr("192.168.100.1"),
		Password: "s3cret", Source: netip.MustParseAddr("192.168.100.11")}
	p := apiPeer(pc)
	if p.Conf.AuthPassword != "s3cret" || p.Conf.PeerAsn != 64500 || p.Conf.LocalAsn != 64501 || p.Transport.LocalAddress != "192.168.100.11" {
		t.Errorf("peer conf %+v transport %+v", p.Conf, p.Transport)
	}
	if len(p.AfiSafis) != 2 {
		t.Errorf("multiprotocol session carries %d families, want 2", len(p.AfiSafis))
	}
	pc.DisableMP = true
	if p := apiPeer(pc); len(p.AfiSafis) != 1 || p.AfiSafis[0].Config.Family.Afi != api.Family_AFI_IP {
		t.Errorf("disableMP on an IPv4 session: families %v, want IPv4 only", p.AfiSafis)
	}
}
