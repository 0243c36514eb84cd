package election

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// node is one distinct node name. The Input should name each node once;
// when it does not, the entries are merged conservatively (alive only if
// all say so, excluded or unavailable if any says so, selected only if all
// match) so that duplicates can never make the result depend on order.
type node struct {
	name       string
	seed       uint64
	labels     []labels.Set
	alive      bool
	excluded   bool
	netUnavail bool
}

type advert struct {
	a        *Advertisement
	selected []bool // by node index
}

// poolInfo is what every Service of one pool shares: the advertisements
// that select the pool and the nodes left after the node-level filters.
type poolInfo struct {
	found  bool
	ads    []int
	base   []int // node indexes, ascending (so by name)
	reason Reason
	msg    string
}

// svcElig is one Service's eligible nodes, or the problem that left none.
type svcElig struct {
	nodes   []int
	problem *Problem // IP is filled in per address
}

type election struct {
	in      *Input
	nodes   []node
	byName  map[string]int
	pools   map[string][]labels.Set
	ads     []advert
	poolMem map[string]*poolInfo
	scratch []bool
	// strs backs the Services and Interfaces lists of all announcements, one allocation
	// instead of one per address; each list is capped so appending to it
	// cannot overwrite its neighbour.
	strs []string
}

// Elect computes, for every service address, the one node that announces
// it. Eligible nodes are alive, not excluded by ExcludeLabel, not
// NetworkUnavailable, and selected by an Advertisement that selects the
// Service's pool; Local Services also need a ready endpoint on the node,
// Cluster Services a ready endpoint anywhere. Services sharing an address
// need a node eligible for all of them. Among the eligible nodes the
// highest rendezvous score of (node, IP) wins, so every speaker agrees,
// addresses spread evenly, and a node joining or leaving moves only the
// addresses it wins or held. Without quorum nothing is announced.
func Elect(in Input) Result {
	e := &election{in: &in}
	e.indexNodes()
	alive := 0
	for i := range e.nodes {
		if e.nodes[i].alive {
			alive++
		}
	}
	if !HasQuorum(alive, in.ExpectedSpeakers) {
		return Result{Problems: []Problem{{
			Kind: NoQuorum,
			Message: fmt.Sprintf("%d of %d expected speakers alive, more than half needed: announcing nothing "+
				"so that two nodes never answer for one IP during a network partition", alive, in.ExpectedSpeakers),
		}}}
	}
	e.indexPools()
	e.indexAds()
	e.poolMem = make(map[string]*poolInfo)
	e.scratch = make([]bool, len(e.nodes))

	elig := make([]svcElig, len(in.Services))
	// (address, service) pairs sorted by address group the Services that
	// share an address without a map of slices, which cost a third of the
	// time at 10,000 Services.
	type use struct {
		ip netip.Addr
		si int
	}
	var uses []use
	for si := range in.Services {
		s := &in.Services[si]
		elig[si] = e.service(s)
		for _, ip := range s.IPs {
			if ip.IsValid() {
				uses = append(uses, use{ip, si})
			}
		}
	}
	slices.SortFunc(uses, func(a, b use) int { return cmp.Or(a.ip.Compare(b.ip), cmp.Compare(a.si, b.si)) })
	groups := make([]int, len(uses))
	distinct := 0
	for i, u := range uses {
		groups[i] = u.si
		if i == 0 || uses[i-1].ip != u.ip {
			distinct++
		}
	}

	var res Result
	if distinct > 0 {
		res.Announcements = make([]Announcement, 0, distinct)
	}
	e.strs = make([]string, 0, 2*len(uses)) // keys, plus room for interfaces
	for i := 0; i < len(uses); {
		ip := uses[i].ip
		j := i + 1
		for j < len(uses) && uses[j].ip == ip {
			j++
		}
		group := groups[i:j:j]
		i = j
		cand, failed := e.intersect(group, elig)
		if failed || len(cand) == 0 {
			res.Problems = e.groupProblems(res.Problems, ip, group, elig, failed)
			continue
		}
		k := makeIPKey(ip)
		win, best := cand[0], score(e.nodes[cand[0]].seed, &k)
		for _, ni := range cand[1:] {
			// Ascending index is ascending name, so a tie keeps the
			// smaller name.
			if s := score(e.nodes[ni].seed, &k); s > best {
				win, best = ni, s
			}
		}
		res.Announcements = append(res.Announcements, Announcement{
			IP:         ip,
			Node:       e.nodes[win].name,
			Interfaces: e.interfaces(group, win),
			Services:   e.keys(group),
		})
	}
	if len(res.Announcements) == 0 {
		res.Announcements = nil // one spelling of "nothing", for callers comparing results
	}
	slices.SortFunc(res.Problems, compareProblems)
	res.Problems = slices.Compact(res.Problems)
	return res
}

