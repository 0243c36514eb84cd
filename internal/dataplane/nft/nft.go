// Package nft programs node-local service forwarding into one nftables
// table, inet ironlb, that IronLB owns and nobody else should touch.
//
// The ruleset (see testdata/*.golden for real dumps):
//
//	table inet ironlb {
//	  map service-ips  { type ipv4_addr . inet_proto . inet_service : verdict }
//	  map service-ips6 { type ipv6_addr . inet_proto . inet_service : verdict }
//	  chain prerouting { type nat hook prerouting priority -110; jump services }
//	  chain output     { type nat hook output priority -110; jump services }
//	  chain services {
//	    ip daddr . meta l4proto . th dport vmap @service-ips
//	    ip6 daddr . meta l4proto . th dport vmap @service-ips6
//	  }
//	  chain svc4-192.0.2.1-tcp-80 {
//	    meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.1.3 . 8080 }
//	  }
//	}
//
// A packet costs one hash lookup in a verdict map, whatever the number of
// services, then one rule in its service's chain. DNAT only, never SNAT,
// so the pod sees the client's address; replies are un-NATed by conntrack
// because the pod's route back goes through this node.
package nft

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

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
	// applied is each key's DNAT rule as last committed; nil until the
	// first successful sync, which is therefore full.
	applied map[forwarding.Key]string
}

// New returns a Syncer driving the nft binary on this host (in this
// network namespace).
func New() (*Syncer, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, fmt.Errorf("nftables for table inet %s: %w", Table, err)
	}
	return NewWith(nft), nil
}

// NewWith returns a Syncer over any knftables.Interface bound to family
// inet and table ironlb, such as knftables.NewFake.
func NewWith(nft knftables.Interface) *Syncer { return &Syncer{nft: nft} }

// Sync makes the table forward exactly rules. With full, or when the table
// is missing or its fixed rules were flushed (checked on every call), it
// replaces the whole table atomically; otherwise it commits one
// transaction with the changed chains and map elements only. A failed
// partial sync falls back to a full one.
func (s *Syncer) Sync(ctx context.Context, rules []forwarding.Rule, full bool) (Result, error) {
	want := make(map[forwarding.Key]string, len(rules))
	for _, r := range rules {
		if len(r.Endpoints) == 0 {
			continue
		}
		want[r.Key] = dnatRule(r)
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
// gone, or its fixed rules are not all there, which is what `nft flush
// table` or `nft flush ruleset` leave. Two small listings, whatever the
// number of services; a change inside one service's chain is repaired by
// the periodic full sync instead.
func (s *Syncer) intact(ctx context.Context) string {
	for chain, n := range map[string]int{string(knftables.PreroutingHook): 1, chainServices: 2} {
		rules, err := s.nft.ListRules(ctx, chain)
		if err != nil {
			if knftables.IsNotFound(err) {
				return "table missing"
			}
			return "table unreadable"
		}
		if len(rules) != n {
			return "table changed"
		}
	}
	return ""
}

// full queues the replacement of the whole table: add it (so the delete
// cannot fail), delete it, and build it again, in one transaction, so the
// kernel never forwards with half a table.
func (s *Syncer) full(tx *knftables.Transaction, want map[forwarding.Key]string) {
	table := &knftables.Table{Comment: knftables.PtrTo("IronLB speaker: node-local service forwarding; rewritten on every full sync")}
	tx.Add(table)
	tx.Delete(&knftables.Table{})
	tx.Add(table)
	tx.Add(&knftables.Map{Name: mapV4, Type: "ipv4_addr . inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Map{Name: mapV6, Type: "ipv6_addr . inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Chain{Name: chainServices})
	tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip daddr . meta l4proto . th dport vmap @" + mapV4})
	tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip6 daddr . meta l4proto . th dport vmap @" + mapV6})
	for _, h := range hooks {
		tx.Add(&knftables.Chain{Name: string(h), Type: knftables.PtrTo(knftables.NATType), Hook: knftables.PtrTo(h),
			Priority: knftables.PtrTo(priority), Policy: knftables.PtrTo(knftables.AcceptPolicy)})
		tx.Add(&knftables.Rule{Chain: string(h), Rule: "jump " + chainServices})
	}
	for _, k := range sortedKeys(want) {
		addService(tx, k, want[k])
	}
}

// partial queues what turns s.applied into want: stale elements and their
// chains out, changed chains flushed and refilled, new ones in.
func (s *Syncer) partial(tx *knftables.Transaction, want map[forwarding.Key]string) {
	for _, k := range sortedKeys(s.applied) {
		if _, ok := want[k]; !ok {
			// The element goes first: a chain a map still jumps to
			// cannot be deleted.
			tx.Delete(element(k))
			tx.Delete(&knftables.Chain{Name: chainName(k)})
		}
	}
	for _, k := range sortedKeys(want) {
		old, had := s.applied[k]
		switch {
		case !had:
			addService(tx, k, want[k])
		case old != want[k]:
			tx.Flush(&knftables.Chain{Name: chainName(k)})
			tx.Add(&knftables.Rule{Chain: chainName(k), Rule: want[k]})
		}
	}
}

func addService(tx *knftables.Transaction, k forwarding.Key, rule string) {
	tx.Add(&knftables.Chain{Name: chainName(k)})
	tx.Add(&knftables.Rule{Chain: chainName(k), Rule: rule})
	tx.Add(element(k))
}

func element(k forwarding.Key) *knftables.Element {
	m := mapV4
	if k.VIP.Is6() {
		m = mapV6
	}
	return &knftables.Element{Map: m, Key: []string{k.VIP.String(), string(k.Protocol), strconv.Itoa(int(k.Port))},
		Value: []string{"goto " + chainName(k)}}
}

// chainName is readable in `nft list` and distinct per key: colons are
// not allowed in chain names, so an IPv6 address's become dots (no IPv4
// address has that shape, and the 4/6 prefix tells them apart anyway).
func chainName(k forwarding.Key) string {
	fam := "svc4-"
	if k.VIP.Is6() {
		fam = "svc6-"
	}
	return fam + strings.ReplaceAll(k.VIP.String(), ":", ".") + "-" + string(k.Protocol) + "-" + strconv.Itoa(int(k.Port))
}

// dnatRule is a service chain's one rule: DNAT to the endpoint, or to one
// picked at random per new connection (conntrack keeps the choice for the
// rest of the flow). The protocol match is redundant after the map lookup
// but nft wants one before it rewrites a port.
func dnatRule(r forwarding.Rule) string {
	fam := "ip"
	if r.VIP.Is6() {
		fam = "ip6"
	}
	head := "meta l4proto " + string(r.Protocol) + " dnat " + fam + " to "
	if len(r.Endpoints) == 1 {
		return head + r.Endpoints[0].String()
	}
	var b strings.Builder
	b.WriteString(head)
	fmt.Fprintf(&b, "numgen random mod %d map { ", len(r.Endpoints))
	for i, ep := range r.Endpoints {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d : %s . %d", i, ep.Addr(), ep.Port())
	}
	b.WriteString(" }")
	return b.String()
}

func sortedKeys(m map[forwarding.Key]string) []forwarding.Key {
	return slices.SortedFunc(maps.Keys(m), func(a, b forwarding.Key) int { return a.Compare(b) })
}
