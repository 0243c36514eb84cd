package allocator

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/internal/pool"
)

// Allocator holds the addresses of every Service. It is a plain value with
// no I/O, clock or goroutine; it is not safe for concurrent use, as the
// controller drives it from one reconcile loop.
//
// Used addresses are global across pools (one set per family), so pools
// that overlap can never hand one address to two incompatible Services.
type Allocator struct {
	pools  map[string]*poolState
	order  []*poolState // auto-assignment order
	used4  runs
	used6  runs
	addrs  map[netip.Addr][]string            // holders of each used address, sorted keys
	svcs   map[string]*holding                // by Service key
	shared map[string]map[netip.Addr]struct{} // sharing key -> addresses held under it
}

type holding struct {
	svc  Service
	ips  []netip.Addr
	pool string
}

// New returns an allocator over pools, holding nothing.
func New(pools []Pool) *Allocator {
	a := &Allocator{
		addrs:  map[netip.Addr][]string{},
		svcs:   map[string]*holding{},
		shared: map[string]map[netip.Addr]struct{}{},
	}
	a.SetPools(pools)
	return a
}

// SetPools replaces the pools. Held addresses stay held even if now outside
// every pool, so a pool edit never frees an address behind a Service's
// back; the next Assign of that Service moves it. If two pools share a
// name, the first is used.
func (a *Allocator) SetPools(pools []Pool) {
	a.pools = make(map[string]*poolState, len(pools))
	a.order = a.order[:0]
	for _, p := range pools {
		if _, dup := a.pools[p.Name]; dup {
			continue
		}
		ps := newPoolState(p)
		a.pools[p.Name] = ps
		a.order = append(a.order, ps)
	}
	slices.SortFunc(a.order, poolOrder)
	// The recorded pool is a function of (pools, Service, addresses), so a
	// restarted allocator given the same inputs records the same one.
	for _, h := range a.svcs {
		h.pool = a.canonicalPool(&h.svc, h.ips)
	}
}

// Assign gives svc its addresses and returns them. It keeps current (or,
// if current is empty, what svc.Key already holds) when that is still valid
// for svc; otherwise it chooses anew, reusing any address of current or of
// the holding that still fits. On success svc.Key holds exactly the result; on error, an
// *Error, its previous holding is unchanged.
func (a *Allocator) Assign(svc Service, current []netip.Addr) (Result, error) {
	req, err := normalize(&svc)
	if err != nil {
		return Result{}, err
	}
	cur := make([]netip.Addr, 0, len(current))
	for _, ip := range current {
		if ip.IsValid() {
			cur = append(cur, ip.Unmap().WithZone(""))
		}
	}
	var held []netip.Addr
	if h, ok := a.svcs[svc.Key]; ok {
		held = h.ips
	}
	if len(cur) == 0 {
		cur = slices.Clone(held)
	}
	if p, ok := a.currentValid(&svc, req, cur); ok {
		return a.commit(svc, orderIPs(cur, req.fams), p), nil
	}
	// Choosing anew still prefers what the Service has: its current
	// addresses, then what it holds here, where they still fit.
	for _, ip := range held {
		if !slices.Contains(cur, ip) {
			cur = append(cur, ip)
		}
	}
	var ips []netip.Addr
	var e *Error
	switch {
	case len(svc.RequestedIPs) > 0:
		ips, e = a.assignRequested(&svc)
	case svc.Pool != "":
		p, ok := a.pools[svc.Pool]
		switch {
		case !ok:
			e = errorf(ReasonUnknownPool, "service %s: address pool %q does not exist", svc.Key, svc.Pool)
		case !p.admits(&svc):
			e = errorf(ReasonPoolNotAllowed, "service %s: address pool %q does not allow it (serviceAllocation)", svc.Key, svc.Pool)
		default:
			ips, e = a.allocIn(p, &svc, req, cur)
		}
	default:
		ips, e = a.assignAuto(&svc, req, cur)
	}
	if e != nil {
		return Result{}, e
	}
	return a.commit(svc, orderIPs(ips, req.fams), a.canonicalPool(&svc, ips)), nil
}

// request is the normalized family view of a Service.
type request struct {
	fams []Family // families wanted, in preference order: 1 for SingleStack, 2 otherwise
}