func compareProblems(a, b Problem) int {
	return cmp.Or(
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Service, b.Service),
		a.IP.Compare(b.IP),
		cmp.Compare(a.Reason, b.Reason),
		cmp.Compare(a.Pool, b.Pool),
		cmp.Compare(a.Message, b.Message),
	)
}

func (e *election) indexNodes() {
	e.byName = make(map[string]int, len(e.in.Nodes))
	for _, n := range e.in.Nodes {
		i, ok := e.byName[n.Name]
		if !ok {
			i = len(e.nodes)
			e.byName[n.Name] = i
			e.nodes = append(e.nodes, node{name: n.Name, seed: nodeSeed(n.Name), alive: true})
		}
		d := &e.nodes[i]
		_, excl := n.Labels[ExcludeLabel]
		d.labels = append(d.labels, labels.Set(n.Labels))
		d.alive = d.alive && n.Alive
		d.excluded = d.excluded || excl
		d.netUnavail = d.netUnavail || n.NetworkUnavailable
	}
	// Sorting by name makes node indexes, and everything built on them,
	// independent of input order.
	slices.SortFunc(e.nodes, func(a, b node) int { return strings.Compare(a.name, b.name) })
	for i := range e.nodes {
		e.byName[e.nodes[i].name] = i
	}
}

func (e *election) indexPools() {
	e.pools = make(map[string][]labels.Set, len(e.in.Pools))
	for _, p := range e.in.Pools {
		e.pools[p.Name] = append(e.pools[p.Name], labels.Set(p.Labels))
	}
}

func (e *election) indexAds() {
	e.ads = make([]advert, len(e.in.Advertisements))
	for ai := range e.in.Advertisements {
		a := &e.in.Advertisements[ai]
		sel := make([]bool, len(e.nodes))
		for ni := range e.nodes {
			sel[ni] = allMatch(a.NodeSelectors, e.nodes[ni].labels)
		}
		e.ads[ai] = advert{a: a, selected: sel}
	}
}

