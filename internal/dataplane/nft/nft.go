// Package nft programs node-local service forwarding into one nftables
// table, inet ironlb, that IronLB owns and nobody else should touch.
//
// The ruleset, as `nft list table inet ironlb` prints it (testdata/*.golden
// are knftables.Fake's dumps of it):
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
// Every sync is one transaction, which the kernel applies atomically. New
// sends it over netlink as one nfnetlink batch that this package encodes
// (netlink.go, udata.go): no nft process, no text to parse, about 0.25 s
// for a full sync at 10,000 services of 10 endpoints where nft took 2 s.
// NewWith writes the same table in nft syntax through knftables, so that
// knftables.Fake can stand in for the kernel in unit tests; TestKernelLikeNft
// checks in a network namespace that both paths build the same table,
// and that nft reads its listing of it back.
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

	"golang.org/x/sys/unix"
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
	priority = -110
)

// hook is a base chain that sends packets to the services chain.
type hook struct {
	name string
	num  uint32
}

// hooks: prerouting for traffic arriving at the node, output for
// connections the node itself opens to a service IP (cheap: the same
// lookup).
var hooks = []hook{{"prerouting", unix.NF_INET_PRE_ROUTING}, {"output", unix.NF_INET_LOCAL_OUT}}

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
	// newTx starts a transaction: over netlink (New) or through
	// knftables (NewWith).
	newTx func() tx
	// rules counts the rules of each chain of the table that has any
	// (nil: the table is gone); the integrity check's only read.
	rules func(ctx context.Context) (map[string]int, error)
	// applied is each key's endpoints as last committed; nil until the
	// first successful sync, which is therefore full.
	applied map[forwarding.Key][]netip.AddrPort
	// close releases what New opened.
	close func() error
}

// tx is one transaction being queued, committed atomically by run. The
// Syncer decides what goes in; a tx only knows how to say it: nlTx in
// nfnetlink messages (New), knftTx in nft syntax through knftables
// (NewWith). Both build the same table and count the same operations.
type tx interface {
	// replaceTable adds the table (so the delete cannot fail), deletes
	// it, and adds it again with its maps and fixed chains and rules.
	replaceTable()
	// deleteTable adds the table and deletes it (Remove).
	deleteTable()
	// addChain adds an endpoint chain with its DNAT rule.
	addChain(e eps)
	deleteChain(e eps)
	// addVerdict adds service k's element of the verdict map, a goto to
	// the endpoint chain for n endpoints.
	addVerdict(k forwarding.Key, n int)
	deleteVerdict(k forwarding.Key, n int)
	// addBackend adds the element of the backends map that sends the i-th
	// pick of numgen for service k to ep.
	addBackend(k forwarding.Key, i int, ep netip.AddrPort)
	deleteBackend(k forwarding.Key, i int, ep netip.AddrPort)
	operations() int
	run(ctx context.Context) error
}

// New returns a Syncer that programs this host's kernel (in this network
// namespace, its sockets opened there) over netlink, with no nft process: at 10,000 services of
// 10 endpoints nft's parser alone took about 1 s of CPU and 375 MB, where
// encoding the same transaction in Go takes tens of milliseconds (see
// netlink.go).
func New() (*Syncer, error) {
	k := &kernel{}
	// Fail early, as knftables.New did, where netlink or nf_tables is
	// unavailable.
	if _, err := k.ruleCounts(context.Background()); err != nil {
		return nil, fmt.Errorf("nftables for table inet %s: %w", Table, err)
	}
	return &Syncer{newTx: func() tx { return newNlTx(k) }, rules: k.ruleCounts, close: k.close}, nil
}

// Close releases the netlink sockets a Syncer from New keeps between
// syncs (a Syncer from NewWith has none). The table stays; a Syncer used
// after Close opens them again.
func (s *Syncer) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// NewWith returns a Syncer over any knftables.Interface bound to family
// inet and table ironlb, such as knftables.NewFake: the same table, written
// in nft syntax.
func NewWith(nft knftables.Interface) *Syncer {
	return &Syncer{newTx: func() tx { return newKnftTx(nft) }, rules: listedRuleCounts(nft)}
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
		tx := s.newTx()
		s.partial(tx, want)
		res := Result{Kind: Partial, Operations: tx.operations()}
		if res.Operations == 0 {
			return res, nil
		}
		err := tx.run(ctx)
		if err == nil {
			s.applied = want
			return res, nil
		}
		// Someone changed the table between the check and the commit, or
		// our idea of it is wrong: start again from nothing.
		full, reason = true, "partial failed"
		s.applied = nil
	}
	tx := s.newTx()
	s.full(tx, want)
	res := Result{Kind: Full, Reason: reason, Operations: tx.operations()}
	if err := tx.run(ctx); err != nil {
		s.applied = nil
		return res, fmt.Errorf("replacing table inet %s (%d rules): %w", Table, len(want), err)
	}
	s.applied = want
	return res, nil
}

