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
// every service with that many endpoints (a full sync makes them for every
// count up to the largest in use, see endpointChains), and one backends
// map per family and protocol; no anonymous sets. The kernel's
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
	"strings"

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
	// first successful sync, which is therefore full, and after a failed
	// one.
	applied map[forwarding.Key][]netip.AddrPort
	// chains counts the keys of applied that jump to each endpoint chain
	// the table has, 0 for those no key uses (see endpointChains): a
	// partial sync tells from it which chains to make without a pass over
	// applied.
	chains map[eps]int
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

// Sync makes the table forward exactly rules, by key; a rule without
// endpoints forwards nothing. changed, when not nil, lists every key whose
// rule may differ from the previous call's (a key may repeat, or not have
// changed at all): a partial sync then looks at those keys alone, so that
// it costs what changed, not what the table holds. nil means unknown, and
// every key is compared. A caller that keeps rules in place and reports
// what it touched avoids both a copy and a pass over them per sync.
//
// With full, or when the table is missing or its fixed rules were flushed
// (checked on every call), Sync replaces the whole table atomically;
// otherwise it commits one transaction with the changed chains and map
// elements only. A failed partial sync falls back to a full one, and a
// failed sync makes the next one full, so changed never has to look
// further back than the previous call.
func (s *Syncer) Sync(ctx context.Context, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key, full bool) (Result, error) {
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
		if changed == nil {
			changed = s.differing(rules)
		}
		tx := s.newTx()
		diff := s.partial(tx, rules, changed)
		res := Result{Kind: Partial, Operations: tx.operations()}
		if res.Operations == 0 {
			return res, nil
		}
		err := tx.run(ctx)
		if err == nil {
			s.record(rules, diff)
			return res, nil
		}
		// Someone changed the table between the check and the commit, or
		// our idea of it is wrong: start again from nothing.
		full, reason = true, "partial failed"
		s.applied, s.chains = nil, nil
	}
	want := make(map[forwarding.Key][]netip.AddrPort, len(rules))
	for k, r := range rules {
		if len(r.Endpoints) > 0 {
			want[k] = r.Endpoints
		}
	}
	tx := s.newTx()
	s.full(tx, want)
	res := Result{Kind: Full, Reason: reason, Operations: tx.operations()}
	if err := tx.run(ctx); err != nil {
		s.applied, s.chains = nil, nil
		return res, fmt.Errorf("replacing table inet %s (%d rules): %w", Table, len(want), err)
	}
	s.applied, s.chains = want, endpointChains(want)
	return res, nil
}

// Remove deletes the table, if it exists.
func (s *Syncer) Remove(ctx context.Context) error {
	tx := s.newTx()
	tx.deleteTable()
	s.applied, s.chains = nil, nil
	if err := tx.run(ctx); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", Table, err)
	}
	return nil
}

