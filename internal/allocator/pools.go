package allocator

import (
	"cmp"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/internal/pool"
)

// span is an inclusive run of address values of one family.
type span struct{ first, last pool.Uint128 }

// poolState is a Pool with its ranges split by family, sorted and merged, so
// that membership is a binary search and overlapping entries count once.
type poolState struct {
	Pool
	v4, v6 []span
}

func newPoolState(p Pool) *poolState {
	ps := &poolState{Pool: p}
	for _, r := range p.Ranges {
		f, l := r.First.Unmap(), r.Last.Unmap()
		if !f.IsValid() || !l.IsValid() || f.Is4() != l.Is4() || l.Less(f) {
			continue // pool.Parse never yields these; ignore rather than panic
		}
		s := span{pool.AddrValue(f), pool.AddrValue(l)}
		if f.Is4() {
			ps.v4 = append(ps.v4, s)
		} else {
			ps.v6 = append(ps.v6, s)
		}
	}
	ps.v4, ps.v6 = mergeSpans(ps.v4), mergeSpans(ps.v6)
	if ps.AvoidBuggyIPs {
		// Drop spans made only of x.x.x.0/x.x.x.255 addresses (a lone .0,
		// or .255-.0 across a boundary) so that a family counts as present
		// only if the pool can really hand out one of its addresses.
		ps.v4 = slices.DeleteFunc(ps.v4, func(s span) bool {
			return s.last.Sub(s.first).Lo+1 == buggyIn(s.first.Lo, s.last.Lo)
		})
	}
	return ps
}

func mergeSpans(ss []span) []span {
	slices.SortFunc(ss, func(a, b span) int { return a.first.Cmp(b.first) })
	out := ss[:0]
	for _, s := range ss {
		if n := len(out); n > 0 {
			end, over := out[n-1].last.Inc()
			if over || s.first.Cmp(end) <= 0 {
				if s.last.Cmp(out[n-1].last) > 0 {
					out[n-1].last = s.last
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

func (p *poolState) spans(f Family) []span {
	if f == IPv4 {
		return p.v4
	}
	return p.v6
}

func (p *poolState) has(f Family) bool { return len(p.spans(f)) > 0 }

// contains reports whether ip is one of the addresses the pool can hand
// out; with AvoidBuggyIPs, x.x.x.0 and x.x.x.255 are not among them at all,
// so they can be neither assigned nor requested from this pool.
func (p *poolState) contains(ip netip.Addr) bool {
	f := familyOf(ip)
	v := pool.AddrValue(ip)
	if f == IPv4 && p.AvoidBuggyIPs && isBuggy(v.Lo) {
		return false
	}
	ss := p.spans(f)
	i, _ := slices.BinarySearchFunc(ss, v, func(s span, v pool.Uint128) int { return s.last.Cmp(v) })
	return i < len(ss) && ss[i].first.Cmp(v) <= 0
}

// admits applies serviceAllocation: a namespace list or namespace selectors
// (either matching is enough), then service selectors.
func (p *poolState) admits(svc *Service) bool {
	if len(p.Namespaces) > 0 || len(p.NamespaceSelectors) > 0 {
		if !slices.Contains(p.Namespaces, svc.Namespace) && !anyMatch(p.NamespaceSelectors, svc.NamespaceLabels) {
			return false
		}
	}
	if len(p.ServiceSelectors) > 0 && !anyMatch(p.ServiceSelectors, svc.Labels) {
		return false
	}
	return true
}

func anyMatch(sels []labels.Selector, set map[string]string) bool {
	for _, s := range sels {
		if s != nil && s.Matches(labels.Set(set)) {
			return true
		}
	}
	return false
}

// poolOrder sorts pools as auto-assignment tries them: set priorities
// ascending, then unset ones, then by name.
func poolOrder(a, b *poolState) int {
	ap, bp := a.Priority != 0, b.Priority != 0
	switch {
	case ap && !bp:
		return -1
	case !ap && bp:
		return 1
	case ap && bp && a.Priority != b.Priority:
		return cmp.Compare(a.Priority, b.Priority)
	}
	return cmp.Compare(a.Name, b.Name)
}

func isBuggy(v uint64) bool { return v&0xff == 0 || v&0xff == 0xff }

// buggyIn counts the x.x.x.0 and x.x.x.255 values in [lo, hi] (IPv4 values).
func buggyIn(lo, hi uint64) uint64 {
	// multiples of 256 in [a, b]
	mult := func(a, b uint64) uint64 {
		n := b/256 - a/256
		if a%256 == 0 {
			n++
		}
		return n
	}
	return mult(lo, hi) + mult(lo+1, hi+1)
}

func familyOf(ip netip.Addr) Family {
	if ip.Is4() {
		return IPv4
	}
	return IPv6
}

// Overlaps lists the addresses that two pools both contain, ordered by the
// pool names, then by address; it is for the pool Overlap condition.
func Overlaps(pools []Pool) []Overlap {
	ps := make([]*poolState, len(pools))
	for i, p := range pools {
		ps[i] = newPoolState(p)
	}
	slices.SortStableFunc(ps, func(a, b *poolState) int { return cmp.Compare(a.Name, b.Name) })
	var out []Overlap
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			for _, f := range []Family{IPv4, IPv6} {
				for _, x := range ps[i].spans(f) {
					for _, y := range ps[j].spans(f) {
						r, ok := pool.Overlap(spanRange(x, f), spanRange(y, f))
						if ok {
							out = append(out, Overlap{A: ps[i].Name, B: ps[j].Name, Range: r})
						}
					}
				}
			}
		}
	}
	return out
}

func spanRange(s span, f Family) pool.Range {
	return pool.Range{First: pool.AddrFromValue(s.first, f == IPv4), Last: pool.AddrFromValue(s.last, f == IPv4)}
}
