package layer2

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	mac     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	peerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	v4      = netip.MustParseAddr("192.0.2.10")
	v4b     = netip.MustParseAddr("192.0.2.11")
	v6      = netip.MustParseAddr("2001:db8::10")
)

func set(ps ...pair) map[pair]struct{} {
	m := make(map[pair]struct{})
	for _, p := range ps {
		m[p] = struct{}{}
	}
	return m
}

func TestDiffPairs(t *testing.T) {
	a0, a1, b0 := pair{v4, "eth0"}, pair{v4, "eth1"}, pair{v4b, "eth0"}
	c0 := pair{v6, "eth0"}
	for _, tc := range []struct {
		name         string
		cur, want    map[pair]struct{}
		gained, lost []pair
	}{
		{"nothing", set(), set(), nil, nil},
		{"first address", set(), set(a0), []pair{a0}, nil},
		{"unchanged", set(a0, c0), set(a0, c0), nil, nil},
		{"second interface for same address", set(a0), set(a0, a1), []pair{a1}, nil},
		{"address moves interface", set(a0), set(a1), []pair{a1}, []pair{a0}},
		{"all withdrawn", set(a0, b0, c0), set(), nil, []pair{a0, b0, c0}},
		{"sorted by address then interface", set(), set(c0, a1, b0, a0), []pair{a0, a1, b0, c0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, l := diffPairs(tc.cur, tc.want)
			if !slices.Equal(g, tc.gained) || !slices.Equal(l, tc.lost) {
				t.Errorf("diffPairs = gained %v lost %v, want %v %v", g, l, tc.gained, tc.lost)
			}
		})
	}
}

func TestDesiredPairs(t *testing.T) {
	auto := func(ipv6 bool) []string {
		if ipv6 {
			return []string{"eth0"}
		}
		return []string{"eth0", "eth1"}
	}
	mapped := netip.AddrFrom16(v4.As16())
	for _, tc := range []struct {
		name string
		want map[netip.Addr][]string
		out  map[pair]struct{}
		bad  []netip.Addr
	}{
		{"nil", nil, set(), nil},
		{"explicit", map[netip.Addr][]string{v4: {"eth1"}}, set(pair{v4, "eth1"}), nil},
		{"duplicates collapse", map[netip.Addr][]string{v4: {"eth1", "eth1"}}, set(pair{v4, "eth1"}), nil},
		{"empty list means auto, per family", map[netip.Addr][]string{v4: {}, v6: nil},
			set(pair{v4, "eth0"}, pair{v4, "eth1"}, pair{v6, "eth0"}), nil},
		{"mapped IPv4 is unmapped", map[netip.Addr][]string{mapped: {"eth0"}}, set(pair{v4, "eth0"}), nil},
		{"unusable addresses reported", map[netip.Addr][]string{
			{}: {"eth0"}, netip.IPv4Unspecified(): {"eth0"}, netip.MustParseAddr("224.0.0.1"): {"eth0"},
			netip.MustParseAddr("fe80::1"): {"eth0"}, netip.MustParseAddr("127.0.0.1"): {"eth0"}, v4: {"eth0"},
		}, set(pair{v4, "eth0"}), []netip.Addr{{}, netip.IPv4Unspecified(), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("224.0.0.1"), netip.MustParseAddr("fe80::1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, bad := desiredPairs(tc.want, auto)
			if !mapsEqual(out, tc.out) || !slices.Equal(bad, tc.bad) {
				t.Errorf("desiredPairs = %v bad %v, want %v bad %v", out, bad, tc.out, tc.bad)
			}
		})
	}
}

func mapsEqual(a, b map[pair]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func TestAutoInterface(t *testing.T) {
	eth := net.Interface{Name: "eth0", HardwareAddr: mac, Flags: net.FlagUp | net.FlagBroadcast | net.FlagMulticast}
	with := func(f func(*candidate)) candidate {
		c := candidate{ifi: eth, linkLocal: true}
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name       string
		c          candidate
		ipv4, ipv6 bool
	}{
		{"ethernet", with(func(*candidate) {}), true, true},
		{"down", with(func(c *candidate) { c.ifi.Flags &^= net.FlagUp }), false, false},
		{"loopback", with(func(c *candidate) { c.ifi.Flags |= net.FlagLoopback }), false, false},
		{"no MAC (tunnel)", with(func(c *candidate) { c.ifi.HardwareAddr = nil }), false, false},
		{"infiniband-length MAC", with(func(c *candidate) { c.ifi.HardwareAddr = make(net.HardwareAddr, 20) }), false, false},
		{"bridge port", with(func(c *candidate) { c.enslaved = true }), false, false},
		{"no broadcast", with(func(c *candidate) { c.ifi.Flags &^= net.FlagBroadcast }), false, true},
		{"no multicast", with(func(c *candidate) { c.ifi.Flags &^= net.FlagMulticast }), true, false},
		{"no link-local", with(func(c *candidate) { c.linkLocal = false }), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := autoInterface(tc.c, false); got != tc.ipv4 {
				t.Errorf("IPv4: %v, want %v", got, tc.ipv4)
			}
			if got := autoInterface(tc.c, true); got != tc.ipv6 {
				t.Errorf("IPv6: %v, want %v", got, tc.ipv6)
			}
		})
	}
}

func parseARPFrame(t *testing.T, b []byte) (*ethernet.Frame, *arp.Packet) {
	t.Helper()
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	return &f, &p
}

func TestGratuitousARP(t *testing.T) {
	frames, err := gratuitousARP(mac, v4)
	if err != nil {
		t.Fatal(err)
	}
	wantOps := []arp.Operation{arp.OperationRequest, arp.OperationReply}
	wantTHA := []net.HardwareAddr{make(net.HardwareAddr, 6), ethernet.Broadcast}
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2", len(frames))
	}
	for i, b := range frames {
		f, p := parseARPFrame(t, b)
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, mac) || f.EtherType != ethernet.EtherTypeARP {
			t.Errorf("frame %d: ethernet %v -> %v type %v", i, f.Source, f.Destination, f.EtherType)
		}
		if p.Operation != wantOps[i] || p.SenderIP != v4 || p.TargetIP != v4 ||
			!bytes.Equal(p.SenderHardwareAddr, mac) || !bytes.Equal(p.TargetHardwareAddr, wantTHA[i]) {
			t.Errorf("frame %d: %+v", i, p)
		}
	}
	if _, err := gratuitousARP(mac, v6); err == nil {
		t.Error("gratuitousARP accepted an IPv6 address")
	}
}

