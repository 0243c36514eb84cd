package allocator

import "github.com/ironlb/ironlb/internal/pool"

// runs is the set of used addresses of one family, kept as maximal runs of
// consecutive addresses in a treap ordered by the first address. Adjacent
// runs are always merged, so the address after the run covering x is free:
// finding the next free address is one O(log n) descent however many
// addresses a pool has, and memory grows with the number of runs, never with
// pool size.
type runs struct {
	root *run
	n    int // number of runs
}

type run struct {
	first, last pool.Uint128
	prio        uint64 // max-heap key; a hash of first so the tree shape is deterministic
	left, right *run
}

func prioOf(u pool.Uint128) uint64 {
	// splitmix64 finaliser: consecutive addresses get unrelated priorities,
	// which keeps the treap balanced for sequential allocation.
	z := u.Lo ^ (u.Hi * 0x9e3779b97f4a7c15)
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// floor returns the run with the greatest first <= x, or nil.
func (s *runs) floor(x pool.Uint128) *run {
	var best *run
	for n := s.root; n != nil; {
		if n.first.Cmp(x) <= 0 {
			best = n
			n = n.right
		} else {
			n = n.left
		}
	}
	return best
}

// find returns the run whose first is exactly x, or nil.
func (s *runs) find(x pool.Uint128) *run {
	for n := s.root; n != nil; {
		switch c := x.Cmp(n.first); {
		case c == 0:
			return n
		case c < 0:
			n = n.left
		default:
			n = n.right
		}
	}
	return nil
}

// has reports whether x is used.
func (s *runs) has(x pool.Uint128) bool {
	r := s.floor(x)
	return r != nil && x.Cmp(r.last) <= 0
}

// nextFree returns the smallest unused address >= x, and false if there is
// none below 2^128.
func (s *runs) nextFree(x pool.Uint128) (pool.Uint128, bool) {
	r := s.floor(x)
	if r == nil || x.Cmp(r.last) > 0 {
		return x, true
	}
	// Runs are maximal, so r.last+1 is not used.
	next, overflow := r.last.Inc()
	return next, !overflow
}

// add marks x used, merging it with its neighbours; it reports false if x
// was already used.
func (s *runs) add(x pool.Uint128) bool {
	var left *run
	if prev, under := x.Dec(); !under {
		left = s.floor(prev)
		if left != nil && x.Cmp(left.last) <= 0 {
			return false // x is inside left
		}
		if left != nil && left.last != prev {
			left = nil
		}
	}
	var right *run
	if next, over := x.Inc(); !over {
		right = s.find(next)
	}
	switch {
	case left != nil && right != nil:
		left.last = right.last
		s.delete(right.first)
	case left != nil:
		left.last = x
	case right != nil:
		// Moving the key down by one keeps the order: no run starts at x.
		right.first = x
	default:
		s.insert(&run{first: x, last: x, prio: prioOf(x)})
	}
	return true
}

// remove marks x unused, splitting its run if needed; it reports false if
// x was not used.
func (s *runs) remove(x pool.Uint128) bool {
	r := s.floor(x)
	if r == nil || x.Cmp(r.last) > 0 {
		return false
	}
	switch {
	case r.first == x && r.last == x:
		s.delete(x)
	case r.first == x:
		r.first, _ = x.Inc() // order kept: the next run starts after r.last
	case r.last == x:
		r.last, _ = x.Dec()
	default:
		tail, _ := x.Inc()
		last := r.last
		r.last, _ = x.Dec()
		s.insert(&run{first: tail, last: last, prio: prioOf(tail)})
	}
	return true
}

func (s *runs) insert(nr *run) {
	s.root = insertRun(s.root, nr)
	s.n++
}

func insertRun(n, nr *run) *run {
	if n == nil {
		return nr
	}
	if nr.first.Cmp(n.first) < 0 {
		n.left = insertRun(n.left, nr)
		if n.left.prio > n.prio {
			n = rotateRight(n)
		}
	} else {
		n.right = insertRun(n.right, nr)
		if n.right.prio > n.prio {
			n = rotateLeft(n)
		}
	}
	return n
}

func (s *runs) delete(first pool.Uint128) {
	s.root = deleteRun(s.root, first)
	s.n--
}

func deleteRun(n *run, first pool.Uint128) *run {
	if n == nil {
		return nil
	}
	switch c := first.Cmp(n.first); {
	case c < 0:
		n.left = deleteRun(n.left, first)
	case c > 0:
		n.right = deleteRun(n.right, first)
	default:
		return joinRuns(n.left, n.right)
	}
	return n
}

// joinRuns merges two treaps whose keys are all ordered l < r.
func joinRuns(l, r *run) *run {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = joinRuns(l.right, r)
		return l
	default:
		r.left = joinRuns(l, r.left)
		return r
	}
}

func rotateRight(n *run) *run {
	l := n.left
	n.left, l.right = l.right, n
	return l
}

func rotateLeft(n *run) *run {
	r := n.right
	n.right, r.left = r.left, n
	return r
}

// overlapping calls fn for each run intersecting [lo, hi], in order.
func (s *runs) overlapping(lo, hi pool.Uint128, fn func(first, last pool.Uint128)) {
	var walk func(n *run)
	walk = func(n *run) {
		if n == nil {
			return
		}
		// Runs are disjoint and sorted, so a run ending before lo has only
		// earlier runs on its left, and one starting after hi only later
		// runs on its right.
		if n.last.Cmp(lo) >= 0 {
			walk(n.left)
		}
		if n.last.Cmp(lo) >= 0 && n.first.Cmp(hi) <= 0 {
			fn(n.first, n.last)
		}
		if n.first.Cmp(hi) <= 0 {
			walk(n.right)
		}
	}
	walk(s.root)
}
