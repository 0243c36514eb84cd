package allocator

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"testing"

	"github.com/ironlb/ironlb/internal/pool"
)

func TestAssignmentBasics(t *testing.T) {
	runStory(t, []Pool{mkPool("a", "10.0.0.0/30")}, []row{
		{desc: "s1 gets the first address", svc: sv("ns/s1"), want: "a 10.0.0.0"},
		{desc: "s1 again without current keeps it", svc: sv("ns/s1"), want: "a 10.0.0.0"},
		{desc: "s1 with its current keeps it", svc: sv("ns/s1"), cur: []string{"10.0.0.0"}, want: "a 10.0.0.0"},
		{desc: "s2 gets the next", svc: sv("ns/s2"), want: "a 10.0.0.1"},
		{desc: "s3 asks for s2's address", svc: sv("ns/s3", req("10.0.0.1")), err: ReasonIPInUse, errHas: []string{"ns/s2", "10.0.0.1", "allow-shared-ip"}},
		{desc: "s3 asks for a free one", svc: sv("ns/s3", req("10.0.0.3")), want: "a 10.0.0.3"},
		{desc: "s4 takes the gap", svc: sv("ns/s4"), want: "a 10.0.0.2"},
		{desc: "s5 finds the pool exhausted", svc: sv("ns/s5"), err: ReasonPoolExhausted, errHas: []string{"ns/s5", `"a"`}},
		{desc: "s2 frees its address", release: "ns/s2", want: "10.0.0.1"},
		{desc: "s2 released twice returns nothing", release: "ns/s2", want: ""},
		{desc: "s5 gets s2's former address", svc: sv("ns/s5"), want: "a 10.0.0.1"},
		{desc: "s5 asks for an address in no pool", svc: sv("ns/s5", req("10.0.9.9")), err: ReasonNotInPool, errHas: []string{"10.0.9.9"}},
		{desc: "s5 kept its address after the failure", holds: "ns/s5", want: "a 10.0.0.1"},
		{desc: "s6 names an unknown pool", svc: sv("ns/s6", inPool("nope")), err: ReasonUnknownPool, errHas: []string{"nope"}},
		{desc: "s1 claims s3's address as current: keeps its own", svc: sv("ns/s1"), cur: []string{"10.0.0.3"}, want: "a 10.0.0.0"},
		{desc: "s1 moves to a requested address when it is free", release: "ns/s3", want: "10.0.0.3"},
		{desc: "s1 requests .3", svc: sv("ns/s1", req("10.0.0.3")), cur: []string{"10.0.0.0"}, want: "a 10.0.0.3"},
		{desc: "s1's old address is free again", svc: sv("ns/s7"), want: "a 10.0.0.0"},
		{desc: "an IPv4-mapped request is unmapped", svc: sv("ns/s7", req("::ffff:10.0.0.0")), want: "a 10.0.0.0"},
		{desc: "no key", svc: Service{}, err: ReasonInvalidRequest},
		{desc: "two requested of one family", svc: sv("ns/s8", req("10.0.0.0", "10.0.0.1")), err: ReasonInvalidRequest},
		{desc: "bad family", svc: sv("ns/s8", fams(SingleStack, 5)), err: ReasonInvalidRequest},
	})
}

