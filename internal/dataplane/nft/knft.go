package nft

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// comment is the table's comment, on both paths.
const comment = "IronLB speaker: node-local service forwarding; rewritten on every full sync"

// knftTx is a transaction in nft syntax through knftables: what NewWith
// drives, so knftables.Fake can stand in for the kernel in unit tests.
// Every Add and Delete is one operation, which is how Result counts them
// on the netlink path too.
type knftTx struct {
	nft knftables.Interface
	tx  *knftables.Transaction
}

func newKnftTx(nft knftables.Interface) *knftTx { return &knftTx{nft: nft, tx: nft.NewTransaction()} }

func (t *knftTx) operations() int { return t.tx.NumOperations() }

func (t *knftTx) run(ctx context.Context) error { return t.nft.Run(ctx, t.tx) }

func (t *knftTx) replaceTable() {
	table := &knftables.Table{Comment: knftables.PtrTo(comment)}
	t.tx.Add(table)
	t.tx.Delete(&knftables.Table{})
	t.tx.Add(table)
	t.tx.Add(&knftables.Map{Name: mapV4, Type: "ipv4_addr . inet_proto . inet_service : verdict"})
	t.tx.Add(&knftables.Map{Name: mapV6, Type: "ipv6_addr . inet_proto . inet_service : verdict"})
	for _, v6 := range []bool{false, true} {
		for _, p := range protocols {
			ip := "ip"
			if v6 {
				ip = "ip6"
			}
			t.tx.Add(&knftables.Map{Name: backends(v6, p),
				TypeOf: fmt.Sprintf("%s daddr . %s dport . numgen random mod 2 : %s daddr . %s dport", ip, p, ip, p)})
		}
	}
	t.tx.Add(&knftables.Chain{Name: chainServices})
	t.tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip daddr . meta l4proto . th dport vmap @" + mapV4})
	t.tx.Add(&knftables.Rule{Chain: chainServices, Rule: "ip6 daddr . meta l4proto . th dport vmap @" + mapV6})
	for _, h := range hooks {
		t.tx.Add(&knftables.Chain{Name: h.name, Type: knftables.PtrTo(knftables.NATType),
			Hook:     knftables.PtrTo(knftables.BaseChainHook(h.name)),
			Priority: knftables.PtrTo(knftables.BaseChainPriority(strconv.Itoa(priority))),
			Policy:   knftables.PtrTo(knftables.AcceptPolicy)})
		t.tx.Add(&knftables.Rule{Chain: h.name, Rule: "jump " + chainServices})
	}
}

func (t *knftTx) deleteTable() {
	t.tx.Add(&knftables.Table{})
	t.tx.Delete(&knftables.Table{})
}

func (t *knftTx) addChain(e eps) {
	t.tx.Add(&knftables.Chain{Name: e.name()})
	t.tx.Add(&knftables.Rule{Chain: e.name(), Rule: dnatRule(e)})
}

func (t *knftTx) addVerdict(k forwarding.Key, n int)    { t.tx.Add(element(k, n)) }
func (t *knftTx) deleteVerdict(k forwarding.Key, n int) { t.tx.Delete(element(k, n)) }

func (t *knftTx) addBackend(k forwarding.Key, i int, ep netip.AddrPort) {
	t.tx.Add(backend(k, i, ep))
}

func (t *knftTx) deleteBackend(k forwarding.Key, i int, ep netip.AddrPort) {
	t.tx.Delete(backend(k, i, ep))
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

// dnatRule is an endpoint chain's one rule in nft syntax: DNAT to the
// endpoint that the backends map holds for the packet's address, port and a
// number picked at random per new connection (conntrack keeps the choice
// for the rest of the flow). The protocol match is implied by "tcp dport"
// but spelled out, as nft wants one before it rewrites a port.
func dnatRule(e eps) string {
	ip := "ip"
	if e.v6 {
		ip = "ip6"
	}
	p := string(e.proto)
	return fmt.Sprintf("meta l4proto %s dnat %s to %s daddr . %s dport . numgen random mod %d map @%s",
		p, ip, ip, p, e.n, backends(e.v6, e.proto))
}

// listedRuleCounts counts rules with one `nft --json --terse list table`
// through knftables. nft 1.0.6 fetches every map element for it even
// when it prints none (about 1 s at 10,000 services of 10 endpoints), so
// New counts over netlink instead (kernel.ruleCounts); this is for
// knftables.Fake.
func listedRuleCounts(nft knftables.Interface) func(context.Context) (map[string]int, error) {
	return func(ctx context.Context) (map[string]int, error) {
		rules, err := nft.ListRules(ctx, "")
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
}
