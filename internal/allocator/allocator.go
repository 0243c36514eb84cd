package allocator

import (
	"net/netip"
)

// Allocator holds the addresses of every Service. It is not safe for
// concurrent use: the controller owns it from one goroutine.
type Allocator struct {
	pools []Pool
}

// New returns an allocator over pools, holding nothing.
func New(pools []Pool) *Allocator {
	a := &Allocator{}
	a.SetPools(pools)
	return a
}

// SetPools replaces the pools. Held addresses stay held even if now outside
// every pool: the next Assign of their Service moves them.
func (a *Allocator) SetPools(pools []Pool) { a.pools = pools }

// Assign gives svc its addresses, keeping current if still valid.
func (a *Allocator) Assign(svc Service, current []netip.Addr) (Result, error) {
	return Result{}, errorf(ReasonInvalidRequest, "not implemented")
}

// Release frees what key holds and returns exactly those addresses.
func (a *Allocator) Release(key string) []netip.Addr { return nil }

// Holds returns what key holds.
func (a *Allocator) Holds(key string) (Result, bool) { return Result{}, false }

// Restore holds every given Service's addresses in order.
func (a *Allocator) Restore(held []Held) map[string]error { return nil }

// PoolOf returns a pool containing ip.
func (a *Allocator) PoolOf(ip netip.Addr) (string, bool) { return "", false }

// Usage counts the addresses of one pool.
func (a *Allocator) Usage(pool string) Usage { return Usage{} }

// Snapshot returns the canonical state.
func (a *Allocator) Snapshot() map[string]Result { return nil }

// Overlaps lists addresses shared by two pools.
func Overlaps(pools []Pool) []Overlap { return nil }
