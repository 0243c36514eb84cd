package layer2

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
)

// pair is one (address, interface) announcement.
type pair struct {
	addr   netip.Addr
	ifname string
}

func comparePairs(a, b pair) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	return cmp.Compare(a.ifname, b.ifname)
}

// diffPairs returns the pairs of want that cur lacks (gained) and the pairs
// of cur that want lacks (lost), both sorted.
func diffPairs(cur, want map[pair]struct{}) (gained, lost []pair) {
	for p := range want {
		if _, ok := cur[p]; !ok {
			gained = append(gained, p)
		}
	}
	for p := range cur {
		if _, ok := want[p]; !ok {
			lost = append(lost, p)
		}
	}
	slices.SortFunc(gained, comparePairs)
	slices.SortFunc(lost, comparePairs)
	return gained, lost
}

// candidate is what autoInterfaces needs to know about one interface.
type candidate struct {
	ifi net.Interface
	// enslaved is true for a bridge port or a bond slave: the frames
	// belong to its master, which is announced on instead.
	enslaved bool
	// linkLocal is true when the interface has an IPv6 link-local
	// address, which the NDP responder sends from.
	linkLocal bool
}

// autoInterface reports whether an address of the given family is announced
// on c when its interface list is empty: the interface is up, not loopback,
// has an Ethernet (6-byte) MAC and is not a bridge port or bond slave. ARP
// also needs the broadcast flag; NDP needs the multicast flag and an IPv6
// link-local address.
func autoInterface(c candidate, ipv6 bool) bool {
	f := c.ifi.Flags
	if f&net.FlagUp == 0 || f&net.FlagLoopback != 0 || len(c.ifi.HardwareAddr) != 6 || c.enslaved {
		return false
	}
	if ipv6 {
		return f&net.FlagMulticast != 0 && c.linkLocal
	}
	return f&net.FlagBroadcast != 0
}

// desiredPairs expands want into pairs. Addresses are unmapped; an empty
// interface list becomes every interface auto accepts for that family.
// Invalid addresses are returned separately.
func desiredPairs(want map[netip.Addr][]string, auto func(ipv6 bool) []string) (map[pair]struct{}, []netip.Addr) {
	out := make(map[pair]struct{})
	var bad []netip.Addr
	var autoCache [2][]string
	var autoDone [2]bool
	for addr, ifnames := range want {
		a := addr.Unmap().WithZone("")
		if !usableAddr(a) {
			bad = append(bad, addr)
			continue
		}
		if len(ifnames) == 0 {
			i := 0
			if a.Is6() {
				i = 1
			}
			if !autoDone[i] {
				autoCache[i] = auto(a.Is6())
				autoDone[i] = true
			}
			ifnames = autoCache[i]
		}
		for _, n := range ifnames {
			out[pair{a, n}] = struct{}{}
		}
	}
	slices.SortFunc(bad, netip.Addr.Compare)
	return out, bad
}

// usableAddr reports whether a is a unicast address that may be answered for.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
