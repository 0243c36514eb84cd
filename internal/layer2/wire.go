package layer2

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

// handler is what a wire calls back into while serving.
type handler struct {
	owns        func(netip.Addr) bool
	answered    func(netip.Addr)
	replyFailed func(netip.Addr, error)
}

// wire is one protocol's socket on one interface.
type wire interface {
	// serve answers requests until the socket is closed or fails.
	serve(h handler) error
	// announce sends one gratuitous round for ip.
	announce(ip netip.Addr) error
	// join and leave prepare the socket to hear requests for ip.
	join(ip netip.Addr) error
	leave(ip netip.Addr) error
	close() error
}

// arpWire answers ARP on one interface through an AF_PACKET socket.
//
// It uses mdlayher/arp for packets but opens the socket itself: arp.Dial
// refuses interfaces without an IPv4 address of their own, which a
// responder never needs (every packet it sends is from a service address).
type arpWire struct {
	mac  net.HardwareAddr
	conn net.PacketConn
}

func dialARP(ifi *net.Interface) (*arpWire, error) {
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("open arp socket: %w", err)
	}
	return &arpWire{mac: ifi.HardwareAddr, conn: c}, nil
}

func (w *arpWire) serve(h handler) error {
	buf := make([]byte, 1514)
	var f ethernet.Frame
	var p arp.Packet
	for {
		n, _, err := w.conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		if f.UnmarshalBinary(buf[:n]) != nil || f.EtherType != ethernet.EtherTypeARP {
			continue
		}
		if p.UnmarshalBinary(f.Payload) != nil {
			continue
		}
		b, dst, target, ok := arpAnswer(&f, &p, w.mac, h.owns)
		if !ok {
			continue
		}
		if _, err := w.conn.WriteTo(b, &packet.Addr{HardwareAddr: dst}); err != nil {
			h.replyFailed(target, err)
			continue
		}
		h.answered(target)
	}
}

func (w *arpWire) announce(ip netip.Addr) error {
	frames, err := gratuitousARP(w.mac, ip)
	if err != nil {
		return err
	}
	for _, b := range frames {
		if _, err := w.conn.WriteTo(b, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("send gratuitous arp: %w", err)
		}
	}
	return nil
}

func (w *arpWire) join(netip.Addr) error  { return nil }
func (w *arpWire) leave(netip.Addr) error { return nil }
func (w *arpWire) close() error           { return w.conn.Close() }

// ndpWire answers Neighbor Solicitations on one interface through a raw
// ICMPv6 socket bound to the interface (SO_BINDTODEVICE). It hears a service
// address's solicitations by joining its solicited-node multicast group;
// groups are reference counted since addresses can share one.
//
// Advertisements are sent from the service address itself, as the Linux
// kernel does for its own addresses, which needs IPV6_FREEBIND since the
// address is on no interface. A link-local source (what ndp.Listen gives)
// is valid too, but some solicitors, ndisc6 among them, drop an answer for a
// global target that comes from a link-local address. mdlayher/ndp builds
// and parses the messages; its Conn cannot set socket options.
type ndpWire struct {
	mac    net.HardwareAddr
	index  int
	pc     *ipv6.PacketConn
	groups map[netip.Addr]int // only touched by the Announcer under its lock
}

func listenNDP(ifi *net.Interface) (*ndpWire, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name); serr != nil {
				serr = fmt.Errorf("bind to device: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1); serr != nil {
				serr = fmt.Errorf("set IPV6_FREEBIND: %w", serr)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("open ndp socket: %w", err)
	}
	pc := ipv6.NewPacketConn(c)
	fail := func(what string, err error) (*ndpWire, error) {
		pc.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := pc.SetICMPFilter(&f); err != nil {
		return fail("set icmp filter", err)
	}
	if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true); err != nil {
		return fail("request control messages", err)
	}
	if err := pc.SetHopLimit(ndp.HopLimit); err != nil {
		return fail("set hop limit", err)
	}
	if err := pc.SetMulticastHopLimit(ndp.HopLimit); err != nil {
		return fail("set multicast hop limit", err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return fail("set multicast interface", err)
	}
	return &ndpWire{mac: ifi.HardwareAddr, index: ifi.Index, pc: pc, groups: make(map[netip.Addr]int)}, nil
}

func (w *ndpWire) serve(h handler) error {
	buf := make([]byte, 1500)
	for {
		n, cm, from, err := w.pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		hop := -1
		if cm != nil {
			if cm.IfIndex != 0 && cm.IfIndex != w.index {
				continue
			}
			hop = cm.HopLimit
		}
		ia, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, ok := netip.AddrFromSlice(ia.IP)
		if !ok {
			continue
		}
		m, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		na, dst, ok := ndpAnswer(m, src, hop, w.mac, h.owns)
		if !ok {
			continue
		}
		if err := w.send(na, dst); err != nil {
			h.replyFailed(na.TargetAddress, err)
			continue
		}
		h.answered(na.TargetAddress)
	}
}

// send writes na to dst from na's target address out of this interface.
// The destination carries no zone: the interface index in the packet info
// picks the link, so no interface name is resolved per packet.
func (w *ndpWire) send(na *ndp.NeighborAdvertisement, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: na.TargetAddress.AsSlice(), IfIndex: w.index}
	_, err = w.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.WithZone("").AsSlice()})
	return err
}

func (w *ndpWire) announce(ip netip.Addr) error {
	if err := w.send(unsolicitedNA(w.mac, ip), allNodes); err != nil {
		return fmt.Errorf("send unsolicited neighbor advertisement: %w", err)
	}
	return nil
}

func (w *ndpWire) join(ip netip.Addr) error {
	g, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return err
	}
	if w.groups[g] == 0 {
		if err := w.pc.JoinGroup(w.ifi(), &net.IPAddr{IP: g.AsSlice()}); err != nil {
			return fmt.Errorf("join %s: %w", g, err)
		}
	}
	w.groups[g]++
	return nil
}

func (w *ndpWire) leave(ip netip.Addr) error {
	g, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return err
	}
	switch w.groups[g] {
	case 0:
		return nil
	case 1:
		delete(w.groups, g)
		if err := w.pc.LeaveGroup(w.ifi(), &net.IPAddr{IP: g.AsSlice()}); err != nil {
			return fmt.Errorf("leave %s: %w", g, err)
		}
		return nil
	default:
		w.groups[g]--
		return nil
	}
}

func (w *ndpWire) close() error { return w.pc.Close() }

// ifi names the interface by index only, so that multicast membership
// resolves no name.
func (w *ndpWire) ifi() *net.Interface { return &net.Interface{Index: w.index} }

// isClosed reports whether err is the error a read returns after close.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
