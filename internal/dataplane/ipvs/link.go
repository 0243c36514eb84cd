package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Interface is the dummy interface the VIPs are bound to, so that the
// kernel delivers their traffic locally, where IPVS takes it.
const Interface = "ironlb-ipvs0"

// ErrNoLink marks a missing VIP interface.
var ErrNoLink = errors.New("interface missing")

// Link holds the VIPs this node forwards as local addresses.
type Link interface {
	// Ensure creates the interface if it is missing and brings it up.
	Ensure() error
	// Addrs returns the VIPs on it (link-local addresses left out), or an
	// error wrapping ErrNoLink if it is gone.
	Addrs() ([]netip.Addr, error)
	// Add binds a VIP (/32 or /128); Del unbinds one.
	Add(netip.Addr) error
	Del(netip.Addr) error
}

// dummyLink is the Link of a real dummy interface, through rtnetlink.
type dummyLink struct{ name string }

// NewDummyLink returns the Link of the dummy interface name in this
// network namespace.
func NewDummyLink(name string) Link { return dummyLink{name: name} }

func (d dummyLink) Ensure() error {
	var l netlink.Link
	err := retryInterrupted(func() (err error) {
		l, err = netlink.LinkByName(d.name)
		return err
	})
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		dummy := &netlink.Dummy{LinkAttrs: netlink.NewLinkAttrs()}
		dummy.Name = d.name
		if err := netlink.LinkAdd(dummy); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("creating dummy interface %s: the kernel has no dummy interfaces (module dummy): %w", d.name, err)
			}
			return fmt.Errorf("creating dummy interface %s: %w", d.name, err)
		}
		l, err = netlink.LinkByName(d.name)
	}
	if err != nil {
		return fmt.Errorf("interface %s: %w", d.name, err)
	}
	if l.Type() != "dummy" {
		return fmt.Errorf("interface %s is a %s, not a dummy interface: remove it or rename it", d.name, l.Type())
	}
	// Up, so that IPv6 addresses are usable; IPv4 ones would do without.
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bringing up interface %s: %w", d.name, err)
		}
	}
	return nil
}

// retryInterrupted calls fn again, a few times, while it fails with
// EINTR: what the netlink library returns when the kernel flags a dump as
// interrupted by a concurrent change (NLM_F_DUMP_INTR), on any interface.
func retryInterrupted(fn func() error) error {
	var err error
	for range 5 {
		if err = fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
	return err
}

func (d dummyLink) link() (netlink.Link, error) {
	var l netlink.Link
	err := retryInterrupted(func() (err error) {
		l, err = netlink.LinkByName(d.name)
		return err
	})
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, fmt.Errorf("interface %s: %w", d.name, ErrNoLink)
	}
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", d.name, err)
	}
	return l, nil
}

func (d dummyLink) Addrs() ([]netip.Addr, error) {
	l, err := d.link()
	if err != nil {
		return nil, err
	}
	var as []netlink.Addr
	err = retryInterrupted(func() (err error) {
		as, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("addresses of interface %s: %w", d.name, err)
	}
	var out []netip.Addr
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

func (d dummyLink) addr(ip netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if ip.Is6() {
		// No duplicate address detection: the address is ours and must
		// work at once. No prefix route: it is local, nothing else.
		a.Flags = unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE
	}
	return a
}

func (d dummyLink) Add(ip netip.Addr) error {
	l, err := d.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, d.addr(ip)); err != nil {
		return fmt.Errorf("binding %s to interface %s: %w", ip, d.name, err)
	}
	return nil
}

func (d dummyLink) Del(ip netip.Addr) error {
	l, err := d.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, d.addr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("unbinding %s from interface %s: %w", ip, d.name, err)
	}
	return nil
}

// Sysctls are the settings New writes under /proc/sys, as kube-proxy's
// IPVS mode does:
//   - arp_ignore=1: answer ARP only for addresses on the interface the
//     request came in on, so no node answers for the VIPs bound to its
//     dummy interface (the speaker answers for the node that won);
//   - arp_announce=2: never use a VIP as the source of an ARP request;
//   - vs/conntrack=1: keep conntrack entries for IPVS connections, so the
//     pod's replies are not "invalid" to a firewall on the node;
//   - vs/expire_nodest_conn=1: drop the connections of a removed endpoint
//     at once instead of letting them time out in a black hole.
var Sysctls = []Sysctl{
	{"net/ipv4/conf/all/arp_ignore", "1"},
	{"net/ipv4/conf/all/arp_announce", "2"},
	{"net/ipv4/vs/conntrack", "1"},
	{"net/ipv4/vs/expire_nodest_conn", "1"},
}

// Sysctl is one setting: a path under /proc/sys and its value.
type Sysctl struct{ Path, Value string }

// writeSysctls writes each setting under root (/proc/sys), skipping those
// already set, and returns every failure.
func writeSysctls(root string, ss []Sysctl) error {
	var errs []error
	for _, s := range ss {
		p := filepath.Join(root, s.Path)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == s.Value {
			continue
		}
		if err := os.WriteFile(p, []byte(s.Value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(s.Path, "/", "."), s.Value, err))
		}
	}
	return errors.Join(errs...)
}
