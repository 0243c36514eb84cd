package nft

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// inNetns is set in the copy of the test binary that runs in a fresh
// network namespace.
const inNetns = "IRONLB_NFT_TEST_NETNS"

// netns reports whether the test runs in a fresh network namespace, so
// the host's ruleset is never touched. Outside one, it runs the test again
// in a copy of the test binary inside one (and returns false); it skips
// without root, nft or unshare.
func netns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetns) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"nft", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNetns+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("test in a new network namespace: %v", err)
	}
	return false
}

// TestKernel applies rules over netlink (New) to the real kernel and reads
// them back with `nft -j list table inet ironlb`: a full sync, a partial
// one, repairs after the table is flushed, deleted or loses a rule, and
// Remove.
func TestKernel(t *testing.T) {
	if !netns(t) {
		return
	}
	ctx := context.Background()
	s := newSyncer(t)
	res, err := s.Sync(ctx, forwarding.Merge(story), nil, false)
	if err != nil || res.Kind != Full {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	check(t, story)

	changed := []forwarding.Rule{rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.3:8080"), story[1], story[3],
		rule("2001:db8::2", forwarding.UDP, 53, "[fd00:244::2]:53")}
	if res, err := s.Sync(ctx, forwarding.Merge(changed), nil, false); err != nil || res.Kind != Partial {
		t.Fatalf("partial sync: %+v, %v", res, err)
	}
	check(t, changed)

	for _, breakIt := range [][]string{
		{"nft", "flush", "table", "inet", Table},
		{"nft", "delete", "table", "inet", Table},
		{"nft", "flush", "ruleset"},
		{"nft", "delete", "rule", "inet", Table, "prerouting", "handle", handleOf(t, "prerouting")},
	} {
		if out, err := exec.Command(breakIt[0], breakIt[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", breakIt, err, out)
		}
		res, err := s.Sync(ctx, forwarding.Merge(changed), nil, false)
		if err != nil || res.Kind != Full {
			t.Fatalf("sync after %v: %+v, %v; want a full sync", breakIt, res, err)
		}
		t.Logf("after %q: %s sync (%s)", strings.Join(breakIt, " "), res.Kind, res.Reason)
		check(t, changed)
	}
	// An element gone behind our back: the partial sync that deletes it
	// fails in the kernel as a whole, and a full one replaces the table.
	if out, err := exec.Command("nft", "delete", "element", "inet", Table, mapV6,
		"{ 2001:db8::2 . udp . 53 }").CombinedOutput(); err != nil {
		t.Fatalf("deleting an element: %v: %s", err, out)
	}
	fewer := changed[:2]
	if res, err := s.Sync(ctx, forwarding.Merge(fewer), nil, false); err != nil || res.Kind != Full || res.Reason != "partial failed" {
		t.Fatalf("sync after an element vanished: %+v, %v; want a full sync (partial failed)", res, err)
	}
	check(t, fewer)
	if err := s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", Table).CombinedOutput(); err == nil {
		t.Errorf("table still there after Remove:\n%s", out)
	}
}

// TestKernelIncremental: over netlink, partial syncs told which keys
// changed (churn's random steps) leave, step after step, the table check
// expects of all the rules.
func TestKernelIncremental(t *testing.T) {
	if !netns(t) {
		return
	}
	ctx := context.Background()
	s := newSyncer(t)
	c := newChurn(13)
	for step := range 150 {
		changed := c.step()
		want := Partial
		if step == 0 {
			changed, want = nil, Full
		}
		res, err := s.Sync(ctx, c.rules, changed, false)
		if err != nil || res.Kind != want {
			t.Fatalf("step %d: %+v, %v; want a %s sync", step, res, err, want)
		}
		var rules []forwarding.Rule
		for _, r := range c.rules {
			if len(r.Endpoints) > 0 {
				rules = append(rules, r)
			}
		}
		check(t, rules)
		if t.Failed() {
			t.Fatalf("step %d: changed %v", step, changed)
		}
	}
	if err := s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}

// listed is what `nft -j list table` says, reduced to what check needs.
type listed struct {
	chains   []string
	rules    map[string][]string // chain -> rule expressions as JSON
	elements map[string][]string // map -> elements as JSON
}

func list(t *testing.T) listed {
	t.Helper()
	out, err := exec.Command("nft", "-j", "list", "table", "inet", Table).Output()
	if err != nil {
		t.Fatalf("nft -j list table inet %s: %v", Table, err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("parsing nft -j output: %v\n%s", err, out)
	}
	l := listed{rules: map[string][]string{}, elements: map[string][]string{}}
	for _, obj := range doc.Nftables {
		if raw, ok := obj["chain"]; ok {
			var c struct{ Name string }
			_ = json.Unmarshal(raw, &c)
			l.chains = append(l.chains, c.Name)
		}
		if raw, ok := obj["rule"]; ok {
			var r struct {
				Chain string
				Expr  json.RawMessage
			}
			_ = json.Unmarshal(raw, &r)
			l.rules[r.Chain] = append(l.rules[r.Chain], string(r.Expr))
		}
		if raw, ok := obj["map"]; ok {
			var m struct {
				Name string
				Elem []json.RawMessage
			}
			_ = json.Unmarshal(raw, &m)
			for _, e := range m.Elem {
				l.elements[m.Name] = append(l.elements[m.Name], string(e))
			}
		}
	}
	return l
}

// check reads the table back: the fixed chains with their rules, one
// endpoint chain per family, protocol and endpoint count in use, each with
// one DNAT through its backends map, one verdict map element per rule that
// jumps to its endpoint chain, one backends element per endpoint, and
// nothing else.
func check(t *testing.T, rules []forwarding.Rule) {
	t.Helper()
	l := list(t)
	want := []string{"output", "prerouting", "services"}
	need := map[string]forwarding.Rule{}
	for _, r := range rules {
		need[epsOf(r.Key, len(r.Endpoints)).name()] = r
	}
	for c := range need {
		want = append(want, c)
	}
	// Endpoint chains no rule uses may be there too (endpointChains);
	// each must still be one well-formed DNAT.
	got := slices.Clone(l.chains)
	slices.Sort(got)
	slices.Sort(want)
	for _, c := range got {
		if _, ok := need[c]; !ok && !slices.Contains(want, c) {
			if !strings.HasPrefix(c, "eps") || len(l.rules[c]) != 1 || !strings.Contains(l.rules[c][0], `"dnat"`) {
				t.Errorf("chain %s: rules %v, want no such chain or one unused dnat", c, l.rules[c])
			}
		}
	}
	for _, c := range want {
		if !slices.Contains(got, c) {
			t.Fatalf("chains %v, want %v among them", got, want)
		}
	}
	if len(l.rules["prerouting"]) != 1 || len(l.rules["output"]) != 1 || len(l.rules["services"]) != 2 {
		t.Errorf("fixed chains hold %d, %d, %d rules", len(l.rules["prerouting"]), len(l.rules["output"]), len(l.rules["services"]))
	}
	for c, r := range need {
		rs := l.rules[c]
		m := backends(r.VIP.Is6(), r.Protocol)
		if len(rs) != 1 || !strings.Contains(rs[0], `"dnat"`) || !strings.Contains(rs[0], `"@`+m+`"`) ||
			!strings.Contains(rs[0], `"mod": `+strconv.Itoa(len(r.Endpoints))) {
			t.Errorf("chain %s: rules %v, want one dnat through @%s", c, rs, m)
		}
	}
	if n := len(l.elements[mapV4]) + len(l.elements[mapV6]); n != len(rules) {
		t.Errorf("%d verdict map elements for %d rules: %v", n, len(rules), l.elements)
	}
	nBackends, nEndpoints := 0, 0
	for _, v6 := range []bool{false, true} {
		for _, p := range protocols {
			nBackends += len(l.elements[backends(v6, p)])
		}
	}
	for _, r := range rules {
		nEndpoints += len(r.Endpoints)
		chain := epsOf(r.Key, len(r.Endpoints)).name()
		m := mapV4
		if r.VIP.Is6() {
			m = mapV6
		}
		found := false
		for _, e := range l.elements[m] {
			if strings.Contains(e, `"`+r.VIP.String()+`"`) && strings.Contains(e, `"`+string(r.Protocol)+`"`) &&
				strings.Contains(e, `"target": "`+chain+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no element of %s jumps to %s: %v", m, chain, l.elements[m])
		}
		bm := backends(r.VIP.Is6(), r.Protocol)
		for i, ep := range r.Endpoints {
			want := fmt.Sprintf(`[{"concat": ["%s", %d, %d]}, {"concat": ["%s", %d]}]`, r.VIP, r.Port, i, ep.Addr(), ep.Port())
			if !slices.Contains(l.elements[bm], want) {
				t.Errorf("%s lacks %s: %v", bm, want, l.elements[bm])
			}
		}
	}
	if nBackends != nEndpoints {
		t.Errorf("%d backends elements for %d endpoints", nBackends, nEndpoints)
	}
}

// handleOf is the handle of the first rule of chain, from `nft -a list
// chain`.
func handleOf(t *testing.T, chain string) string {
	t.Helper()
	out, err := exec.Command("nft", "-a", "list", "chain", "inet", Table, chain).Output()
	if err != nil {
		t.Fatalf("nft -a list chain inet %s %s: %v", Table, chain, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, h, ok := strings.Cut(line, "# handle "); ok && !strings.Contains(line, "chain ") {
			return strings.TrimSpace(h)
		}
	}
	t.Fatalf("no rule handle in chain %s:\n%s", chain, out)
	return ""
}

// TestKernelLikeNft: the table New writes over netlink is the one the
// knftables path (nft's own parser) writes, as `nft list table` prints it,
// element for element and with the same operation counts, after a full and
// after a partial sync; and nft reads its listing of it back.
func TestKernelLikeNft(t *testing.T) {
	if !netns(t) {
		return
	}
	ctx := context.Background()
	changed := []forwarding.Rule{rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.3:8080"), story[1], story[3],
		rule("2001:db8::2", forwarding.UDP, 53, "[fd00:244::2]:53"),
		rule("2001:db8::3", forwarding.SCTP, 9, "[fd00:244::5]:9", "[fd00:244::6]:9")}
	type listing struct {
		text     string
		elements []string
		ops      []int
	}
	build := func(s *Syncer) listing {
		var l listing
		for i, rules := range [][]forwarding.Rule{story, changed} {
			res, err := s.Sync(ctx, forwarding.Merge(rules), nil, false)
			if want := []Kind{Full, Partial}[i]; err != nil || res.Kind != want {
				t.Fatalf("sync %d: %+v, %v; want %s", i, res, err, want)
			}
			l.ops = append(l.ops, res.Operations)
		}
		l.text, l.elements = listed2(t)
		if err := s.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	got := build(s)
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		t.Fatal(err)
	}
	want := build(NewWith(nft))
	if got.text != want.text {
		t.Errorf("over netlink:\n%s\nthrough nft:\n%s", got.text, want.text)
	}
	if !slices.Equal(got.elements, want.elements) {
		t.Errorf("elements over netlink:\n%s\nthrough nft:\n%s", strings.Join(got.elements, "\n"), strings.Join(want.elements, "\n"))
	}
	if !slices.Equal(got.ops, want.ops) {
		t.Errorf("operations over netlink %v, through nft %v", got.ops, want.ops)
	}
	t.Logf("table:\n%s", got.text)

	// nft reads back what it lists.
	if _, err := s.Sync(ctx, forwarding.Merge(changed), nil, true); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "table", "inet", Table).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(string(out))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f of its own listing: %v: %s", err, msg)
	}
	again, err := exec.Command("nft", "list", "table", "inet", Table).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(out) {
		t.Errorf("nft read back\n%s\nas\n%s", out, again)
	}
}

// listed2 is `nft list table` without its elements, and the elements from
// `nft -j list table`, sorted (the kernel's hash order is no contract).
func listed2(t *testing.T) (string, []string) {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "inet", Table).Output()
	if err != nil {
		t.Fatalf("nft list table inet %s: %v", Table, err)
	}
	var text []string
	inElements := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "elements = {") {
			inElements = true
		}
		if !inElements {
			text = append(text, line)
		}
		if inElements && strings.HasSuffix(line, "}") {
			inElements = false
		}
	}
	l := list(t)
	var elems []string
	for m, es := range l.elements {
		for _, e := range es {
			elems = append(elems, m+" "+e)
		}
	}
	slices.Sort(elems)
	return strings.Join(text, "\n"), elems
}
