// Package nft programs node-local service forwarding into one nftables
// table, inet ironlb, that IronLB owns and nobody else should touch.
//
// The ruleset (see testdata/*.golden for real dumps):
//
//	table inet ironlb {
//	  map service-ips  { type ipv4_addr . inet_proto . inet_service : verdict }
//	  map service-ips6 { type ipv6_addr . inet_proto . inet_service : verdict }
//	  map backends4-tcp { typeof ip daddr . tcp dport . numgen random mod 2 : ip daddr . tcp dport }
//	  (and backends4-udp, backends4-sctp, backends6-tcp, ...)
//	  chain prerouting { type nat hook prerouting priority -110; jump services }
//	  chain output     { type nat hook output priority -110; jump services }
//	  chain services {
//	    ip daddr . meta l4proto . th dport vmap @service-ips
//	    ip6 daddr . meta l4proto . th dport vmap @service-ips6
//	  }
//	  chain eps4-tcp-2 {
//	    meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 2 map @backends4-tcp
//	  }
//	}
//
// with elements such as service-ips { 192.0.2.1 . tcp . 80 : goto eps4-tcp-2 }
// and backends4-tcp { 192.0.2.1 . 80 . 0 : 10.244.1.2 . 8080,
// 192.0.2.1 . 80 . 1 : 10.244.1.3 . 8080 }.
//
// There is one chain per family, protocol and endpoint count, shared by
// every service with that many endpoints and made on demand, and one
// backends map per family and protocol; no anonymous sets. The kernel's
// cost of a transaction grows with the number of sets in the table, so
// a per-service anonymous numgen map made large syncs quadratic. The
// protocol is in the map's name, not its key, and the port is "tcp dport"
// rather than "th dport": nft 1.0.6 cannot read back a rule whose typeof
// map key mixes meta l4proto or th with the protocol's own header.
//
// A packet costs one hash lookup in a verdict map, whatever the number of
// services, then one rule and one hash lookup in the backends map. DNAT only, never SNAT,
// so the pod sees the client's address; replies are un-NATed by conntrack
// because the pod's route back goes through this node.
package nft

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// Table is the nftables table (family inet) IronLB owns.
const Table = "ironlb"

const (
	mapV4         = "service-ips"
	mapV6         = "service-ips6"
	chainServices = "services"
	// priority runs our NAT just before dstnat (-100), where kube-proxy's
	// nftables and iptables NAT sit, so a packet for an address we forward
	// is ours even where kube-proxy also knows the Service. A number, not
	// "dstnat - 10": nft only accepts the dstnat keyword on prerouting.
	priority = knftables.BaseChainPriority("-110")
)

// hooks are the base chains that send packets to the services chain:
// prerouting for traffic arriving at the node, output for connections the
// node itself opens to a service IP (cheap: the same lookup).
var hooks = []knftables.BaseChainHook{knftables.PreroutingHook, knftables.OutputHook}

// Kind says how much a sync rewrote.
type Kind string

const (
	// Full replaced the whole table in one transaction.
	Full Kind = "full"
	// Partial rewrote only what changed since the last sync.
	Partial Kind = "partial"
)

// Result says what a sync did.
type Result struct {
	Kind Kind
	// Reason is why a sync was full: "first", "requested", "table
	// missing", "table changed", "partial failed".
	Reason string
	// Operations is the number of operations in the transaction; 0 means
	// nothing changed and nothing ran.
	Operations int
}

// Syncer keeps table inet ironlb equal to a list of forwarding rules. It is
// not safe for concurrent use: one sync loop owns it.
type Syncer struct {
	nft knftables.Interface
	// rules counts the rules of each chain of the table that has any
	// (nil: the table is gone); the integrity check's only read.
	rules func(ctx context.Context) (map[string]int, error)
	// applied is each key's endpoints as last committed; nil until the
	// first successful sync, which is therefore full.
	applied map[forwarding.Key][]netip.AddrPort
}

// New returns a Syncer driving the nft binary on this host (in this
// network namespace).
func New() (*Syncer, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, fmt.Errorf("nftables for table inet %s: %w", Table, err)
	}
	s := NewWith(nft)
	s.rules = netlinkRuleCounts
	return s, nil
}

// NewWith returns a Syncer over any knftables.Interface bound to family
// inet and table ironlb, such as knftables.NewFake.
func NewWith(nft knftables.Interface) *Syncer {
	s := &Syncer{nft: nft}
	s.rules = s.listedRuleCounts
	return s
}