func TestARPAnswer(t *testing.T) {
	owns := func(ip netip.Addr) bool { return ip == v4 }
	peer := netip.MustParseAddr("192.0.2.1")
	req := func(op arp.Operation, srcMAC net.HardwareAddr, sender, target netip.Addr) (*ethernet.Frame, *arp.Packet) {
		p, err := arp.NewPacket(op, srcMAC, sender, ethernet.Broadcast, target)
		if err != nil {
			t.Fatal(err)
		}
		return &ethernet.Frame{Source: srcMAC, Destination: ethernet.Broadcast, EtherType: ethernet.EtherTypeARP}, p
	}
	for _, tc := range []struct {
		name   string
		op     arp.Operation
		srcMAC net.HardwareAddr
		sender netip.Addr
		target netip.Addr
		ok     bool
	}{
		{"request for owned address", arp.OperationRequest, peerMAC, peer, v4, true},
		{"probe from 0.0.0.0 (RFC 5227)", arp.OperationRequest, peerMAC, netip.IPv4Unspecified(), v4, true},
		{"request for another address", arp.OperationRequest, peerMAC, peer, v4b, false},
		{"reply is not a question", arp.OperationReply, peerMAC, peer, v4, false},
		{"our own outgoing frame", arp.OperationRequest, mac, peer, v4, false},
		{"someone else's gratuitous ARP", arp.OperationRequest, peerMAC, v4, v4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := req(tc.op, tc.srcMAC, tc.sender, tc.target)
			b, dst, target, ok := arpAnswer(f, p, mac, owns)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			rf, rp := parseARPFrame(t, b)
			if !bytes.Equal(dst, peerMAC) || !bytes.Equal(rf.Destination, peerMAC) || !bytes.Equal(rf.Source, mac) || target != v4 {
				t.Errorf("reply frame %v -> %v (dst %v), target %v", rf.Source, rf.Destination, dst, target)
			}
			if rp.Operation != arp.OperationReply || rp.SenderIP != v4 || !bytes.Equal(rp.SenderHardwareAddr, mac) ||
				rp.TargetIP != tc.sender || !bytes.Equal(rp.TargetHardwareAddr, peerMAC) {
				t.Errorf("reply %+v", rp)
			}
		})
	}
}

func TestUnsolicitedNA(t *testing.T) {
	na := unsolicitedNA(mac, v6)
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*ndp.NeighborAdvertisement)
	if got.Solicited || !got.Override || got.Router || got.TargetAddress != v6 {
		t.Errorf("flags/target: %+v", got)
	}
	if len(got.Options) != 1 {
		t.Fatalf("options %v", got.Options)
	}
	lla, ok := got.Options[0].(*ndp.LinkLayerAddress)
	if !ok || lla.Direction != ndp.Target || !bytes.Equal(lla.Addr, mac) {
		t.Errorf("option %+v, want target link-layer address %v", got.Options[0], mac)
	}
}

func TestNDPAnswer(t *testing.T) {
	owns := func(ip netip.Addr) bool { return ip == v6 }
	peer := netip.MustParseAddr("fe80::1")
	ns := func(target netip.Addr) ndp.Message {
		return &ndp.NeighborSolicitation{TargetAddress: target,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: peerMAC}}}
	}
	for _, tc := range []struct {
		name      string
		m         ndp.Message
		src       netip.Addr
		hop       int
		ok        bool
		dst       netip.Addr
		solicited bool
	}{
		{"solicitation for owned address", ns(v6), peer, 255, true, peer, true},
		{"hop limit unknown", ns(v6), peer, -1, true, peer, true},
		{"zoned target", ns(v6.WithZone("eth0")), peer, 255, true, peer, true},
		{"duplicate address detection", ns(v6), netip.IPv6Unspecified(), 255, true, allNodes, false},
		{"routed solicitation (hop limit 254)", ns(v6), peer, 254, false, netip.Addr{}, false},
		{"other target", ns(netip.MustParseAddr("2001:db8::11")), peer, 255, false, netip.Addr{}, false},
		{"not a solicitation", unsolicitedNA(peerMAC, v6), peer, 255, false, netip.Addr{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			na, dst, ok := ndpAnswer(tc.m, tc.src, tc.hop, mac, owns)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if dst != tc.dst || na.Solicited != tc.solicited || !na.Override || na.TargetAddress != v6 {
				t.Errorf("na %+v to %v", na, dst)
			}
			if lla := na.Options[0].(*ndp.LinkLayerAddress); lla.Direction != ndp.Target || !bytes.Equal(lla.Addr, mac) {
				t.Errorf("option %+v", lla)
			}
		})
	}
}
