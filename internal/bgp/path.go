package bgp

import (
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ironlb/ironlb/internal/routes"
)

// apiPath turns a desired path into GoBGP's form for one session. A path
// in the session's own family gets an unspecified next hop, which GoBGP
// replaces with the session's local address; the other family needs the
// node's address of that family (an IPv6 path over an IPv4 session).
func apiPath(pc PeerConfig, p routes.Path) (*api.Path, error) {
	is4 := p.Prefix.Addr().Is4()
	var nh netip.Addr
	switch {
	case is4 && pc.Address.Is4():
		nh = netip.IPv4Unspecified()
	case !is4 && pc.Address.Is6():
		nh = netip.IPv6Unspecified()
	case is4:
		nh = pc.NextHop4
	default:
		nh = pc.NextHop6
	}
	if !nh.IsValid() {
		return nil, fmt.Errorf("advertising %s over a session to %s: the node has no address of that family for the next hop", p.Prefix, pc.Address)
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Prefix.Addr().String(), PrefixLen: uint32(p.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if !is4 {
		fam.Afi = api.Family_AFI_IP6
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	if is4 {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nh.String()})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
	}
	if len(p.Communities) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: p.Communities})
	}
	if len(p.LargeCommunities) > 0 {
		lc := make([]*api.LargeCommunity, 0, len(p.LargeCommunities))
		for _, c := range p.LargeCommunities {
			lc = append(lc, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2})
		}
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: lc})
	}
	if p.LocalPref != 0 {
		attrs = append(attrs, &api.LocalPrefAttribute{LocalPref: p.LocalPref})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, fmt.Errorf("encoding %T for %s: %w", a, p.Prefix, err)
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}
