package layer2

import (
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// allNodes is ff02::1, where unsolicited Neighbor Advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// ethernetFrame wraps an ARP packet in an Ethernet frame from mac to dst.
func ethernetFrame(p *arp.Packet, dst net.HardwareAddr) ([]byte, error) {
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{
		Destination: dst,
		Source:      p.SenderHardwareAddr,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}
	return f.MarshalBinary()
}

// gratuitousARP returns the frames of one gratuitous round for ip: an ARP
// request and an ARP reply, both broadcast, with sender and target IP set to
// ip and sender hardware address mac. Some hosts only heed one of the two.
// The request's target hardware address is zero (RFC 5227 announcement), the
// reply's is broadcast, as arping -U and -A send them.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, make(net.HardwareAddr, len(mac)), ip)
	if err != nil {
		return nil, err
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range []*arp.Packet{req, rep} {
		b, err := ethernetFrame(p, ethernet.Broadcast)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// arpAnswer decides whether the ARP packet p, received in frame f on an
// interface with MAC mac, is a question for an address owns accepts. If so it
// returns the reply frame, its Ethernet destination and the target address.
// Ignored: replies, our own frames (a packet socket also sees outgoing ones),
// and gratuitous announcements by others (sender IP = target IP).
func arpAnswer(f *ethernet.Frame, p *arp.Packet, mac net.HardwareAddr, owns func(netip.Addr) bool) (frame []byte, dst net.HardwareAddr, target netip.Addr, ok bool) {
	if p.Operation != arp.OperationRequest || p.SenderIP == p.TargetIP {
		return nil, nil, netip.Addr{}, false
	}
	if f.Source.String() == mac.String() || p.SenderHardwareAddr.String() == mac.String() {
		return nil, nil, netip.Addr{}, false
	}
	if !owns(p.TargetIP) {
		return nil, nil, netip.Addr{}, false
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
	if err != nil {
		return nil, nil, netip.Addr{}, false
	}
	b, err := ethernetFrame(rep, p.SenderHardwareAddr)
	if err != nil {
		return nil, nil, netip.Addr{}, false
	}
	return b, p.SenderHardwareAddr, p.TargetIP, true
}

// unsolicitedNA is the Neighbor Advertisement sent to ff02::1 when ip is
// gained: Override set, Solicited clear, with the target link-layer address.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}

// ndpAnswer decides whether m, received from src with the given hop limit
// (-1 when unknown), is a Neighbor Solicitation for an address owns accepts.
// If so it returns the advertisement and where to send it: to the solicitor
// with Solicited and Override set, or, for duplicate address detection
// (source ::), to ff02::1 with Solicited clear (RFC 4861 7.2.4).
func ndpAnswer(m ndp.Message, src netip.Addr, hopLimit int, mac net.HardwareAddr, owns func(netip.Addr) bool) (*ndp.NeighborAdvertisement, netip.Addr, bool) {
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || (hopLimit >= 0 && hopLimit != ndp.HopLimit) {
		return nil, netip.Addr{}, false
	}
	target := ns.TargetAddress.WithZone("")
	if !owns(target) {
		return nil, netip.Addr{}, false
	}
	na := unsolicitedNA(mac, target)
	if src.IsUnspecified() {
		return na, allNodes, true
	}
	na.Solicited = true
	return na, src, true
}