func TestAssignmentSharing(t *testing.T) {
	runStory(t, []Pool{mkPool("a", "10.0.0.0/29")}, []row{
		{desc: "s1 with key k", svc: sv("ns/s1", share("k"), ports("TCP/80")), want: "a 10.0.0.0"},
		{desc: "s2 joins s1", svc: sv("ns/s2", share("k"), ports("TCP/443")), want: "a 10.0.0.0"},
		{desc: "s3 clashes on TCP/80 so gets a free one", svc: sv("ns/s3", share("k"), ports("TCP/80")), want: "a 10.0.0.1"},
		{desc: "s4 UDP/80 joins the lowest shared", svc: sv("ns/s4", share("k"), ports("UDP/80")), want: "a 10.0.0.0"},
		{desc: "s5 other key", svc: sv("ns/s5", share("other"), req("10.0.0.0")), err: ReasonIPInUse, errHas: []string{"sharing key differs"}},
		{desc: "s6 port clash", svc: sv("ns/s6", share("k"), ports("TCP/80"), req("10.0.0.0")), err: ReasonIPInUse, errHas: []string{"port clash", "TCP/80", "ns/s1"}},
		{desc: "s7 backend differs", svc: sv("ns/s7", share("k"), backend("app=x"), ports("TCP/8080"), req("10.0.0.0")), err: ReasonIPInUse, errHas: []string{"backend differs"}},
		{desc: "s8 without key", svc: sv("ns/s8", req("10.0.0.0")), err: ReasonIPInUse, errHas: []string{"allow-shared-ip"}},
		{desc: "s1 leaves; the address stays used", release: "ns/s1", want: "10.0.0.0",
			check: func(t *testing.T, a *Allocator) {
				if u := a.Usage("a"); u.AssignedV4 != 2 || u.AvailableV4 != 6 {
					t.Fatalf("usage %+v", u)
				}
			}},
		{desc: "s6 can now take TCP/80 on it", svc: sv("ns/s6", share("k"), ports("TCP/80"), req("10.0.0.0")), want: "a 10.0.0.0"},
		{desc: "release s2", release: "ns/s2", want: "10.0.0.0"},
		{desc: "release s4", release: "ns/s4", want: "10.0.0.0"},
		{desc: "release s6", release: "ns/s6", want: "10.0.0.0"},
		{desc: "s9 without key gets the freed .0", svc: sv("ns/s9"), want: "a 10.0.0.0"},
		{desc: "s3 changes key, keeping its address", svc: sv("ns/s3", share("k2"), ports("TCP/80")), cur: []string{"10.0.0.1"}, want: "a 10.0.0.1"},
		{desc: "s10 with k no longer sees .1 as shared", svc: sv("ns/s10", share("k")), want: "a 10.0.0.2"},
		{desc: "s11 with k2 joins s3", svc: sv("ns/s11", share("k2"), ports("TCP/81")), want: "a 10.0.0.1"},
		{desc: "s3 drops its key: sharing with s11 is no longer allowed, so it moves", svc: sv("ns/s3", ports("TCP/80")), cur: []string{"10.0.0.1"}, want: "a 10.0.0.3"},
	})
}

func TestAssignmentPools(t *testing.T) {
	pools := []Pool{
		mkPool("a", "10.0.0.0/29"),
		mkPool("b", "10.0.1.0/29", manual),
		mkPool("c", "10.0.2.0/29", prio(5)),
		mkPool("d", "10.0.3.0/29", prio(1)),
	}
	runStory(t, pools, []row{
		{desc: "priority 1 first", svc: sv("ns/s1"), want: "d 10.0.3.0"},
		{desc: "autoAssign false is used when named", svc: sv("ns/s2", inPool("b")), want: "b 10.0.1.0"},
		{desc: "or when a requested address is in it", svc: sv("ns/s3", req("10.0.1.5")), want: "b 10.0.1.5"},
		{desc: "annotation change moves s1", svc: sv("ns/s1", inPool("a")), cur: []string{"10.0.3.0"}, want: "a 10.0.0.0"},
		{desc: "requested address outside the named pool", svc: sv("ns/s4", inPool("a"), req("10.0.1.6")), err: ReasonNotInPool, errHas: []string{`"a"`}},
		{desc: "shrink a, delete d", setPools: []Pool{mkPool("a", "10.0.0.4/30"), pools[1], pools[2]}},
		{desc: "s1 still holds its address outside every pool", holds: "ns/s1", want: "- 10.0.0.0"},
		{desc: "which nobody else can get", svc: sv("ns/s5", req("10.0.0.0")), err: ReasonNotInPool},
		{desc: "s1's next assign moves it", svc: sv("ns/s1", inPool("a")), cur: []string{"10.0.0.0"}, want: "a 10.0.0.4"},
		{desc: "c now has the only priority", svc: sv("ns/s6"), want: "c 10.0.2.0",
			check: func(t *testing.T, a *Allocator) {
				if u := a.Usage("c"); u != (Usage{AssignedV4: 1, AvailableV4: 7}) {
					t.Fatalf("usage %+v", u)
				}
				if u := a.Usage("d"); u != (Usage{}) {
					t.Fatalf("deleted pool usage %+v", u)
				}
			}},
		{desc: "deleted pool by name", svc: sv("ns/s7", inPool("d")), err: ReasonUnknownPool},
		{desc: "delete c while s6 holds it", setPools: []Pool{mkPool("a", "10.0.0.4/30"), pools[1]}},
		{desc: "s6 keeps it, pool unknown", holds: "ns/s6", want: "- 10.0.2.0"},
		{desc: "s6 reassigned into a", svc: sv("ns/s6"), cur: []string{"10.0.2.0"}, want: "a 10.0.0.5"},
		{desc: "c comes back: s6 stays in a", setPools: pools},
		{desc: "s6 is stable", svc: sv("ns/s6"), cur: []string{"10.0.0.5"}, want: "a 10.0.0.5"},
		{desc: "no auto-assign pool at all", setPools: []Pool{pools[1]}},
		{desc: "nothing to auto-assign from", svc: sv("ns/s8"), err: ReasonPoolExhausted},
	})
}

