package routes

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Compute returns the paths Input.Node advertises to each of its peers.
//
// A node missing from Input.Nodes opens no session. A node that carries
// ExcludeLabel or has NetworkUnavailable advertises nothing but keeps its
// sessions, so that paths follow as soon as it recovers. A Service's addresses are advertised when an
// Advertisement selects its pool and the node, to the Advertisement's
// peers that select the node: for externalTrafficPolicy Local only from a
// node with a ready endpoint, for Cluster while any endpoint is ready.
// Addresses are aggregated to the Advertisement's lengths; paths for one
// prefix to one peer merge (communities are united, the highest LOCAL_PREF
// wins), so a peer never gets two paths for one prefix from one node.
// An Advertisement with a community that cannot be resolved advertises
// nothing (a missing no-export community must not leak routes) and is
// reported as a Problem.
func Compute(in Input) Result {
	res := Result{Paths: map[string][]Path{}}
	self, known := mergeNode(in.Nodes, in.Node)

	// Sessions: peers selecting this node, each name once. A duplicate name
	// keeps the most restrictive answer so the result never depends on order.
	sessions := map[string]Peer{}
	excludedPeer := map[string]bool{}
	for _, p := range in.Peers {
		if !known || !matchesAny(p.NodeSelectors, self) {
			excludedPeer[p.Name] = true
			continue
		}
		if old, dup := sessions[p.Name]; dup {
			p.IBGP = p.IBGP && old.IBGP
		}
		sessions[p.Name] = p
	}
	for name := range excludedPeer {
		delete(sessions, name)
	}
	for name := range sessions {
		res.Peers = append(res.Peers, name)
		res.Paths[name] = nil
	}
	slices.Sort(res.Peers)

	pools := poolLabels(in.Pools)

	type key struct {
		peer   string
		prefix netip.Prefix
	}
	acc := map[key]*Path{}
	eligible := known && self.eligible()
	for _, ad := range in.Advertisements {
		comms, large, err := parseCommunities(ad.Communities, in.Aliases)
		if err != nil {
			res.Problems = append(res.Problems, Problem{Advertisement: ad.Name, Message: err.Error()})
			continue
		}
		if !eligible || !matchesAny(ad.NodeSelectors, self) {
			continue
		}
		var peers []Peer
		for _, name := range res.Peers {
			if len(ad.Peers) == 0 || slices.Contains(ad.Peers, name) {
				peers = append(peers, sessions[name])
			}
		}
		if len(peers) == 0 {
			continue
		}
		for _, svc := range in.Services {
			if !selectsPool(ad, svc.Pool, pools) || !svc.readyFor(in.Node) {
				continue
			}
			for _, ip := range svc.IPs {
				if !ip.IsValid() {
					continue
				}
				ip = ip.Unmap()
				prefix := aggregate(ip, ad.Length4, ad.Length6)
				for _, p := range peers {
					k := key{p.Name, prefix}
					path := acc[k]
					if path == nil {
						path = &Path{Prefix: prefix}
						acc[k] = path
					}
					path.Communities = append(path.Communities, comms...)
					path.LargeCommunities = append(path.LargeCommunities, large...)
					if p.IBGP {
						path.LocalPref = max(path.LocalPref, ad.LocalPref)
					}
					path.Services = append(path.Services, svc.Key)
				}
			}
		}
	}
	for k, p := range acc {
		slices.Sort(p.Communities)
		p.Communities = slices.Clip(slices.Compact(p.Communities))
		slices.SortFunc(p.LargeCommunities, compareLarge)
		p.LargeCommunities = slices.Clip(slices.Compact(p.LargeCommunities))
		slices.Sort(p.Services)
		p.Services = slices.Clip(slices.Compact(p.Services))
		if len(p.Communities) == 0 {
			p.Communities = nil
		}
		if len(p.LargeCommunities) == 0 {
			p.LargeCommunities = nil
		}
		res.Paths[k.peer] = append(res.Paths[k.peer], *p)
	}
	for _, paths := range res.Paths {
		slices.SortFunc(paths, func(a, b Path) int { return ComparePrefix(a.Prefix, b.Prefix) })
	}
	slices.SortFunc(res.Problems, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.Advertisement, b.Advertisement), strings.Compare(a.Message, b.Message))
	})
	res.Problems = slices.Compact(res.Problems)
	return res
}