// normalize validates svc and puts its inputs in canonical form.
func normalize(svc *Service) (request, *Error) {
	if svc.Key == "" {
		return request{}, errorf(ReasonInvalidRequest, "service has no key")
	}
	fams := slices.Clone(svc.Families)
	if len(fams) == 0 {
		fams = []Family{IPv4}
	}
	if len(fams) > 2 {
		return request{}, errorf(ReasonInvalidRequest, "service %s: %d ipFamilies given, at most 2 allowed", svc.Key, len(fams))
	}
	for i, f := range fams {
		if f != IPv4 && f != IPv6 {
			return request{}, errorf(ReasonInvalidRequest, "service %s: unknown ip family %d", svc.Key, int(f))
		}
		if i == 1 && f == fams[0] {
			return request{}, errorf(ReasonInvalidRequest, "service %s: ip family %s listed twice", svc.Key, f)
		}
	}
	switch svc.Policy {
	case SingleStack:
		fams = fams[:1]
	case PreferDualStack, RequireDualStack:
		if len(fams) == 1 {
			fams = append(fams, other(fams[0]))
		}
	default:
		return request{}, errorf(ReasonInvalidRequest, "service %s: unknown ip family policy %d", svc.Key, int(svc.Policy))
	}
	svc.Families = fams

	reqs := make([]netip.Addr, 0, len(svc.RequestedIPs))
	for _, ip := range svc.RequestedIPs {
		if !ip.IsValid() {
			return request{}, errorf(ReasonInvalidRequest, "service %s: requested address is invalid", svc.Key)
		}
		ip = ip.Unmap().WithZone("")
		for _, r := range reqs {
			if familyOf(r) == familyOf(ip) {
				return request{}, errorf(ReasonInvalidRequest, "service %s: requested addresses %s and %s are of the same family", svc.Key, r, ip)
			}
		}
		reqs = append(reqs, ip)
	}
	switch {
	case svc.Policy == SingleStack && len(reqs) > 1:
		return request{}, errorf(ReasonFamily, "service %s: SingleStack but %d addresses requested", svc.Key, len(reqs))
	case svc.Policy == SingleStack && len(reqs) == 1 && familyOf(reqs[0]) != fams[0]:
		return request{}, errorf(ReasonFamily, "service %s: requested %s but the service is SingleStack %s", svc.Key, reqs[0], fams[0])
	case svc.Policy == RequireDualStack && len(reqs) == 1:
		return request{}, errorf(ReasonFamily, "service %s: RequireDualStack needs one requested address of each family, got only %s", svc.Key, reqs[0])
	}
	svc.RequestedIPs = orderIPs(reqs, fams)
	// The allocator keeps svc; copy what a caller might mutate later.
	svc.Ports = slices.Clone(svc.Ports)
	svc.Labels = maps.Clone(svc.Labels)
	svc.NamespaceLabels = maps.Clone(svc.NamespaceLabels)
	return request{fams: fams}, nil
}

func other(f Family) Family {
	if f == IPv4 {
		return IPv6
	}
	return IPv4
}

// orderIPs returns ips sorted by the position of their family in fams.
func orderIPs(ips []netip.Addr, fams []Family) []netip.Addr {
	out := slices.Clone(ips)
	slices.SortStableFunc(out, func(x, y netip.Addr) int {
		return cmp.Compare(slices.Index(fams, familyOf(x)), slices.Index(fams, familyOf(y)))
	})
	return out
}

// currentValid reports whether cur can be kept exactly, and in which pool.
func (a *Allocator) currentValid(svc *Service, req request, cur []netip.Addr) (string, bool) {
	if len(cur) == 0 || len(cur) > 2 {
		return "", false
	}
	if len(cur) == 2 && familyOf(cur[0]) == familyOf(cur[1]) {
		return "", false
	}
	for _, ip := range cur {
		if !slices.Contains(req.fams, familyOf(ip)) {
			return "", false
		}
	}
	if svc.Policy == RequireDualStack && len(cur) != 2 {
		return "", false
	}
	if len(svc.RequestedIPs) > 0 {
		if len(svc.RequestedIPs) != len(cur) {
			return "", false
		}
		for _, ip := range cur {
			if !slices.Contains(svc.RequestedIPs, ip) {
				return "", false
			}
		}
	}
	p := a.canonicalPool(svc, cur)
	if p == "" {
		return "", false
	}
	if svc.Policy == PreferDualStack && len(cur) == 1 && a.pools[p].has(other(familyOf(cur[0]))) {
		return "", false // the pool can now give both families: upgrade
	}
	for _, ip := range cur {
		if a.conflict(svc, ip) != nil {
			return "", false
		}
	}
	return p, true
}

