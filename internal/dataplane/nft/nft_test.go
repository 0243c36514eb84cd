package nft

import (
	"context"
	"flag"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/forwarding"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func rule(vip string, proto forwarding.Protocol, port uint16, eps ...string) forwarding.Rule {
	r := forwarding.Rule{Key: forwarding.Key{VIP: netip.MustParseAddr(vip), Protocol: proto, Port: port}}
	for _, e := range eps {
		r.Endpoints = append(r.Endpoints, netip.MustParseAddrPort(e))
	}
	return r
}

// golden compares the fake's dump with testdata/<test name>.golden.
func golden(t *testing.T, fake *knftables.Fake) {
	t.Helper()
	got := fake.Dump()
	path := filepath.Join("testdata", strings.ReplaceAll(t.Name(), "/", "_")+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run with -update to create it): %v", path, err)
	}
	if got != string(want) {
		t.Errorf("table differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func sync(t *testing.T, s *Syncer, rules []forwarding.Rule, full bool, want Kind) Result {
	t.Helper()
	res, err := s.Sync(context.Background(), forwarding.Merge(rules), nil, full)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Kind != want {
		t.Fatalf("Sync did a %s sync (%s), want %s", res.Kind, res.Reason, want)
	}
	return res
}

var story = []forwarding.Rule{
	rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080", "10.244.1.3:8080"),
	rule("192.0.2.1", forwarding.UDP, 53, "10.244.1.2:5353"),
	rule("192.0.2.2", forwarding.SCTP, 3868, "10.244.1.4:3869"),
	rule("2001:db8::1", forwarding.TCP, 443, "[fd00:244::2]:8443", "[fd00:244::3]:8443", "[fd00:244::4]:8443"),
}

func TestFullSync(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	s := NewWith(fake)
	res := sync(t, s, story, false, Full)
	if res.Reason != "first" {
		t.Errorf("first sync's reason %q, want first", res.Reason)
	}
	golden(t, fake)
	// Nothing changed: nothing runs.
	if res := sync(t, s, story, false, Partial); res.Operations != 0 {
		t.Errorf("unchanged rules cost %d operations:\n%s", res.Operations, fake.LastTransaction)
	}
	// A requested full sync gives the same table.
	sync(t, s, story, true, Full)
	golden(t, fake)
}

// TestPartialSync walks a story: each step rewrites only the chains and
// elements that changed, and ends in the table a full sync would build.
func TestPartialSync(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	s := NewWith(fake)
	sync(t, s, story, false, Full)
	for _, step := range []struct {
		name    string
		rules   []forwarding.Rule
		touched []string // chains the transaction may name
	}{
		{"an endpoint goes", []forwarding.Rule{
			rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080"), story[1], story[2], story[3],
		}, []string{"192.0.2.1 . tcp . 80", "192.0.2.1 . 80 .", "eps4-tcp-1", "eps4-tcp-2"}},
		{"a service goes", []forwarding.Rule{
			rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080"), story[1], story[3],
		}, []string{"192.0.2.2 . sctp . 3868", "192.0.2.2 . 3868 . 0", "eps4-sctp-1"}},
		{"a service comes", []forwarding.Rule{
			rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.2:8080"), story[1], story[3],
			rule("2001:db8::2", forwarding.UDP, 53, "[fd00:244::2]:53"),
		}, []string{"2001:db8::2 . udp . 53", "2001:db8::2 . 53 . 0", "eps6-udp-1"}},
		{"an endpoint comes back", []forwarding.Rule{
			story[0], story[1], story[3], rule("2001:db8::2", forwarding.UDP, 53, "[fd00:244::2]:53"),
		}, []string{"192.0.2.1 . tcp . 80", "192.0.2.1 . 80 .", "eps4-tcp-1", "eps4-tcp-2"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			sync(t, s, step.rules, false, Partial)
			tx := fake.LastTransaction.String()
			for _, line := range strings.Split(strings.TrimSpace(tx), "\n") {
				if !containsAny(line, step.touched) {
					t.Errorf("transaction touches more than %v: %q", step.touched, line)
				}
			}
			partial := fake.Dump()
			other := knftables.NewFake(knftables.InetFamily, Table)
			sync(t, NewWith(other), step.rules, true, Full)
			// Map elements are unordered; the fake keeps them in the
			// order they came.
			// Both may hold endpoint chains no service uses.
			if usedLines(partial, s.applied) != usedLines(other.Dump(), s.applied) {
				t.Errorf("partial sync left\n%s\nbut a full sync builds\n%s", partial, other.Dump())
			}
		})
	}
	sync(t, s, nil, false, Partial)
	golden(t, fake)
}

func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestRepair: a deleted table, or one whose rules someone flushed (what
// `nft flush table` does in the kernel), is rebuilt by the next sync.
func TestRepair(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*testing.T, *knftables.Fake)
		reason string
	}{
		{"deleted", func(t *testing.T, fake *knftables.Fake) {
			tx := fake.NewTransaction()
			tx.Delete(&knftables.Table{})
			if err := fake.Run(context.Background(), tx); err != nil {
				t.Fatal(err)
			}
		}, "table missing"},
		{"rules flushed", func(t *testing.T, fake *knftables.Fake) {
			fake.Lock()
			defer fake.Unlock()
			for _, c := range fake.Table.Chains {
				c.Rules = nil
			}
		}, "table changed"},
		{"dispatch rule deleted", func(t *testing.T, fake *knftables.Fake) {
			fake.Lock()
			defer fake.Unlock()
			fake.Table.Chains[chainServices].Rules = fake.Table.Chains[chainServices].Rules[:1]
		}, "table changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := knftables.NewFake(knftables.InetFamily, Table)
			s := NewWith(fake)
			sync(t, s, story, false, Full)
			want := fake.Dump()
			tc.break_(t, fake)
			if res := sync(t, s, story, false, Full); res.Reason != tc.reason {
				t.Errorf("reason %q, want %q", res.Reason, tc.reason)
			}
			if got := fake.Dump(); got != want {
				t.Errorf("after repair:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestPartialFailureFallsBack: when the partial transaction fails (a
// service's elements vanished behind our back), the sync rebuilds the table.
func TestPartialFailureFallsBack(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	s := NewWith(fake)
	sync(t, s, story, false, Full)
	tx := newKnftTx(fake)
	tx.deleteVerdict(story[2].Key, len(story[2].Endpoints))
	for i, ep := range story[2].Endpoints {
		tx.deleteBackend(story[2].Key, i, ep)
	}
	if err := tx.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Removing story[2] now deletes what is already gone.
	res := sync(t, s, story[:2], false, Full)
	if res.Reason != "partial failed" {
		t.Errorf("reason %q, want partial failed", res.Reason)
	}
	if _, ok := fake.Table.Chains["eps4-sctp-1"]; ok {
		t.Error("stale chain survived")
	}
	if n := len(fake.Table.Maps[backends(false, forwarding.SCTP)].Elements); n != 0 {
		t.Errorf("%d stale backends survived", n)
	}
}

func TestDNATRule(t *testing.T) {
	for _, tc := range []struct {
		eps  eps
		want string
	}{
		{eps{false, forwarding.TCP, 1}, "meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 1 map @backends4-tcp"},
		{eps{true, forwarding.UDP, 3}, "meta l4proto udp dnat ip6 to ip6 daddr . udp dport . numgen random mod 3 map @backends6-udp"},
		{eps{false, forwarding.SCTP, 2}, "meta l4proto sctp dnat ip to ip daddr . sctp dport . numgen random mod 2 map @backends4-sctp"},
	} {
		if got := dnatRule(tc.eps); got != tc.want {
			t.Errorf("dnatRule(%v) = %q, want %q", tc.eps, got, tc.want)
		}
	}
}

// churn changes rules a few keys at a time, at random, as the speaker's
// forwarder does in place: services come, go, gain, lose or swap
// endpoints (in new lists), and some keep a rule with none. Its keys are
// 5 addresses of both families, 3 protocols and 2 ports; endpoints come
// from 6 per family.
type churn struct {
	rng   *rand.Rand
	keys  []forwarding.Key
	rules map[forwarding.Key]forwarding.Rule
}

func newChurn(seed uint64) *churn {
	c := &churn{rng: rand.New(rand.NewPCG(seed, 11)), rules: map[forwarding.Key]forwarding.Rule{}}
	for _, vip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2"} {
		for _, p := range protocols {
			for _, port := range []uint16{80, 443} {
				c.keys = append(c.keys, forwarding.Key{VIP: netip.MustParseAddr(vip), Protocol: p, Port: port})
			}
		}
	}
	for _, k := range c.keys[:10] {
		c.rules[k] = forwarding.Rule{Key: k, Service: "ns/" + k.VIP.String(), Endpoints: c.endpoints(k)}
	}
	return c
}

// endpoints is a random sorted set of up to 4 endpoints of k's family:
// often as many as before, sometimes the same.
func (c *churn) endpoints(k forwarding.Key) []netip.AddrPort {
	var out []netip.AddrPort
	for i := range 6 {
		if c.rng.IntN(3) == 0 && len(out) < 4 {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
			if k.VIP.Is6() {
				a = netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(i + 1)})
			}
			out = append(out, netip.AddrPortFrom(a, 8080))
		}
	}
	return out
}

// step changes one to three keys and returns them as the forwarder
// would name them, sometimes twice and with a key that did not change.
func (c *churn) step() []forwarding.Key {
	var changed []forwarding.Key
	for range 1 + c.rng.IntN(3) {
		k := c.keys[c.rng.IntN(len(c.keys))]
		r := c.rules[k]
		switch c.rng.IntN(5) {
		case 0:
			delete(c.rules, k)
		case 1:
			// One endpoint replaced: the count stays.
			if len(r.Endpoints) > 0 {
				eps := slices.Clone(r.Endpoints)
				eps[c.rng.IntN(len(eps))] = netip.AddrPortFrom(eps[0].Addr(), uint16(9000+c.rng.IntN(4)))
				r.Endpoints = eps
				c.rules[k] = r
				break
			}
			fallthrough
		default:
			r.Key, r.Service, r.Endpoints = k, "ns/"+k.VIP.String(), c.endpoints(k)
			c.rules[k] = r
		}
		changed = append(changed, k)
		if c.rng.IntN(4) == 0 {
			changed = append(changed, k, c.keys[c.rng.IntN(len(c.keys))])
		}
	}
	return changed
}

// TestIncrementalLikeDiff: a Syncer told which keys changed does exactly
// what one that compares every key does: after each of many random steps
// (churn's; now and then a
// requested full sync, a deleted table or a verdict element gone behind its
// back) both ran the same transaction and hold the same table, which is
// the table a full sync builds, and the same idea of it.
func TestIncrementalLikeDiff(t *testing.T) {
	c := newChurn(7)
	rules, keys := c.rules, c.keys
	incFake := knftables.NewFake(knftables.InetFamily, Table)
	diffFake := knftables.NewFake(knftables.InetFamily, Table)
	inc, diff := NewWith(incFake), NewWith(diffFake)
	ctx := context.Background()
	partials, reasons := 0, map[string]int{}
	for step := range 3000 {
		changed := c.step()
		full := step%97 == 96
		switch step % 89 {
		case 40:
			for _, f := range []*knftables.Fake{incFake, diffFake} {
				tx := f.NewTransaction()
				tx.Delete(&knftables.Table{})
				if err := f.Run(ctx, tx); err != nil {
					t.Fatal(err)
				}
			}
		case 80:
			// A service's verdict element vanishes behind our back as
			// the service goes: the partial sync that deletes it fails,
			// and a full one starts again.
			for _, k := range keys {
				n := len(inc.applied[k])
				if n == 0 {
					continue
				}
				for _, f := range []*knftables.Fake{incFake, diffFake} {
					tx := newKnftTx(f)
					tx.deleteVerdict(k, n)
					if err := tx.run(ctx); err != nil {
						t.Fatal(err)
					}
				}
				delete(rules, k)
				changed = append(changed, k)
				break
			}
		}
		got, err := inc.Sync(ctx, rules, changed, full)
		if err != nil {
			t.Fatalf("step %d: incremental sync: %v", step, err)
		}
		want, err := diff.Sync(ctx, rules, nil, full)
		if err != nil {
			t.Fatalf("step %d: diffing sync: %v", step, err)
		}
		if got != want {
			t.Fatalf("step %d: incremental sync %+v, diffing sync %+v", step, got, want)
		}
		if got.Kind == Partial {
			partials++
		} else {
			reasons[got.Reason]++
		}
		if got.Operations > 0 {
			if g, w := incFake.LastTransaction.String(), diffFake.LastTransaction.String(); g != w {
				t.Fatalf("step %d: incremental transaction\n%s\ndiffing transaction\n%s", step, g, w)
			}
		}
		if g, w := incFake.Dump(), diffFake.Dump(); g != w {
			t.Fatalf("step %d: incremental sync left\n%s\ndiffing sync left\n%s", step, g, w)
		}
		scratch := knftables.NewFake(knftables.InetFamily, Table)
		if _, err := NewWith(scratch).Sync(ctx, rules, nil, true); err != nil {
			t.Fatal(err)
		}
		// Both hold every chain in use; each may hold chains no service
		// uses (endpointChains), which forward nothing.
		if g, w := usedLines(incFake.Dump(), inc.applied), usedLines(scratch.Dump(), inc.applied); g != w {
			t.Fatalf("step %d: incremental sync left\n%s\na full sync builds\n%s", step, g, w)
		}
		eq := func(a, b []netip.AddrPort) bool { return slices.Equal(a, b) }
		if !maps.EqualFunc(inc.applied, diff.applied, eq) || !maps.Equal(inc.chains, diff.chains) ||
			!countsUse(inc.chains, inc.applied) {
			t.Fatalf("step %d: incremental state %v %v, diffing state %v %v", step, inc.applied, inc.chains, diff.applied, diff.chains)
		}
	}
	t.Logf("%d of 3000 steps were partial syncs; full ones by reason: %v", partials, reasons)
	if partials < 2500 || reasons["partial failed"] == 0 || reasons["table missing"] == 0 {
		t.Errorf("%d of 3000 steps were partial syncs, want most; full ones by reason %v, want some after failures and repairs", partials, reasons)
	}
}

// chainUse counts the services that jump to each endpoint chain.
func chainUse(m map[forwarding.Key][]netip.AddrPort) map[eps]int {
	out := map[eps]int{}
	for k, v := range m {
		out[epsOf(k, len(v))]++
	}
	return out
}

// countsUse says whether chains counts exactly the services of applied
// that jump to each chain, and holds every chain one jumps to.
func countsUse(chains map[eps]int, applied map[forwarding.Key][]netip.AddrPort) bool {
	use := chainUse(applied)
	for e, n := range use {
		if have, ok := chains[e]; !ok || have != n {
			return false
		}
	}
	for e, n := range chains {
		if n != use[e] {
			return false
		}
	}
	return true
}

// usedLines is a table dump's lines, sorted, without those of endpoint
// chains no service of applied jumps to.
func usedLines(dump string, applied map[forwarding.Key][]netip.AddrPort) string {
	use := chainUse(applied)
	used := map[string]bool{}
	for e := range use {
		used[e.name()] = true
	}
	var out []string
next:
	for _, line := range strings.Split(dump, "\n") {
		for _, f := range strings.Fields(line) {
			if (strings.HasPrefix(f, "eps4-") || strings.HasPrefix(f, "eps6-")) && !used[f] {
				continue next
			}
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