// ComparePrefix orders prefixes by address, then length.
func ComparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func compareLarge(a, b LargeCommunity) int {
	return cmp.Or(cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
}

// self is this node as merged from every Node entry with its name.
type self struct {
	labels     []labels.Set
	excluded   bool
	netUnavail bool
}

func (s self) eligible() bool { return !s.excluded && !s.netUnavail }

// mergeNode merges duplicates conservatively (excluded or unavailable if
// any entry says so; selected only if every entry matches), so that the
// order of Input.Nodes cannot matter.
func mergeNode(nodes []Node, name string) (self, bool) {
	var s self
	found := false
	for _, n := range nodes {
		if n.Name != name {
			continue
		}
		found = true
		_, ex := n.Labels[ExcludeLabel]
		s.excluded = s.excluded || ex
		s.netUnavail = s.netUnavail || n.NetworkUnavailable
		s.labels = append(s.labels, labels.Set(n.Labels))
	}
	return s, found
}

// matchesAny: no selectors match every node; otherwise one selector must
// match every entry of the node. A nil selector matches nothing.
func matchesAny(sels []labels.Selector, s self) bool {
	if len(sels) == 0 {
		return true
	}
	for _, sel := range sels {
		if sel == nil {
			continue
		}
		all := true
		for _, l := range s.labels {
			if !sel.Matches(l) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func poolLabels(in []Pool) map[string][]labels.Set {
	pools := map[string][]labels.Set{}
	for _, p := range in {
		pools[p.Name] = append(pools[p.Name], labels.Set(p.Labels))
	}
	return pools
}

// AdvertisedPools returns the names of the pools some advertisement
// selects, whatever the nodes and peers: the layer-2 speaker uses it not to
// call a pool unadvertised when BGP advertises it.
func AdvertisedPools(in Input) map[string]bool {
	pools := poolLabels(in.Pools)
	out := map[string]bool{}
	for name := range pools {
		for _, ad := range in.Advertisements {
			if selectsPool(ad, name, pools) {
				out[name] = true
				break
			}
		}
	}
	return out
}

// selectsPool: by name, by label, or every pool when neither is given. An
// unknown pool is never selected.
func selectsPool(ad Advertisement, pool string, pools map[string][]labels.Set) bool {
	sets, ok := pools[pool]
	if !ok {
		return false
	}
	if len(ad.Pools) == 0 && len(ad.PoolSelectors) == 0 {
		return true
	}
	if slices.Contains(ad.Pools, pool) {
		return true
	}
	for _, sel := range ad.PoolSelectors {
		if sel == nil {
			continue
		}
		all := true
		for _, l := range sets {
			if !sel.Matches(l) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (s Service) readyFor(node string) bool {
	if s.Local {
		return slices.Contains(s.ReadyNodes, node)
	}
	return len(s.ReadyNodes) > 0
}

// aggregate masks ip to the advertised length; a length out of range
// advertises the address alone.
func aggregate(ip netip.Addr, len4, len6 int) netip.Prefix {
	l := len6
	if ip.Is4() {
		l = len4
	}
	if l < 0 || l > ip.BitLen() {
		l = ip.BitLen()
	}
	p, _ := ip.Prefix(l)
	return p
}

// parseCommunities resolves names through aliases and parses every value.
func parseCommunities(in []string, aliases map[string]string) ([]uint32, []LargeCommunity, error) {
	var std []uint32
	var large []LargeCommunity
	for _, c := range in {
		v := c
		if a, ok := aliases[c]; ok {
			v = a
		}
		s, l, isLarge, err := ParseCommunity(v)
		if err != nil {
			if v == c && !strings.Contains(c, ":") {
				return nil, nil, fmt.Errorf("community %q: no Community object defines that name", c)
			}
			return nil, nil, fmt.Errorf("community %q: %w", c, err)
		}
		if isLarge {
			large = append(large, l)
		} else {
			std = append(std, s)
		}
	}
	return std, large, nil
}

// ParseCommunity parses a standard community "A:B" (each 0 to 65535) or a
// large one "large:A:B:C" (each 0 to 4294967295).
func ParseCommunity(v string) (std uint32, large LargeCommunity, isLarge bool, err error) {
	if rest, ok := strings.CutPrefix(v, "large:"); ok {
		f := strings.Split(rest, ":")
		if len(f) != 3 {
			return 0, LargeCommunity{}, false, fmt.Errorf("large community %q: want large:A:B:C", v)
		}
		var n [3]uint32
		for i, s := range f {
			x, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return 0, LargeCommunity{}, false, fmt.Errorf("large community %q: part %d: %w", v, i+1, err)
			}
			n[i] = uint32(x)
		}
		return 0, LargeCommunity{n[0], n[1], n[2]}, true, nil
	}
	a, b, ok := strings.Cut(v, ":")
	if !ok || strings.Contains(b, ":") {
		return 0, LargeCommunity{}, false, fmt.Errorf("community %q: want A:B or large:A:B:C", v)
	}
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, LargeCommunity{}, false, fmt.Errorf("community %q: each part must be 0 to 65535", v)
	}
	return uint32(x)<<16 | uint32(y), LargeCommunity{}, false, nil
}