// allMatch reports whether some selector matches every label set (empty
// selectors match all).
func allMatch(sels []labels.Selector, sets []labels.Set) bool {
	if len(sels) == 0 {
		return true
	}
	for _, s := range sels {
		if s == nil {
			continue
		}
		ok := true
		for _, l := range sets {
			if !s.Matches(l) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (e *election) selectsPool(a *Advertisement, name string, sets []labels.Set) bool {
	if len(a.Pools) == 0 && len(a.PoolSelectors) == 0 {
		return true
	}
	if slices.Contains(a.Pools, name) {
		return true
	}
	return len(a.PoolSelectors) > 0 && allMatch(a.PoolSelectors, sets)
}

func (e *election) pool(name string) *poolInfo {
	if p, ok := e.poolMem[name]; ok {
		return p
	}
	p := &poolInfo{}
	e.poolMem[name] = p
	sets, found := e.pools[name]
	if !found {
		return p
	}
	p.found = true
	var adNames []string
	for ai := range e.ads {
		if e.selectsPool(e.ads[ai].a, name, sets) {
			p.ads = append(p.ads, ai)
			adNames = append(adNames, e.ads[ai].a.Name)
		}
	}
	if len(p.ads) == 0 {
		return p
	}
	slices.Sort(adNames)
	adNames = slices.Compact(adNames)
	// The filters run in this order, and the first that empties the set
	// names the problem, so the message points at the first thing to fix.
	var selected, notExcl, netOK int
	for ni := range e.nodes {
		n := &e.nodes[ni]
		if !slices.ContainsFunc(p.ads, func(ai int) bool { return e.ads[ai].selected[ni] }) {
			continue
		}
		selected++
		if n.excluded {
			continue
		}
		notExcl++
		if n.netUnavail {
			continue
		}
		netOK++
		if n.alive {
			p.base = append(p.base, ni)
		}
	}
	ads := strings.Join(adNames, ", ")
	switch {
	case selected == 0:
		p.reason, p.msg = ReasonNotSelected, fmt.Sprintf("no node matches the node selectors of L2Advertisements %s", ads)
	case notExcl == 0:
		p.reason, p.msg = ReasonExcluded, fmt.Sprintf("all %d nodes selected by L2Advertisements %s carry the label %s", selected, ads, ExcludeLabel)
	case netOK == 0:
		p.reason, p.msg = ReasonNetworkUnavailable, fmt.Sprintf("all %d selected nodes that are not excluded have NetworkUnavailable", notExcl)
	case len(p.base) == 0:
		p.reason, p.msg = ReasonNotAlive, fmt.Sprintf("none of the %d selected nodes with a usable network is alive in the speaker memberlist", netOK)
	}
	return p
}

func (e *election) service(s *Service) svcElig {
	if s.Pool == "" {
		return svcElig{problem: &Problem{Kind: PoolNotAdvertised, Service: s.Key,
			Message: "service has no pool annotation, so no L2Advertisement can select it"}}
	}
	p := e.pool(s.Pool)
	if !p.found {
		return svcElig{problem: &Problem{Kind: PoolNotAdvertised, Service: s.Key, Pool: s.Pool,
			Message: fmt.Sprintf("pool %q does not exist", s.Pool)}}
	}
	if len(p.ads) == 0 {
		return svcElig{problem: &Problem{Kind: PoolNotAdvertised, Service: s.Key, Pool: s.Pool,
			Message: fmt.Sprintf("no L2Advertisement selects pool %q", s.Pool)}}
	}
	if len(p.base) == 0 {
		return svcElig{problem: &Problem{Kind: NoEligibleNode, Reason: p.reason, Service: s.Key, Pool: s.Pool, Message: p.msg}}
	}
	if !s.Local {
		if len(s.ReadyNodes) == 0 {
			return svcElig{problem: &Problem{Kind: NoEligibleNode, Reason: ReasonNoEndpoint, Service: s.Key, Pool: s.Pool,
				Message: "service has no ready endpoint"}}
		}
		return svcElig{nodes: p.base}
	}
	for _, r := range s.ReadyNodes {
		if ni, ok := e.byName[r]; ok {
			e.scratch[ni] = true
		}
	}
	var nodes []int
	for _, ni := range p.base {
		if e.scratch[ni] {
			nodes = append(nodes, ni)
		}
	}
	for _, r := range s.ReadyNodes {
		if ni, ok := e.byName[r]; ok {
			e.scratch[ni] = false
		}
	}
	if len(nodes) == 0 {
		return svcElig{problem: &Problem{Kind: NoEligibleNode, Reason: ReasonNoLocalEndpoint, Service: s.Key, Pool: s.Pool,
			Message: fmt.Sprintf("externalTrafficPolicy is Local and none of the %d eligible nodes has a ready endpoint", len(p.base))}}
	}
	return svcElig{nodes: nodes}
}

// intersect returns the nodes eligible for every Service in group; failed
// is true when one of them has a problem of its own.
func (e *election) intersect(group []int, elig []svcElig) (nodes []int, failed bool) {
	for i, si := range group {
		el := elig[si]
		if el.problem != nil {
			return nil, true
		}
		if i == 0 {
			nodes = el.nodes
			continue
		}
		var out []int
		a, b := nodes, el.nodes
		for len(a) > 0 && len(b) > 0 {
			switch {
			case a[0] < b[0]:
				a = a[1:]
			case a[0] > b[0]:
				b = b[1:]
			default:
				out = append(out, a[0])
				a, b = a[1:], b[1:]
			}
		}
		nodes = out
	}
	return nodes, false
}

func (e *election) groupProblems(ps []Problem, ip netip.Addr, group []int, elig []svcElig, failed bool) []Problem {
	var others []string
	if failed {
		for _, si := range group {
			if p := elig[si].problem; p != nil {
				others = append(others, p.Service)
			}
		}
		slices.Sort(others)
		others = slices.Compact(others)
	}
	all := e.keys(group)
	for _, si := range group {
		s := &e.in.Services[si]
		if p := elig[si].problem; p != nil {
			q := *p
			if q.Kind == NoEligibleNode {
				q.IP = ip
			}
			ps = append(ps, q)
			continue
		}
		q := Problem{Kind: NoEligibleNode, Reason: ReasonSharedIP, Service: s.Key, Pool: s.Pool, IP: ip}
		if failed {
			q.Message = fmt.Sprintf("shares %s with %s, which cannot be announced", ip, strings.Join(others, ", "))
		} else {
			q.Message = fmt.Sprintf("no node is eligible for every service sharing %s (%s)", ip, strings.Join(all, ", "))
		}
		ps = append(ps, q)
	}
	return ps
}

// interfaces is the union of the Interfaces of the advertisements that
// select both a pool of the group and the winner; one with none means all.
func (e *election) interfaces(group []int, win int) []string {
	start := len(e.strs)
	for _, si := range group {
		for _, ai := range e.pool(e.in.Services[si].Pool).ads {
			ad := &e.ads[ai]
			if !ad.selected[win] {
				continue
			}
			if len(ad.a.Interfaces) == 0 {
				e.strs = e.strs[:start]
				return nil
			}
			e.strs = append(e.strs, ad.a.Interfaces...)
		}
	}
	out := e.strs[start:len(e.strs):len(e.strs)]
	slices.Sort(out)
	out = slices.Compact(out)
	return out[:len(out):len(out)]
}

func (e *election) keys(group []int) []string {
	start := len(e.strs)
	for _, si := range group {
		e.strs = append(e.strs, e.in.Services[si].Key)
	}
	out := e.strs[start:len(e.strs):len(e.strs)]
	slices.Sort(out)
	out = slices.Compact(out)
	return out[:len(out):len(out)]
}