// canonicalPool is the pool recorded for svc holding ips: the first, in
// auto-assignment order with autoAssign pools before the others, that
// contains every address, admits svc and matches svc.Pool if set; "" if
// none. Being a pure function of its inputs, it is what Restore recomputes.
func (a *Allocator) canonicalPool(svc *Service, ips []netip.Addr) string {
	if len(ips) == 0 {
		return ""
	}
	for _, auto := range []bool{true, false} {
	pools:
		for _, p := range a.order {
			if p.AutoAssign != auto || (svc.Pool != "" && p.Name != svc.Pool) || !p.admits(svc) {
				continue
			}
			for _, ip := range ips {
				if !p.contains(ip) {
					continue pools
				}
			}
			return p.Name
		}
	}
	return ""
}

// conflict returns why svc may not hold ip alongside its current holders,
// or nil.
func (a *Allocator) conflict(svc *Service, ip netip.Addr) *Error {
	for _, k := range a.addrs[ip] {
		if k == svc.Key {
			continue
		}
		o := &a.svcs[k].svc
		var why string
		switch {
		case svc.SharingKey == "" || o.SharingKey == "":
			why = "sharing needs the same ironlb.io/allow-shared-ip on both"
		case svc.SharingKey != o.SharingKey:
			why = "sharing key differs (" + quote(svc.SharingKey) + " vs " + quote(o.SharingKey) + ")"
		case svc.BackendKey != o.BackendKey:
			why = "backend differs (externalTrafficPolicy Local needs the same selector: " + quote(svc.BackendKey) + " vs " + quote(o.BackendKey) + ")"
		default:
			if p, clash := portClash(svc.Ports, o.Ports); clash {
				why = "port clash: both use " + p.Protocol + "/" + itoa(int(p.Port))
			}
		}
		if why != "" {
			return errorf(ReasonIPInUse, "service %s: address %s is held by service %s: %s", svc.Key, ip, k, why)
		}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}

func portClash(a, b []Port) (Port, bool) {
	for _, p := range a {
		for _, q := range b {
			if p.Port == q.Port && strings.EqualFold(p.Protocol, q.Protocol) {
				return p, true
			}
		}
	}
	return Port{}, false
}

func (a *Allocator) assignRequested(svc *Service) ([]netip.Addr, *Error) {
	reqs := svc.RequestedIPs
	if svc.Pool != "" {
		if _, ok := a.pools[svc.Pool]; !ok {
			return nil, errorf(ReasonUnknownPool, "service %s: address pool %q does not exist", svc.Key, svc.Pool)
		}
	}
	var containing []*poolState
pools:
	for _, p := range a.order {
		if svc.Pool != "" && p.Name != svc.Pool {
			continue
		}
		for _, ip := range reqs {
			if !p.contains(ip) {
				continue pools
			}
		}
		containing = append(containing, p)
	}
	if len(containing) == 0 {
		where := "any address pool"
		if svc.Pool != "" {
			where = "address pool " + quote(svc.Pool)
		} else if len(reqs) == 2 {
			where = "one address pool"
		}
		return nil, errorf(ReasonNotInPool, "service %s: requested %s not in %s", svc.Key, joinIPs(reqs), where)
	}
	if !slices.ContainsFunc(containing, func(p *poolState) bool { return p.admits(svc) }) {
		return nil, errorf(ReasonPoolNotAllowed, "service %s: requested %s is in address pool %q, which does not allow it (serviceAllocation)", svc.Key, joinIPs(reqs), containing[0].Name)
	}
	for _, ip := range reqs {
		if e := a.conflict(svc, ip); e != nil {
			return nil, e
		}
	}
	return reqs, nil
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

func (a *Allocator) assignAuto(svc *Service, req request, cur []netip.Addr) ([]netip.Addr, *Error) {
	var cands []*poolState
	anyAuto := false
	for _, p := range a.order {
		if p.AutoAssign {
			anyAuto = true
			if p.admits(svc) {
				cands = append(cands, p)
			}
		}
	}
	if len(cands) == 0 {
		if anyAuto {
			return nil, errorf(ReasonPoolNotAllowed, "service %s: no auto-assign address pool allows it (serviceAllocation)", svc.Key)
		}
		return nil, errorf(ReasonPoolExhausted, "service %s: no auto-assign address pool exists", svc.Key)
	}
	// Pools where svc can keep one of its addresses or join its sharing
	// key's address go first, so reassignment moves as little as possible
	// and sharing Services land together; the order is otherwise kept.
	slices.SortStableFunc(cands, func(x, y *poolState) int {
		return cmp.Compare(a.preferenceOf(x, svc, req, cur), a.preferenceOf(y, svc, req, cur))
	})
	var family, exhausted []string
	for _, p := range cands {
		ips, e := a.allocIn(p, svc, req, cur)
		if e == nil {
			return ips, nil
		}
		if e.Reason == ReasonFamily {
			family = append(family, p.Name)
		} else {
			exhausted = append(exhausted, p.Name)
		}
	}
	if len(exhausted) > 0 {
		return nil, errorf(ReasonPoolExhausted, "service %s: no free address in address pools %s", svc.Key, quoteAll(exhausted))
	}
	return nil, errorf(ReasonFamily, "service %s: %s %s cannot be met by address pools %s", svc.Key, svc.Policy, famNames(req.fams), quoteAll(family))
}

func famNames(fs []Family) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return strings.Join(s, "/")
}

// preferenceOf is 0 if p holds a reusable current address or a compatible
// address shared under svc's key, 1 otherwise.
func (a *Allocator) preferenceOf(p *poolState, svc *Service, req request, cur []netip.Addr) int {
	for _, f := range req.fams {
		if _, ok := a.reusable(p, svc, f, cur); ok {
			return 0
		}
	}
	return 1
}

// needed returns the families svc takes from p under its policy.
func needed(p *poolState, svc *Service, req request) ([]Family, *Error) {
	switch svc.Policy {
	case SingleStack:
		if !p.has(req.fams[0]) {
			return nil, errorf(ReasonFamily, "service %s: address pool %q has no %s addresses", svc.Key, p.Name, req.fams[0])
		}
		return req.fams[:1], nil
	case RequireDualStack:
		for _, f := range req.fams {
			if !p.has(f) {
				return nil, errorf(ReasonFamily, "service %s: RequireDualStack but address pool %q has no %s addresses", svc.Key, p.Name, f)
			}
		}
		return req.fams, nil
	}
	var fs []Family
	for _, f := range req.fams {
		if p.has(f) {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil, errorf(ReasonFamily, "service %s: address pool %q has no addresses", svc.Key, p.Name)
	}
	return fs, nil
}

// allocIn picks svc's addresses from p alone.
func (a *Allocator) allocIn(p *poolState, svc *Service, req request, cur []netip.Addr) ([]netip.Addr, *Error) {
	fs, e := needed(p, svc, req)
	if e != nil {
		return nil, e
	}
	var ips []netip.Addr
	for _, f := range fs {
		ip, ok := a.reusable(p, svc, f, cur)
		if !ok {
			ip, ok = a.free(p, f)
		}
		if !ok {
			if svc.Policy == PreferDualStack {
				continue // one family is still a valid answer
			}
			return nil, errorf(ReasonPoolExhausted, "service %s: address pool %q has no free %s address", svc.Key, p.Name, f)
		}
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		return nil, errorf(ReasonPoolExhausted, "service %s: address pool %q has no free address", svc.Key, p.Name)
	}
	return ips, nil
}

// reusable finds, in p and of family f, an address svc already has in cur,
// else one shared under svc's sharing key that svc may join.
func (a *Allocator) reusable(p *poolState, svc *Service, f Family, cur []netip.Addr) (netip.Addr, bool) {
	for _, ip := range cur {
		if familyOf(ip) == f && p.contains(ip) && a.conflict(svc, ip) == nil {
			return ip, true
		}
	}
	if svc.SharingKey == "" {
		return netip.Addr{}, false
	}
	var best netip.Addr
	for ip := range a.shared[svc.SharingKey] {
		// Lowest address wins so the choice does not depend on map order.
		if familyOf(ip) == f && (!best.IsValid() || ip.Less(best)) && p.contains(ip) && a.conflict(svc, ip) == nil {
			best = ip
		}
	}
	return best, best.IsValid()
}

func (a *Allocator) used(f Family) *runs {
	if f == IPv4 {
		return &a.used4
	}
	return &a.used6
}

// free returns the lowest unused address of family f in p by jumping over
// used runs: O(log n) per run boundary crossed, independent of pool size.
func (a *Allocator) free(p *poolState, f Family) (netip.Addr, bool) {
	u := a.used(f)
	for _, s := range p.spans(f) {
		x := s.first
		for {
			var ok bool
			if x, ok = u.nextFree(x); !ok || x.Cmp(s.last) > 0 {
				break
			}
			if f == IPv4 && p.AvoidBuggyIPs && isBuggy(x.Lo) {
				var over bool
				if x, over = x.Inc(); over {
					break
				}
				continue
			}
			return pool.AddrFromValue(x, f == IPv4), true
		}
	}
	return netip.Addr{}, false
}

// commit makes svc.Key hold exactly ips.
func (a *Allocator) commit(svc Service, ips []netip.Addr, poolName string) Result {
	if old, ok := a.svcs[svc.Key]; ok {
		for _, ip := range old.ips {
			a.unhold(svc.Key, ip)
		}
	}
	a.svcs[svc.Key] = &holding{svc: svc, ips: ips, pool: poolName}
	for _, ip := range ips {
		a.hold(svc.Key, svc.SharingKey, ip)
	}
	return Result{Pool: poolName, IPs: slices.Clone(ips)}
}

func (a *Allocator) hold(key, sharingKey string, ip netip.Addr) {
	hs := a.addrs[ip]
	if len(hs) == 0 {
		a.used(familyOf(ip)).add(pool.AddrValue(ip))
		if sharingKey != "" {
			m := a.shared[sharingKey]
			if m == nil {
				m = map[netip.Addr]struct{}{}
				a.shared[sharingKey] = m
			}
			m[ip] = struct{}{}
		}
	}
	i, found := slices.BinarySearch(hs, key)
	if !found {
		hs = slices.Insert(hs, i, key)
	}
	a.addrs[ip] = hs
}

func (a *Allocator) unhold(key string, ip netip.Addr) {
	hs := a.addrs[ip]
	i, found := slices.BinarySearch(hs, key)
	if !found {
		return
	}
	hs = slices.Delete(hs, i, i+1)
	if len(hs) > 0 {
		a.addrs[ip] = hs
		return
	}
	delete(a.addrs, ip)
	a.used(familyOf(ip)).remove(pool.AddrValue(ip))
	if sk := a.svcs[key].svc.SharingKey; sk != "" {
		delete(a.shared[sk], ip)
		if len(a.shared[sk]) == 0 {
			delete(a.shared, sk)
		}
	}
}

// Release frees what key holds and returns exactly those addresses (nil if
// it held nothing). A shared address stays used while another Service
// holds it.
func (a *Allocator) Release(key string) []netip.Addr {
	h, ok := a.svcs[key]
	if !ok {
		return nil
	}
	for _, ip := range h.ips {
		a.unhold(key, ip)
	}
	delete(a.svcs, key)
	return h.ips
}

// Holds returns what key holds and whether it holds anything.
func (a *Allocator) Holds(key string) (Result, bool) {
	h, ok := a.svcs[key]
	if !ok {
		return Result{}, false
	}
	return Result{Pool: h.pool, IPs: slices.Clone(h.ips)}, true
}

// Restore holds every given Service's addresses, in the given order, as
// read back from Service statuses on a start or leader change. It is meant
// to run before any Assign so that a pending Service can never take an
// address another one still has. Addresses are held even if they are now in
// no pool (Assign moves them later). An entry that conflicts with an
// earlier one (incompatible sharing), is malformed, or repeats a key gets an
// error and holds nothing; entries with no addresses are skipped.
func (a *Allocator) Restore(held []Held) map[string]error {
	errs := map[string]error{}
	seen := map[string]bool{}
	for _, h := range held {
		svc := h.Service
		if seen[svc.Key] {
			errs[svc.Key] = errorf(ReasonInvalidRequest, "service %s: restored twice", svc.Key)
			continue
		}
		seen[svc.Key] = true
		req, e := normalize(&svc)
		if e != nil {
			errs[svc.Key] = e
			continue
		}
		var ips []netip.Addr
		for _, ip := range h.IPs {
			if !ip.IsValid() {
				e = errorf(ReasonInvalidRequest, "service %s: restored address is invalid", svc.Key)
				break
			}
			ip = ip.Unmap().WithZone("")
			if slices.ContainsFunc(ips, func(x netip.Addr) bool { return familyOf(x) == familyOf(ip) }) {
				e = errorf(ReasonInvalidRequest, "service %s: restored addresses %s hold two of one family", svc.Key, joinIPs(h.IPs))
				break
			}
			if e = a.conflict(&svc, ip); e != nil {
				break
			}
			ips = append(ips, ip)
		}
		if e != nil {
			errs[svc.Key] = e
			continue
		}
		if len(ips) == 0 {
			continue
		}
		// Families outside req.fams are kept in input order after the rest;
		// the next Assign corrects them.
		a.commit(svc, orderIPs(ips, req.fams), a.canonicalPool(&svc, ips))
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// PoolOf returns the pool containing ip, the first in auto-assignment order
// if several do.
func (a *Allocator) PoolOf(ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range a.order {
		if p.contains(ip) {
			return p.Name, true
		}
	}
	return "", false
}

// Usage counts the addresses of pool held by any Service (a shared address
// counts once, and so does an address held under an overlapping pool) and
// those still available. An unknown pool has zero usage.
func (a *Allocator) Usage(name string) Usage {
	p, ok := a.pools[name]
	if !ok {
		return Usage{}
	}
	size4, used4 := a.count(p, IPv4)
	size6, used6 := a.count(p, IPv6)
	return Usage{
		AssignedV4:  used4.Uint64(),
		AssignedV6:  used6.Uint64(),
		AvailableV4: size4.Sub(used4).Uint64(),
		AvailableV6: size6.Sub(used6).Uint64(),
	}
}

// count returns the size of p in family f and how many of its addresses
// are used, both without buggy addresses when p avoids them.
func (a *Allocator) count(p *poolState, f Family) (size, used pool.Uint128) {
	one := pool.Uint128{Lo: 1}
	avoid := f == IPv4 && p.AvoidBuggyIPs
	for _, s := range p.spans(f) {
		size = size.Add(s.last.Sub(s.first).Add(one))
		if avoid {
			size = size.Sub(pool.Uint128{Lo: buggyIn(s.first.Lo, s.last.Lo)})
		}
		a.used(f).overlapping(s.first, s.last, func(first, last pool.Uint128) {
			if first.Cmp(s.first) < 0 {
				first = s.first
			}
			if last.Cmp(s.last) > 0 {
				last = s.last
			}
			used = used.Add(last.Sub(first).Add(one))
			if avoid {
				used = used.Sub(pool.Uint128{Lo: buggyIn(first.Lo, last.Lo)})
			}
		})
	}
	return size, used
}

// Snapshot returns every holding, keyed by Service key; two allocators with
// equal snapshots hold the same addresses for the same Services in the same
// pools.
func (a *Allocator) Snapshot() map[string]Result {
	out := make(map[string]Result, len(a.svcs))
	for k, h := range a.svcs {
		out[k] = Result{Pool: h.pool, IPs: slices.Clone(h.ips)}
	}
	return out
}

// Holdings returns every holding as Restore takes it, sorted by key, so a
// new allocator can be rebuilt from this one.
func (a *Allocator) Holdings() []Held {
	out := make([]Held, 0, len(a.svcs))
	for _, k := range slices.Sorted(maps.Keys(a.svcs)) {
		h := a.svcs[k]
		out = append(out, Held{Service: h.svc, IPs: slices.Clone(h.ips)})
	}
	return out
}
