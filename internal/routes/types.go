package routes

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/labels"
)

// ExcludeLabel on a Node keeps it from advertising, whatever its value, as
// for layer 2 (see the election package).
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Node is one cluster node.
type Node struct {
	Name   string
	Labels map[string]string
	// NetworkUnavailable mirrors the Node condition NetworkUnavailable=True.
	NetworkUnavailable bool
}

// Pool is an IPAddressPool; only its name and labels matter here.
type Pool struct {
	Name   string
	Labels map[string]string
}

// Service is one LoadBalancer Service that holds addresses.
type Service struct {
	Key string // namespace/name
	// IPs come from status.loadBalancer.ingress.
	IPs []netip.Addr
	// Pool is the annotation ironlb.io/ip-allocated-from-pool.
	Pool string
	// Local is externalTrafficPolicy: Local.
	Local bool
	// ReadyNodes are the nodes with at least one ready endpoint.
	ReadyNodes []string
}

// Peer is one BGPPeer with its node selectors parsed.
type Peer struct {
	Name string
	// IBGP is true when the peer is in the speakers' own AS: only then is
	// LOCAL_PREF sent.
	IBGP bool
	// NodeSelectors limit the nodes that open this session: empty means
	// all, otherwise a node must match at least one.
	NodeSelectors []labels.Selector
}

// Advertisement is one BGPAdvertisement with its selectors parsed and its
// lengths defaulted.
type Advertisement struct {
	Name string
	// Pools names the pools advertised. With PoolSelectors also empty,
	// every pool is advertised.
	Pools         []string
	PoolSelectors []labels.Selector
	// NodeSelectors limit the advertising nodes: empty means all.
	NodeSelectors []labels.Selector
	// Peers names the BGPPeers advertised to: empty means all.
	Peers []string
	// Length4 and Length6 are the advertised prefix lengths (32 and 128
	// for one path per address). Out of range means the host length.
	Length4, Length6 int
	// LocalPref is sent to iBGP peers when not 0.
	LocalPref uint32
	// Communities are "A:B", "large:A:B:C" or names looked up in
	// Input.Aliases.
	Communities []string
}

// Input is everything the computation reads. Order within slices never
// changes the Result.
type Input struct {
	// Node is the node the paths are computed for.
	Node           string
	Nodes          []Node
	Pools          []Pool
	Services       []Service
	Peers          []Peer
	Advertisements []Advertisement
	// Aliases map Community names to their values.
	Aliases map[string]string
}

// LargeCommunity is an RFC 8092 large community.
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// Path is one prefix advertised to one peer, with its attributes.
type Path struct {
	Prefix netip.Prefix
	// Communities are standard communities, sorted and distinct.
	Communities []uint32
	// LargeCommunities are sorted and distinct.
	LargeCommunities []LargeCommunity
	// LocalPref is 0 when not sent (always for eBGP peers).
	LocalPref uint32
	// Services are the keys of the Services behind the prefix, sorted.
	Services []string
}

// Problem is something that keeps an advertisement from working.
type Problem struct {
	Advertisement string
	Message       string
}

// Result is what the node advertises.
type Result struct {
	// Peers are the peers this node opens sessions with, sorted. Every one
	// has an entry in Paths, possibly empty.
	Peers []string
	// Paths are, per peer name, sorted by prefix, one per prefix.
	Paths map[string][]Path
	// Problems are sorted and distinct.
	Problems []Problem
}

// Services are the keys of the Services this node advertises to any peer:
// the traffic for them may arrive here.
func (r Result) Services() map[string]bool {
	out := map[string]bool{}
	for _, paths := range r.Paths {
		for _, p := range paths {
			for _, s := range p.Services {
				out[s] = true
			}
		}
	}
	return out
}
