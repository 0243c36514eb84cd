package bgp

import (
	"net/netip"
	"time"
)

// PeerConfig is one BGPPeer as this node's session sees it.
type PeerConfig struct {
	// Name is the BGPPeer's name, the session's key.
	Name string
	// MyASN is the local AS; PeerASN the router's, 0 to accept the ASN the
	// router sends (dynamicASN).
	MyASN, PeerASN uint32
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