// intact says why the table cannot be trusted ("" when it can): it is
// gone, or a rule of its fixed chains or of its endpoint chains is
// missing, which is what `nft flush table` or `nft flush ruleset` leave.
// It reads rule counts only, a few dozen chains whatever the number of
// services, and compares them with s.chains, kept up to date by every
// sync rather than counted again from s.applied; a changed map element
// is repaired by the periodic full sync.
func (s *Syncer) intact(ctx context.Context) string {
	have, err := s.rules(ctx)
	switch {
	case err != nil:
		return "table unreadable"
	case have == nil:
		return "table missing"
	}
	want := make(map[string]int, len(hooks)+1+len(s.chains))
	want[chainServices] = 2
	for _, h := range hooks {
		want[h.name] = 1
	}
	for e := range s.chains {
		want[e.name()] = 1
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
	chains := endpointChains(want)
	for _, e := range slices.SortedFunc(maps.Keys(chains), byName) {
		tx.addChain(e)
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

// differing is every key whose endpoints in rules are not those last
// committed: what a caller that does not know what changed leaves to
// this, at the cost of one pass over both.
func (s *Syncer) differing(rules map[forwarding.Key]forwarding.Rule) []forwarding.Key {
	var out []forwarding.Key
	for k, old := range s.applied {
		if !sameEndpoints(old, rules[k].Endpoints) {
			out = append(out, k)
		}
	}
	for k, r := range rules {
		if _, had := s.applied[k]; !had && len(r.Endpoints) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// partial queues what turns s.applied into rules, given that only the
// keys in changed may differ, and returns the keys that do, sorted and
// distinct (record's input once the transaction is committed). Phases:
// endpoint chains the table lacks made before their first use; verdict
// elements of services gone or resized out; their backends and changed
// ones out; new backends in; verdict elements of new or resized services
// in. Chains no service uses any more stay (see endpointChains). Whether a
// chain exists comes from s.chains, so nothing here looks at a key that
// is not in changed.
func (s *Syncer) partial(tx tx, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key) []forwarding.Key {
	var diff []forwarding.Key
	for _, k := range changed {
		if !sameEndpoints(s.applied[k], rules[k].Endpoints) {
			diff = append(diff, k)
		}
	}
	// Sorted for a stable order; only the keys that differ are.
	slices.SortFunc(diff, forwarding.Key.Compare)
	diff = slices.Compact(diff)

	var made []eps
	for _, k := range diff {
		if eps := rules[k].Endpoints; len(eps) > 0 {
			e := epsOf(k, len(eps))
			if _, ok := s.chains[e]; !ok && !slices.Contains(made, e) {
				made = append(made, e)
			}
		}
	}
	slices.SortFunc(made, byName)

	// resized: k's verdict element goes, or comes, or both: it is new,
	// gone or has another number of endpoints. Otherwise only the
	// endpoints that differ change.
	resized := func(old, eps []netip.AddrPort) bool { return len(old) != len(eps) }
	for _, e := range made {
		tx.addChain(e)
	}
	for _, k := range diff {
		if old := s.applied[k]; len(old) > 0 && resized(old, rules[k].Endpoints) {
			tx.deleteVerdict(k, len(old))
		}
	}
	for _, k := range diff {
		old, eps := s.applied[k], rules[k].Endpoints
		for i := range old {
			if resized(old, eps) || old[i] != eps[i] {
				tx.deleteBackend(k, i, old[i])
			}
		}
	}
	for _, k := range diff {
		old, eps := s.applied[k], rules[k].Endpoints
		for i := range eps {
			if resized(old, eps) || old[i] != eps[i] {
				tx.addBackend(k, i, eps[i])
			}
		}
	}
	for _, k := range diff {
		if eps := rules[k].Endpoints; len(eps) > 0 && resized(s.applied[k], eps) {
			tx.addVerdict(k, len(eps))
		}
	}
	return diff
}

// record makes s.applied and s.chains what a committed partial sync left
// for the keys in diff.
func (s *Syncer) record(rules map[forwarding.Key]forwarding.Rule, diff []forwarding.Key) {
	for _, k := range diff {
		if old := s.applied[k]; len(old) > 0 {
			s.chains[epsOf(k, len(old))]--
		}
		if eps := rules[k].Endpoints; len(eps) > 0 {
			s.applied[k] = eps
			s.chains[epsOf(k, len(eps))]++
		} else {
			delete(s.applied, k)
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

// endpointChains counts the services that jump to each endpoint chain a
// full sync makes: for each family and protocol in use, one chain for
// every endpoint count from 1 to the largest in use, most of them with no
// service yet. Partial syncs keep them, and make only a chain for a count
// above those, which then stays until the next full sync. Making a chain
// later is what costs: its rule binds the backends map, and the kernel
// checks every element of it then, about 7 ms for 100,000 elements on an
// idle machine (20-25 ms in the lab at 10,000 Services) where changing an
// element costs 0.4 ms. A Service's endpoint count going down and up
// again is common: an endpoint going unready and coming back.
func endpointChains(m map[forwarding.Key][]netip.AddrPort) map[eps]int {
	out := map[eps]int{}
	largest := map[eps]int{} // by family and protocol, n unused
	for k, v := range m {
		e := epsOf(k, len(v))
		out[e]++
		fp := eps{v6: e.v6, proto: e.proto}
		largest[fp] = max(largest[fp], e.n)
	}
	for fp, n := range largest {
		for i := 1; i <= n; i++ {
			fp.n = i
			out[fp] += 0
		}
	}
	return out
}

// byName orders endpoint chains as their names sort.
func byName(a, b eps) int { return strings.Compare(a.name(), b.name()) }

func sortedKeys[V any](m map[forwarding.Key]V) []forwarding.Key {
	return slices.SortedFunc(maps.Keys(m), func(a, b forwarding.Key) int { return a.Compare(b) })
}