// listedRuleCounts counts rules with one `nft --json --terse list table`
// through knftables. nft 1.0.6 fetches every map element for it even
// when it prints none (about 1 s at 10,000 services of 10 endpoints), so
// New uses netlinkRuleCounts instead; this is for knftables.Fake.
func (s *Syncer) listedRuleCounts(ctx context.Context) (map[string]int, error) {
	rules, err := s.nft.ListRules(ctx, "")
	if err != nil {
		if knftables.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	n := map[string]int{}
	for _, r := range rules {
		n[r.Chain]++
	}
	return n, nil
}

// netlinkRuleCounts asks the kernel directly: one dump of the inet
// family's chains, then one dump of each of our chains' rules (the fixed
// ones and one per endpoint count in use). No set element is read, so it
// costs milliseconds whatever the number of services, where any `nft
// list` of the table reads them all.
func netlinkRuleCounts(context.Context) (map[string]int, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	var n map[string]int
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != Table {
			continue
		}
		if n == nil {
			n = map[string]int{}
		}
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("rules of chain %s: %w", c.Name, err)
		}
		if len(rules) > 0 {
			n[c.Name] = len(rules)
		}
	}
	return n, nil
}

// Sync makes the table forward exactly rules. With full, or when the table
// is missing or its fixed rules were flushed (checked on every call), it
// replaces the whole table atomically; otherwise it commits one
// transaction with the changed chains and map elements only. A failed
// partial sync falls back to a full one.
func (s *Syncer) Sync(ctx context.Context, rules []forwarding.Rule, full bool) (Result, error) {
	want := make(map[forwarding.Key][]netip.AddrPort, len(rules))
	for _, r := range rules {
		if len(r.Endpoints) == 0 {
			continue
		}
		want[r.Key] = r.Endpoints
	}
	reason := "requested"
	switch {
	case s.applied == nil:
		full, reason = true, "first"
	case !full:
		if why := s.intact(ctx); why != "" {
			full, reason = true, why
		}
	}
	if !full {
		tx := s.nft.NewTransaction()
		s.partial(tx, want)
		res := Result{Kind: Partial, Operations: tx.NumOperations()}
		if res.Operations == 0 {
			return res, nil
		}
		err := s.nft.Run(ctx, tx)
		if err == nil {
			s.applied = want
			return res, nil
		}
		// Someone changed the table between the check and the commit, or
		// our idea of it is wrong: start again from nothing.
		full, reason = true, "partial failed"
		s.applied = nil
	}
	tx := s.nft.NewTransaction()
	s.full(tx, want)
	res := Result{Kind: Full, Reason: reason, Operations: tx.NumOperations()}
	if err := s.nft.Run(ctx, tx); err != nil {
		s.applied = nil
		return res, fmt.Errorf("replacing table inet %s (%d rules): %w", Table, len(want), err)
	}
	s.applied = want
	return res, nil
}

// Remove deletes the table, if it exists.
func (s *Syncer) Remove(ctx context.Context) error {
	tx := s.nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	s.applied = nil
	if err := s.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", Table, err)
	}
	return nil
}

// intact says why the table cannot be trusted ("" when it can): it is
// gone, or a rule of its fixed chains or of its endpoint chains is
// missing, which is what `nft flush table` or `nft flush ruleset` leave.
// It reads rule counts only, a few dozen chains whatever the number of
// services; a changed map element is repaired by the periodic full sync.
func (s *Syncer) intact(ctx context.Context) string {
	have, err := s.rules(ctx)
	switch {
	case err != nil:
		return "table unreadable"
	case have == nil:
		return "table missing"
	}
	want := map[string]int{string(knftables.PreroutingHook): 1, string(knftables.OutputHook): 1, chainServices: 2}
	for c := range epsChains(s.applied) {
		want[c] = 1
	}
	if !maps.Equal(have, want) {
		return "table changed"
	}
	return ""
}