func TestAssignmentSelectors(t *testing.T) {
	pools := []Pool{
		mkPool("team", "10.0.0.0/30", prio(1), inNS("team-a"), nsSel("env=prod")),
		mkPool("web", "10.0.1.0/30", prio(2), svcSel("app=web")),
		mkPool("both", "10.0.3.0/30", prio(3), inNS("db"), svcSel("tier=db")),
		mkPool("rest", "10.0.2.0/30"),
	}
	runStory(t, pools, []row{
		{desc: "listed namespace", svc: sv("team-a/s1"), want: "team 10.0.0.0"},
		{desc: "namespace selector", svc: sv("other/s2", nsLabels("env=prod")), want: "team 10.0.0.1"},
		{desc: "service selector", svc: sv("other/s3", svcLabels("app=web")), want: "web 10.0.1.0"},
		{desc: "no match falls to the unrestricted pool", svc: sv("other/s4", nsLabels("env=dev")), want: "rest 10.0.2.0"},
		{desc: "named but not allowed", svc: sv("other/s5", inPool("team")), err: ReasonPoolNotAllowed, errHas: []string{"team", "other/s5"}},
		{desc: "requested but not allowed", svc: sv("other/s6", req("10.0.0.3")), err: ReasonPoolNotAllowed},
		{desc: "namespace and service selector both needed", svc: sv("db/s7", svcLabels("tier=web")), want: "rest 10.0.2.1"},
		{desc: "both match", svc: sv("db/s8", svcLabels("tier=db")), want: "both 10.0.3.0"},
		{desc: "team-a service moves when its namespace leaves the pool", setPools: []Pool{mkPool("team", "10.0.0.0/30", prio(1), inNS("team-b")), pools[3]}},
		{desc: "s1 keeps nothing of team", svc: sv("team-a/s1"), cur: []string{"10.0.0.0"}, want: "rest 10.0.2.2"},
		{desc: "only restricted pools left", setPools: []Pool{pools[0]}},
		{desc: "and they exclude s9", svc: sv("other/s9"), err: ReasonPoolNotAllowed},
	})
}

