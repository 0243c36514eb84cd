package allocator

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/internal/pool"
)

// mkPool builds a pool from address strings; mods adjust it.
func mkPool(name string, addrs string, mods ...func(*Pool)) Pool {
	rs, err := pool.ParseAll(strings.Fields(addrs))
	if err != nil {
		panic(err)
	}
	p := Pool{Name: name, Ranges: rs, AutoAssign: true}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func manual(p *Pool)         { p.AutoAssign = false }
func avoidBuggy(p *Pool)     { p.AvoidBuggyIPs = true }
func prio(n int) func(*Pool) { return func(p *Pool) { p.Priority = n } }
func inNS(ns ...string) func(*Pool) {
	return func(p *Pool) { p.Namespaces = ns }
}
func nsSel(s string) func(*Pool) {
	return func(p *Pool) {
		p.NamespaceSelectors = append(p.NamespaceSelectors, labels.SelectorFromSet(parseSet(s)))
	}
}
func svcSel(s string) func(*Pool) {
	return func(p *Pool) { p.ServiceSelectors = append(p.ServiceSelectors, labels.SelectorFromSet(parseSet(s))) }
}

func parseSet(s string) labels.Set {
	set, err := labels.ConvertSelectorToLabelsMap(s)
	if err != nil {
		panic(err)
	}
	return set
}

// sv builds a Service "ns/name" from its key; mods adjust it.
func sv(key string, mods ...func(*Service)) Service {
	ns, _, _ := strings.Cut(key, "/")
	s := Service{Key: key, Namespace: ns}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func share(k string) func(*Service)   { return func(s *Service) { s.SharingKey = k } }
func backend(k string) func(*Service) { return func(s *Service) { s.BackendKey = k } }
func inPool(p string) func(*Service)  { return func(s *Service) { s.Pool = p } }
func nsLabels(l string) func(*Service) {
	return func(s *Service) { s.NamespaceLabels = parseSet(l) }
}
func svcLabels(l string) func(*Service) { return func(s *Service) { s.Labels = parseSet(l) } }
func req(ips ...string) func(*Service) {
	return func(s *Service) { s.RequestedIPs = addrs(ips...) }
}
func fams(p FamilyPolicy, fs ...Family) func(*Service) {
	return func(s *Service) { s.Policy, s.Families = p, fs }
}

// ports takes "TCP/80 UDP/53".
func ports(ps string) func(*Service) {
	return func(s *Service) {
		for _, f := range strings.Fields(ps) {
			var p Port
			proto, num, _ := strings.Cut(f, "/")
			fmt.Sscan(num, &p.Port)
			p.Protocol = proto
			s.Ports = append(s.Ports, p)
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func fmtResult(r Result) string {
	s := []string{r.Pool}
	if r.Pool == "" {
		s[0] = "-"
	}
	for _, ip := range r.IPs {
		s = append(s, ip.String())
	}
	return strings.Join(s, " ")
}

// row is one step of a story: exactly one of setPools, release, holds,
// restore or svc (an Assign) is set.
type row struct {
	desc     string
	setPools []Pool
	release  string
	holds    string
	restore  []Held
	svc      Service
	cur      []string
	// want is "pool ip ip" for an Assign, Holds or Release ("-" for no
	// pool; for Release just the ips, "" for none).
	want    string
	err     Reason // wanted Assign error
	errHas  []string
	restErr map[string]Reason
	check   func(t *testing.T, a *Allocator)
}

func runStory(t *testing.T, pools []Pool, rows []row) *Allocator {
	t.Helper()
	a := New(pools)
	for i, r := range rows {
		name := fmt.Sprintf("row %d %q", i, r.desc)
		switch {
		case r.setPools != nil:
			a.SetPools(r.setPools)
		case r.release != "":
			before, _ := a.Holds(r.release)
			got := a.Release(r.release)
			if !slices.Equal(got, before.IPs) {
				t.Fatalf("%s: Release returned %v, but Holds said %v", name, got, before.IPs)
			}
			var s []string
			for _, ip := range got {
				s = append(s, ip.String())
			}
			if strings.Join(s, " ") != r.want {
				t.Fatalf("%s: Release = %q, want %q", name, s, r.want)
			}
		case r.holds != "":
			got, ok := a.Holds(r.holds)
			if gs := fmtResult(got); (r.want == "") == ok || (ok && gs != r.want) {
				t.Fatalf("%s: Holds = %q, %v; want %q", name, gs, ok, r.want)
			}
		case r.restore != nil:
			errs := a.Restore(r.restore)
			if len(errs) != len(r.restErr) {
				t.Fatalf("%s: Restore errors %v, want reasons %v", name, errs, r.restErr)
			}
			for k, reason := range r.restErr {
				if ReasonOf(errs[k]) != reason {
					t.Fatalf("%s: Restore error for %s = %v, want %s", name, k, errs[k], reason)
				}
				if _, ok := a.Holds(k); ok && reason != ReasonInvalidRequest {
					t.Fatalf("%s: %s holds addresses after a failed Restore", name, k)
				}
			}
		case r.svc.Key != "":
			before, hadBefore := a.Holds(r.svc.Key)
			res, err := a.Assign(r.svc, addrs(r.cur...))
			if r.err != "" {
				if ReasonOf(err) != r.err {
					t.Fatalf("%s: Assign = %v, %v; want reason %s", name, fmtResult(res), err, r.err)
				}
				for _, h := range r.errHas {
					if !strings.Contains(err.Error(), h) {
						t.Fatalf("%s: error %q does not mention %q", name, err, h)
					}
				}
				after, hasAfter := a.Holds(r.svc.Key)
				if hadBefore != hasAfter || !reflect.DeepEqual(before, after) {
					t.Fatalf("%s: failed Assign changed the holding from %v to %v", name, before, after)
				}
			} else {
				if err != nil {
					t.Fatalf("%s: Assign: %v", name, err)
				}
				if got := fmtResult(res); got != r.want {
					t.Fatalf("%s: Assign = %q, want %q", name, got, r.want)
				}
				if h, _ := a.Holds(r.svc.Key); !reflect.DeepEqual(h, res) {
					t.Fatalf("%s: Holds = %v, Assign returned %v", name, h, res)
				}
				// Idempotent: the same call again changes nothing.
				snap := a.Snapshot()
				res2, err := a.Assign(r.svc, res.IPs)
				if err != nil || !reflect.DeepEqual(res, res2) || !reflect.DeepEqual(snap, a.Snapshot()) {
					t.Fatalf("%s: repeating Assign gave %v, %v", name, res2, err)
				}
			}
		}
		if r.check != nil {
			r.check(t, a)
		}
		if err := checkInvariants(a); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return a
}

// checkInvariants verifies what must hold after any sequence of calls.
func checkInvariants(a *Allocator) error {
	// Every held address is held by compatible Services only.
	byIP := map[netip.Addr][]string{}
	for k, h := range a.svcs {
		for _, ip := range h.ips {
			byIP[ip] = append(byIP[ip], k)
		}
	}
	for ip, ks := range byIP {
		slices.Sort(ks)
		if !slices.Equal(ks, a.addrs[ip]) {
			return fmt.Errorf("holders of %s: index %v, holdings %v", ip, a.addrs[ip], ks)
		}
		for i := range ks {
			for j := i + 1; j < len(ks); j++ {
				x, y := a.svcs[ks[i]].svc, a.svcs[ks[j]].svc
				_, clash := portClash(x.Ports, y.Ports)
				if x.SharingKey == "" || x.SharingKey != y.SharingKey || x.BackendKey != y.BackendKey || clash {
					return fmt.Errorf("%s held by incompatible %s and %s", ip, ks[i], ks[j])
				}
			}
		}
		if !a.used(familyOf(ip)).has(pool.AddrValue(ip)) {
			return fmt.Errorf("%s held but not in the used set", ip)
		}
	}
	if len(byIP) != len(a.addrs) {
		return fmt.Errorf("index has %d addresses, holdings %d", len(a.addrs), len(byIP))
	}
	// The used sets hold exactly the held addresses, as maximal runs.
	var total int
	for _, f := range []Family{IPv4, IPv6} {
		var prev *run
		n := 0
		var err error
		a.used(f).overlapping(pool.Uint128{}, pool.MaxUint128, func(first, last pool.Uint128) {
			n++
			if prev != nil {
				if next, _ := prev.last.Inc(); first.Cmp(next) <= 0 && err == nil {
					err = fmt.Errorf("%s runs not maximal/ordered", f)
				}
			}
			prev = &run{first: first, last: last}
			total += int(last.Sub(first).Lo) + 1
		})
		if err != nil {
			return err
		}
		if n != a.used(f).n {
			return fmt.Errorf("%s: %d runs, count says %d", f, n, a.used(f).n)
		}
	}
	if total != len(a.addrs) {
		return fmt.Errorf("used sets hold %d addresses, %d are held", total, len(a.addrs))
	}
	// Every sharing index entry is a held address of that key.
	for k, m := range a.shared {
		for ip := range m {
			hs := a.addrs[ip]
			if len(hs) == 0 || a.svcs[hs[0]].svc.SharingKey != k {
				return fmt.Errorf("shared index %q has %s wrongly", k, ip)
			}
		}
	}
	// A fresh allocator restored from the holdings has the same state.
	b := New(poolsOf(a))
	if errs := b.Restore(a.Holdings()); errs != nil {
		return fmt.Errorf("restore from holdings: %v", errs)
	}
	if !reflect.DeepEqual(a.Snapshot(), b.Snapshot()) {
		return fmt.Errorf("restored snapshot differs:\n%v\n%v", a.Snapshot(), b.Snapshot())
	}
	return nil
}

func poolsOf(a *Allocator) []Pool {
	var ps []Pool
	for _, p := range a.order {
		ps = append(ps, p.Pool)
	}
	return ps
}