// full queues the replacement of the whole table: add it (so the delete
// cannot fail), delete it, and build it again, in one transaction, so the
// kernel never forwards with half a table.
func (s *Syncer) full(tx *knftables.Transaction, want map[forwarding.Key][]netip.AddrPort) {
	table := &knftables.Table{Comment: knftables.PtrTo("IronLB speaker: node-local service forwarding; rewritten on every full sync")}
	tx.Add(table)
	tx.Delete(&knftables.Table{})
	tx.Add(table)
	tx.Add(&knftables.Map{Name: mapV4, Type: "ipv4_addr . inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Map{Name: mapV6, Type: "ipv6_addr . inet_proto . inet_service : verdict"})
	for _, v6 := range []bool{false, true} {
		for _, p := range protocols {
			ip := "ip"
			if v6 {
				ip = "ip6"
			}
			tx.Add(&knftables.Map{Name: backends(v6, p),
				TypeOf: fmt.Sprintf("%s daddr . %s dport . numgen random mod 2 : %s daddr . %s dport", ip, p, ip, p)})
		}
	}
	tx.Add(&knftables.Chain{Name: chainServices})
	tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip daddr . meta l4proto . th dport vmap @" + mapV4})
	tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip6 daddr . meta l4proto . th dport vmap @" + mapV6})
	for _, h := range hooks {
		tx.Add(&knftables.Chain{Name: string(h), Type: knftables.PtrTo(knftables.NATType), Hook: knftables.PtrTo(h),
			Priority: knftables.PtrTo(priority), Policy: knftables.PtrTo(knftables.AcceptPolicy)})
		tx.Add(&knftables.Rule{Chain: string(h), Rule: "jump " + chainServices})
	}
	chains := epsChains(want)
	for _, c := range slices.Sorted(maps.Keys(chains)) {
		addChain(tx, chains[c])
	}
	for _, k := range sortedKeys(want) {
		addService(tx, k, want[k])
	}
}

// partial queues what turns s.applied into want: stale elements out,
// changed ones replaced, new ones in, endpoint chains made before their
// first use and deleted after their last.
func (s *Syncer) partial(tx *knftables.Transaction, want map[forwarding.Key][]netip.AddrPort) {
	had, need := epsChains(s.applied), epsChains(want)
	for _, c := range slices.Sorted(maps.Keys(need)) {
		if _, ok := had[c]; !ok {
			addChain(tx, need[c])
		}
	}
	for _, k := range sortedKeys(s.applied) {
		if _, ok := want[k]; !ok {
			deleteService(tx, k, s.applied[k])
		}
	}
	for _, k := range sortedKeys(want) {
		old, ok := s.applied[k]
		eps := want[k]
		switch {
		case !ok:
			addService(tx, k, eps)
		case len(old) != len(eps):
			deleteService(tx, k, old)
			addService(tx, k, eps)
		default:
			for i := range eps {
				if eps[i] != old[i] {
					tx.Delete(backend(k, i, old[i]))
					tx.Add(backend(k, i, eps[i]))
				}
			}
		}
	}
	// A chain a map still jumps to cannot be deleted: chains go last.
	for _, c := range slices.Sorted(maps.Keys(had)) {
		if _, ok := need[c]; !ok {
			tx.Delete(&knftables.Chain{Name: c})
		}
	}
}

var protocols = []forwarding.Protocol{forwarding.TCP, forwarding.UDP, forwarding.SCTP}

// backends is the name of the map of one family's and protocol's
// endpoints.
func backends(v6 bool, p forwarding.Protocol) string {
	if v6 {
		return "backends6-" + string(p)
	}
	return "backends4-" + string(p)
}

// eps is an endpoint chain: the family, protocol and endpoint count it
// serves.
type eps struct {
	v6    bool
	proto forwarding.Protocol
	n     int
}

func (e eps) name() string {
	fam := "eps4-"
	if e.v6 {
		fam = "eps6-"
	}
	return fam + string(e.proto) + "-" + strconv.Itoa(e.n)
}

func epsOf(k forwarding.Key, n int) eps { return eps{v6: k.VIP.Is6(), proto: k.Protocol, n: n} }

// epsChains is the endpoint chains a set of services needs, by name.
func epsChains(m map[forwarding.Key][]netip.AddrPort) map[string]eps {
	out := map[string]eps{}
	for k, v := range m {
		e := epsOf(k, len(v))
		out[e.name()] = e
	}
	return out
}

func addChain(tx *knftables.Transaction, e eps) {
	tx.Add(&knftables.Chain{Name: e.name()})
	tx.Add(&knftables.Rule{Chain: e.name(), Rule: dnatRule(e)})
}

func addService(tx *knftables.Transaction, k forwarding.Key, eps []netip.AddrPort) {
	for i, ep := range eps {
		tx.Add(backend(k, i, ep))
	}
	tx.Add(element(k, len(eps)))
}

func deleteService(tx *knftables.Transaction, k forwarding.Key, eps []netip.AddrPort) {
	tx.Delete(element(k, len(eps)))
	for i, ep := range eps {
		tx.Delete(backend(k, i, ep))
	}
}

func element(k forwarding.Key, n int) *knftables.Element {
	m := mapV4
	if k.VIP.Is6() {
		m = mapV6
	}
	return &knftables.Element{Map: m, Key: []string{k.VIP.String(), string(k.Protocol), strconv.Itoa(int(k.Port))},
		Value: []string{"goto " + epsOf(k, n).name()}}
}

// backend is the element of a backends map that sends the i-th pick of
// numgen for service k to ep.
func backend(k forwarding.Key, i int, ep netip.AddrPort) *knftables.Element {
	return &knftables.Element{Map: backends(k.VIP.Is6(), k.Protocol),
		Key:   []string{k.VIP.String(), strconv.Itoa(int(k.Port)), strconv.Itoa(i)},
		Value: []string{ep.Addr().String(), strconv.Itoa(int(ep.Port()))}}
}

// dnatRule is an endpoint chain's one rule: DNAT to the endpoint that the
// backends map holds for the packet's address, port and a number picked at
// random per new connection (conntrack keeps the choice for the rest of the
// flow). The protocol match is implied by "tcp dport" but spelled out, as
// nft wants one before it rewrites a port.
func dnatRule(e eps) string {
	ip := "ip"
	if e.v6 {
		ip = "ip6"
	}
	p := string(e.proto)
	return fmt.Sprintf("meta l4proto %s dnat %s to %s daddr . %s dport . numgen random mod %d map @%s",
		p, ip, ip, p, e.n, backends(e.v6, e.proto))
}

func sortedKeys[V any](m map[forwarding.Key]V) []forwarding.Key {
	return slices.SortedFunc(maps.Keys(m), func(a, b forwarding.Key) int { return a.Compare(b) })
}
