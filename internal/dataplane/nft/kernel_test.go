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

	"github.com/ironlb/ironlb/internal/forwarding"
)

// inNetns is set in the copy of the test binary that runs in a fresh
// network namespace.
const inNetns = "IRONLB_NFT_TEST_NETNS"

// TestKernel applies rules with the real nft binary and kernel, in a fresh
// network namespace so the host's ruleset is never touched, and reads them
// back with `nft -j list table inet ironlb`. It skips without root, nft or
// unshare.
func TestKernel(t *testing.T) {
	if os.Getenv(inNetns) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace")
		}
		for _, tool := range []string{"nft", "unshare"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("needs %s", tool)
			}
		}
		cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^TestKernel$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inNetns+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("test in a new network namespace: %v", err)
		}
		return
	}
	ctx := context.Background()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Sync(ctx, story, false)
	if err != nil || res.Kind != Full {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	check(t, story)

	changed := []forwarding.Rule{rule("192.0.2.1", forwarding.TCP, 80, "10.244.1.3:8080"), story[1], story[3],
		rule("2001:db8::2", forwarding.UDP, 53, "[fd00:244::2]:53")}
	if res, err := s.Sync(ctx, changed, false); err != nil || res.Kind != Partial {
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
		res, err := s.Sync(ctx, changed, false)
		if err != nil || res.Kind != Full {
			t.Fatalf("sync after %v: %+v, %v; want a full sync", breakIt, res, err)
		}
		t.Logf("after %q: %s sync (%s)", strings.Join(breakIt, " "), res.Kind, res.Reason)
		check(t, changed)
	}
	if err := s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", Table).CombinedOutput(); err == nil {
		t.Errorf("table still there after Remove:\n%s", out)
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
	got := slices.Clone(l.chains)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("chains %v, want %v", got, want)
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

func handleOf(t *testing.T, chain string) string {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := s.nft.ListRules(context.Background(), chain)
	if err != nil || len(rules) == 0 || rules[0].Handle == nil {
		t.Fatalf("handle of the rule in %s: %v", chain, err)
	}
	return strconv.Itoa(*rules[0].Handle)
}