func TestAssignmentDualStack(t *testing.T) {
	pools := []Pool{
		mkPool("ds", "10.0.0.0/30 fd00::/126", prio(2)),
		mkPool("v4", "10.1.0.0/30", prio(1)),
		mkPool("v6only", "fd01::/126", manual),
	}
	v4dual := mkPool("v4", "10.1.0.0/30 fd02::/126", prio(1))
	rows := []row{
		{desc: "single IPv4", svc: sv("ns/s1", fams(SingleStack, IPv4)), want: "v4 10.1.0.0"},
		{desc: "single IPv6 skips the IPv4 pool", svc: sv("ns/s2", fams(SingleStack, IPv6)), want: "ds fd00::"},
		{desc: "require dual", svc: sv("ns/s3", fams(RequireDualStack, IPv4, IPv6)), want: "ds 10.0.0.0 fd00::1"},
		{desc: "require dual, IPv6 first", svc: sv("ns/s4", fams(RequireDualStack, IPv6, IPv4)), want: "ds fd00::2 10.0.0.1"},
		{desc: "require dual with one family listed", svc: sv("ns/s4b", fams(RequireDualStack, IPv4)), want: "ds 10.0.0.2 fd00::3"},
		{desc: "prefer dual from a single-family pool", svc: sv("ns/s5", fams(PreferDualStack, IPv4)), want: "v4 10.1.0.1"},
		{desc: "require dual from a single-family pool", svc: sv("ns/s7", fams(RequireDualStack), inPool("v6only")), err: ReasonFamily, errHas: []string{"v6only", "IPv4"}},
		{desc: "single stack with two requested", svc: sv("ns/s8", req("10.0.0.3", "fd00::3")), err: ReasonFamily},
		{desc: "require dual with one requested", svc: sv("ns/s9", fams(RequireDualStack), req("10.0.0.3")), err: ReasonFamily},
		{desc: "requested pair across two pools", svc: sv("ns/s10", fams(RequireDualStack), req("10.0.0.3", "fd01::1")), err: ReasonNotInPool, errHas: []string{"one address pool"}},
		{desc: "single IPv6 requesting IPv4", svc: sv("ns/s11", fams(SingleStack, IPv6), req("10.0.0.3")), err: ReasonFamily},
		{desc: "ds is full for IPv6", svc: sv("ns/s12", fams(RequireDualStack)), err: ReasonPoolExhausted},
		{desc: "prefer dual, named ds: takes what is left (IPv4)", svc: sv("ns/s13", fams(PreferDualStack), inPool("ds")), want: "ds 10.0.0.3"},
		{desc: "s6 prefer dual in v4", svc: sv("ns/s6", fams(PreferDualStack, IPv4), inPool("v4")), want: "v4 10.1.0.2"},
		{desc: "v4 gains IPv6", setPools: []Pool{pools[0], v4dual, pools[2]}},
		{desc: "s6 keeps its IPv4 and gains IPv6", svc: sv("ns/s6", fams(PreferDualStack, IPv4), inPool("v4")), cur: []string{"10.1.0.2"}, want: "v4 10.1.0.2 fd02::"},
		{desc: "s1 is single stack: kept as is", svc: sv("ns/s1", fams(SingleStack, IPv4)), cur: []string{"10.1.0.0"}, want: "v4 10.1.0.0"},
		{desc: "ds loses its IPv6 range", setPools: []Pool{mkPool("ds", "10.0.0.0/30", prio(2)), v4dual, pools[2]}},
		{desc: "s3 require dual now moves whole to v4 (no single pool holds its pair)", svc: sv("ns/s3", fams(RequireDualStack, IPv4, IPv6)), cur: []string{"10.0.0.0", "fd00::1"}, want: "v4 10.1.0.3 fd02::1"},
	}
	runStory(t, pools, rows)
}

func TestAssignmentAvoidBuggyIPs(t *testing.T) {
	pools := []Pool{
		mkPool("bug", "10.0.0.254-10.0.1.1", avoidBuggy),
		mkPool("plain", "10.0.0.255/32", manual),
	}
	runStory(t, pools, []row{
		{desc: "skips nothing before .255", svc: sv("ns/s1"), want: "bug 10.0.0.254"},
		{desc: "jumps over .255 and .0", svc: sv("ns/s2"), want: "bug 10.0.1.1"},
		{desc: "then exhausted", svc: sv("ns/s3"), err: ReasonPoolExhausted,
			check: func(t *testing.T, a *Allocator) {
				if u := a.Usage("bug"); u != (Usage{AssignedV4: 2, AvailableV4: 0}) {
					t.Fatalf("usage %+v", u)
				}
			}},
		{desc: ".0 cannot be requested from bug", svc: sv("ns/s4", req("10.0.1.0")), err: ReasonNotInPool},
		{desc: ".255 can be requested from plain", svc: sv("ns/s5", req("10.0.0.255")), want: "plain 10.0.0.255",
			check: func(t *testing.T, a *Allocator) {
				if u := a.Usage("bug"); u != (Usage{AssignedV4: 2, AvailableV4: 0}) {
					t.Fatalf("bug usage counts a buggy address: %+v", u)
				}
				if p, ok := a.PoolOf(netip.MustParseAddr("10.0.0.255")); !ok || p != "plain" {
					t.Fatalf("PoolOf(.255) = %q, %v", p, ok)
				}
			}},
	})
}

