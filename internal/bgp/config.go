package bgp

import (
	"fmt"
	"net/netip"
	"time"
)

// PeerConfig is one BGPPeer as this node's session sees it.
type PeerConfig struct {
	// Name is the BGPPeer's name, the session's key.
	Name string
	// MyASN is the local AS; PeerASN the router's, 0 to take the ASN the
	// router sends in its OPEN (dynamicASN), checked against DynamicASN.
	MyASN, PeerASN uint32
	// DynamicASN is "internal" (the router's ASN must equal MyASN) or
	// "external" (it must differ); only read when PeerASN is 0. A session
	// of the wrong kind is refused: reset at once, no path ever sent on it.
	DynamicASN string
	// Address and Port reach the router; Port 0 is 179.
	Address netip.Addr
	Port    uint16
	// Source is the local address to connect from; zero lets the kernel
	// choose.
	Source netip.Addr
	// RouterID is the BGP identifier (an IPv4 address).
	RouterID netip.Addr
	// HoldTime, Keepalive and ConnectRetry are GoBGP's defaults when zero.
	HoldTime, Keepalive, ConnectRetry time.Duration
	EBGPMultiHop                      bool
	// Password is the TCP MD5 password, "" for none.
	Password        string
	GracefulRestart bool
	// DisableMP carries only the session's own address family.
	DisableMP bool
	// NextHop4 and NextHop6 are the node's addresses used as next hop for
	// the family the session is not in (IPv6 paths over an IPv4 session);
	// paths in the session's own family use the session's local address.
	NextHop4, NextHop6 netip.Addr
}

// Dynamic ASN modes, as BGPPeer.spec.dynamicASN spells them.
const (
	DynamicInternal = "internal"
	DynamicExternal = "external"
)

// dynamic: the router's ASN is learned from its OPEN and must be checked
// before any path is sent.
func (c PeerConfig) dynamic() bool { return c.PeerASN == 0 }

// checkPeerASN says why a session whose router sent asn is refused, ""
// when it is accepted.
func (c PeerConfig) checkPeerASN(asn uint32) string {
	switch {
	case !c.dynamic():
		return "" // GoBGP itself refuses an OPEN with another ASN
	case c.DynamicASN == DynamicInternal && asn != c.MyASN:
		return fmt.Sprintf("the router sent AS %d; dynamicASN internal needs AS %d (myASN)", asn, c.MyASN)
	case c.DynamicASN == DynamicExternal && asn == c.MyASN:
		return fmt.Sprintf("the router sent AS %d, which is myASN; dynamicASN external needs another AS", asn)
	case c.DynamicASN != DynamicInternal && c.DynamicASN != DynamicExternal:
		return fmt.Sprintf("neither peerASN nor a valid dynamicASN (%q) is set", c.DynamicASN)
	}
	return ""
}

// global says whether two configs can share one running server: the AS and
// router ID are the server's, not the peer's.
func (c PeerConfig) global() [2]any { return [2]any{c.MyASN, c.RouterID} }

// families are the address families the session carries.
func (c PeerConfig) families() (v4, v6 bool) {
	if c.DisableMP {
		return c.Address.Is4(), c.Address.Is6()
	}
	return true, true
}