// Remove deletes the table, if it exists.
func (s *Syncer) Remove(ctx context.Context) error {
	tx := s.newTx()
	tx.deleteTable()
	s.applied = nil
	if err := tx.run(ctx); err != nil {
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
	want := map[string]int{chainServices: 2}
	for _, h := range hooks {
		want[h.name] = 1
	}
	for c := range epsChains(s.applied) {
		want[c] = 1
	}
	if !maps.Equal(have, want) {
		return "table changed"
	}
	return ""
}

// full queues the replacement of the whole table in one transaction, so
// the kernel never forwards with half a table: the table and its fixed
// parts, the endpoint chains, then every backends element and every
// verdict element (grouped by map, which the netlink path sends as few
// large messages).
func (s *Syncer) full(tx tx, want map[forwarding.Key][]netip.AddrPort) {
	tx.replaceTable()
	chains := epsChains(want)
	for _, c := range slices.Sorted(maps.Keys(chains)) {
		tx.addChain(chains[c])
	}
	keys := sortedKeys(want)
	for _, k := range keys {
		for i, ep := range want[k] {
			tx.addBackend(k, i, ep)
		}
	}
	for _, k := range keys {
		tx.addVerdict(k, len(want[k]))
	}
}

// partial queues what turns s.applied into want, in phases: endpoint
// chains made before their first use; verdict elements of services gone
// or resized out; their backends and changed ones out; new backends in;
// verdict elements of new or resized services in; endpoint chains deleted
// after their last use (a chain a map still jumps to cannot be deleted).
// Only the services that differ are sorted (for a stable order), so one
// changed endpoint costs two passes over the maps, not two sorts.
func (s *Syncer) partial(tx tx, want map[forwarding.Key][]netip.AddrPort) {
	var stale, fresh []forwarding.Key // gone or changed; new or changed
	for k, old := range s.applied {
		if eps, ok := want[k]; !ok || !sameEndpoints(old, eps) {
			stale = append(stale, k)
		}
	}
	for k, eps := range want {
		if old, ok := s.applied[k]; !ok || !sameEndpoints(old, eps) {
			fresh = append(fresh, k)
		}
	}
	byKey := func(a, b forwarding.Key) int { return a.Compare(b) }
	slices.SortFunc(stale, byKey)
	slices.SortFunc(fresh, byKey)
	// same: k is on both sides with as many endpoints, so only the
	// endpoints that differ change, and its verdict element stays.
	same := func(k forwarding.Key) bool {
		old, ok := s.applied[k]
		eps, ok2 := want[k]
		return ok && ok2 && len(old) == len(eps)
	}

	had, need := epsChains(s.applied), epsChains(want)
	for _, c := range slices.Sorted(maps.Keys(need)) {
		if _, ok := had[c]; !ok {
			tx.addChain(need[c])
		}
	}
	for _, k := range stale {
		if !same(k) {
			tx.deleteVerdict(k, len(s.applied[k]))
		}
	}
	for _, k := range stale {
		old, eps := s.applied[k], want[k]
		for i := range old {
			if !same(k) || old[i] != eps[i] {
				tx.deleteBackend(k, i, old[i])
			}
		}
	}
	for _, k := range fresh {
		old, eps := s.applied[k], want[k]
		for i := range eps {
			if !same(k) || old[i] != eps[i] {
				tx.addBackend(k, i, eps[i])
			}
		}
	}
	for _, k := range fresh {
		if !same(k) {
			tx.addVerdict(k, len(want[k]))
		}
	}
	for _, c := range slices.Sorted(maps.Keys(had)) {
		if _, ok := need[c]; !ok {
			tx.deleteChain(had[c])
		}
	}
}

// sameEndpoints compares two endpoint lists, at once when they are the
// same list: the speaker passes an unchanged Service's rules as they were,
// so at 10,000 Services nearly all are.
func sameEndpoints(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b)
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
	seen := map[eps]bool{}
	for k, v := range m {
		seen[epsOf(k, len(v))] = true
	}
	out := make(map[string]eps, len(seen))
	for e := range seen {
		out[e.name()] = e
	}
	return out
}

func sortedKeys[V any](m map[forwarding.Key]V) []forwarding.Key {
	return slices.SortedFunc(maps.Keys(m), func(a, b forwarding.Key) int { return a.Compare(b) })
}