func TestAssignmentIPv6Slash64(t *testing.T) {
	a := New([]Pool{mkPool("v6", "fd00::/64")})
	for i := range 1000 {
		r, err := a.Assign(sv(fmt.Sprintf("ns/s%d", i), fams(SingleStack, IPv6)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := pool.AddrFromValue(pool.Uint128{Hi: 0xfd00 << 48, Lo: uint64(i)}, false); r.IPs[0] != want {
			t.Fatalf("service %d got %v, want %v", i, r.IPs, want)
		}
	}
	if got := a.Release("ns/s500"); got[0] != netip.MustParseAddr("fd00::1f4") {
		t.Fatalf("released %v", got)
	}
	if r, _ := a.Assign(sv("ns/new", fams(SingleStack, IPv6)), nil); r.IPs[0] != netip.MustParseAddr("fd00::1f4") {
		t.Fatalf("new service got %v, want the gap", r.IPs)
	}
	if u := a.Usage("v6"); u.AssignedV6 != 1000 || u.AvailableV6 != math.MaxUint64-999 {
		t.Fatalf("usage %+v", u)
	}
	if a.used6.n != 1 {
		t.Fatalf("1000 consecutive addresses take %d runs, want 1", a.used6.n)
	}
	if err := checkInvariants(a); err != nil {
		t.Fatal(err)
	}
	whole := New([]Pool{mkPool("all", "::/0")})
	if u := whole.Usage("all"); u.AvailableV6 != math.MaxUint64 {
		t.Fatalf("::/0 usage %+v", u)
	}
}

func TestRestart(t *testing.T) {
	pools := []Pool{
		mkPool("ds", "10.0.0.0/29 fd00::/125", prio(1)),
		mkPool("b", "10.0.1.0/29", manual),
	}
	orig := runStory(t, pools, []row{
		{desc: "s1", svc: sv("ns/s1", share("k"), ports("TCP/80")), want: "ds 10.0.0.0"},
		{desc: "s2 shares", svc: sv("ns/s2", share("k"), ports("TCP/81")), want: "ds 10.0.0.0"},
		{desc: "s3 dual", svc: sv("ns/s3", fams(RequireDualStack, IPv6, IPv4)), want: "ds fd00:: 10.0.0.1"},
		{desc: "s4 in b", svc: sv("ns/s4", inPool("b")), want: "b 10.0.1.0"},
	})
	held := orig.Holdings()
	for _, order := range [][]Held{held, {held[3], held[2], held[1], held[0]}} {
		fresh := New(pools)
		if errs := fresh.Restore(order); errs != nil {
			t.Fatalf("Restore: %v", errs)
		}
		if !reflect.DeepEqual(fresh.Snapshot(), orig.Snapshot()) {
			t.Fatalf("restored %v, want %v", fresh.Snapshot(), orig.Snapshot())
		}
	}

	runStory(t, pools, []row{
		{desc: "restore with a conflict keeps the first", restore: []Held{
			{Service: sv("ns/s1"), IPs: addrs("10.0.0.0")},
			{Service: sv("ns/s2"), IPs: addrs("10.0.0.0")},
			{Service: sv("ns/s3", share("k")), IPs: addrs("10.0.0.1")},
			{Service: sv("ns/s4", share("k"), backend("x")), IPs: addrs("10.0.0.1")},
			{Service: sv("ns/s3"), IPs: addrs("10.0.0.2")},
			{Service: sv("ns/s5"), IPs: addrs("192.0.2.1")},
			{Service: sv("ns/s6"), IPs: addrs("10.0.0.3", "10.0.0.4")},
			{Service: sv("ns/s7")},
		}, restErr: map[string]Reason{"ns/s2": ReasonIPInUse, "ns/s4": ReasonIPInUse, "ns/s3": ReasonInvalidRequest, "ns/s6": ReasonInvalidRequest}},
		{desc: "s1 holds", holds: "ns/s1", want: "ds 10.0.0.0"},
		{desc: "s3's first entry holds", holds: "ns/s3", want: "ds 10.0.0.1"},
		{desc: "an address in no pool is held", holds: "ns/s5", want: "- 192.0.2.1"},
		{desc: "s2 holds nothing", holds: "ns/s2"},
		{desc: "a pending service cannot take a restored address", svc: sv("ns/new"), want: "ds 10.0.0.2"},
		{desc: "s2 reconciles to a new address", svc: sv("ns/s2"), cur: []string{"10.0.0.0"}, want: "ds 10.0.0.3"},
		{desc: "s5 reconciles into a pool", svc: sv("ns/s5"), cur: []string{"192.0.2.1"}, want: "ds 10.0.0.4"},
	})
}

func TestPoolOfAndOverlaps(t *testing.T) {
	pools := []Pool{
		mkPool("z", "10.0.0.0/24 fd00::/120"),
		mkPool("b", "10.0.0.128/25 fd00::80/121"),
		mkPool("a", "10.0.0.200-10.0.0.210 10.0.0.205-10.0.0.220", prio(1)),
	}
	got := Overlaps(pools)
	want := []Overlap{
		{A: "a", B: "b", Range: pool.Range{First: netip.MustParseAddr("10.0.0.200"), Last: netip.MustParseAddr("10.0.0.220")}},
		{A: "a", B: "z", Range: pool.Range{First: netip.MustParseAddr("10.0.0.200"), Last: netip.MustParseAddr("10.0.0.220")}},
		{A: "b", B: "z", Range: pool.Range{First: netip.MustParseAddr("10.0.0.128"), Last: netip.MustParseAddr("10.0.0.255")}},
		{A: "b", B: "z", Range: pool.Range{First: netip.MustParseAddr("fd00::80"), Last: netip.MustParseAddr("fd00::ff")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Overlaps = %v\nwant %v", got, want)
	}
	a := New(pools)
	for ip, want := range map[string]string{"10.0.0.205": "a", "10.0.0.130": "b", "10.0.0.1": "z", "fd00::90": "b", "::ffff:10.0.0.1": "z", "10.1.0.0": ""} {
		p, ok := a.PoolOf(netip.MustParseAddr(ip))
		if p != want || ok != (want != "") {
			t.Errorf("PoolOf(%s) = %q, %v; want %q", ip, p, ok, want)
		}
	}
	// Overlapping pools never hand out one address twice.
	small := New([]Pool{mkPool("x", "10.0.0.0-10.0.0.3"), mkPool("y", "10.0.0.2-10.0.0.5")})
	seen := map[netip.Addr]bool{}
	for i := range 6 {
		r, err := small.Assign(sv(fmt.Sprintf("ns/s%d", i)), nil)
		if err != nil || seen[r.IPs[0]] {
			t.Fatalf("service %d: %v, %v (seen %v)", i, r, err, seen)
		}
		seen[r.IPs[0]] = true
	}
	if _, err := small.Assign(sv("ns/last"), nil); ReasonOf(err) != ReasonPoolExhausted {
		t.Fatalf("7th service: %v", err)
	}
	if u := small.Usage("y"); u != (Usage{AssignedV4: 4}) {
		t.Fatalf("usage of y counts addresses held under x too: %+v", u)
	}
}

func TestErrorAs(t *testing.T) {
	a := New(nil)
	_, err := a.Assign(sv("ns/s"), nil)
	wrapped := fmt.Errorf("reconcile: %w", err)
	var p *Error
	var v Error
	if !errors.As(wrapped, &p) || !errors.As(wrapped, &v) || p.Reason != ReasonPoolExhausted || v.Reason != ReasonPoolExhausted {
		t.Fatalf("errors.As on %v: %v %v", wrapped, p, v)
	}
	if ReasonOf(errors.New("x")) != "" {
		t.Fatal("ReasonOf of a foreign error")
	}
}
