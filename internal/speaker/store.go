package speaker

import (
	"slices"
	"sync"
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// service is what a sync needs of one LoadBalancer Service that has an
// address: derived from the Service and its EndpointSlices alone, so it
// changes only when they do.
type service struct {
	// cachedService is the cache's own value: never change it.
	*cachedService
	// ready are the nodes with a ready endpoint, sorted.
	ready []string
	// rules forward its addresses to this node's own ready endpoints.
	rules []forwarding.Rule
}

// deriveService is what a node makes of svc and its slices, as its cache
// keeps them; nil when svc is not a LoadBalancer with an address. Pure.
func deriveService(svc *cachedService, eps []*cachedSlice) *service {
	if svc == nil || !svc.lb || len(svc.IPs) == 0 {
		return nil
	}
	fwd := make([]*forwarding.Endpoints, len(eps))
	for i, es := range eps {
		fwd[i] = &es.Endpoints
	}
	return &service{cachedService: svc, ready: readyNodes(eps), rules: forwarding.ForService(svc.Service, fwd)}
}

// readyNodes are the sorted nodes that hold at least one ready endpoint
// in eps: shared with the slice when there is one.
func readyNodes(eps []*cachedSlice) []string {
	if len(eps) == 1 {
		return eps[0].ready
	}
	var out []string
	for _, es := range eps {
		for _, n := range es.ready {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// store keeps the Services and EndpointSlices the informers deliver, by
// Service, and derives each Service again only when it or one of its
// slices changed: a sync at 10,000 Services then costs in proportion to
// what changed, not to everything there is. The informers' handlers write
// it; the sync loop reads it.
type store struct {
	mu     sync.Mutex
	svcs   map[string]*cachedService
	slices map[string][]*cachedSlice // by Service
	dirty  map[string]bool

	// derived is the sync loop's alone.
	derived map[string]*service

	// config counts changes to the other objects the election reads
	// (nodes, speaker Pods, pools, L2Advertisements): with the Services'
	// own election fields unchanged too, the last election still holds.
	config atomic.Uint64
}

// configChanged records a change to an object the election reads other
// than a Service or an EndpointSlice.
func (st *store) configChanged() { st.config.Add(1) }

// configGeneration counts those changes.
func (st *store) configGeneration() uint64 { return st.config.Load() }

func newStore() *store {
	return &store{svcs: map[string]*cachedService{}, slices: map[string][]*cachedSlice{}, dirty: map[string]bool{}, derived: map[string]*service{}}
}

// serviceHandler and sliceHandler feed the store from the informers,
// whose transforms made the cached values.
func (st *store) serviceHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { st.setService(obj, false) },
		UpdateFunc: func(_, obj any) { st.setService(obj, false) },
		DeleteFunc: func(obj any) { st.setService(obj, true) },
	}
}

func (st *store) sliceHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { st.setSlice(nil, obj) },
		UpdateFunc: func(old, obj any) { st.setSlice(old, obj) },
		DeleteFunc: func(obj any) { st.setSlice(obj, nil) },
	}
}

// unwrap sees through the tombstone of an object deleted while the watch
// was down.
func unwrap(obj any) any {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (st *store) setService(obj any, deleted bool) {
	svc, ok := unwrap(obj).(*cachedService)
	if !ok {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if deleted {
		delete(st.svcs, svc.Key)
	} else {
		st.svcs[svc.Key] = svc
	}
	st.dirty[svc.Key] = true
}

// setSlice replaces old (nil when added) with es (nil when deleted): the
// informer hands over the value it cached before, so a slice relabelled
// to another Service leaves the first one.
func (st *store) setSlice(old, es any) {
	o, _ := unwrap(old).(*cachedSlice)
	n, _ := es.(*cachedSlice)
	st.mu.Lock()
	defer st.mu.Unlock()
	if o != nil && o.service != "" && (n == nil || n.service != o.service) {
		list := slices.DeleteFunc(st.slices[o.service], func(e *cachedSlice) bool { return e.key == o.key })
		if len(list) == 0 {
			delete(st.slices, o.service)
		} else {
			st.slices[o.service] = list
		}
		st.dirty[o.service] = true
	}
	if n == nil || n.service == "" {
		return
	}
	list := st.slices[n.service]
	if i := slices.IndexFunc(list, func(e *cachedSlice) bool { return e.key == n.key }); i >= 0 {
		list[i] = n
	} else {
		st.slices[n.service] = append(list, n)
	}
	st.dirty[n.service] = true
}

// services derives again what changed since the last call and returns
// every LoadBalancer Service with an address, by key, and whether what
// the election reads of them changed. The map is the store's: the caller
// reads it until its next call and never changes it.
func (st *store) services() (map[string]*service, bool) {
	st.mu.Lock()
	type change struct {
		svc *cachedService
		eps []*cachedSlice
	}
	// The lists are copied: setSlice changes them in place.
	changes := make(map[string]change, len(st.dirty))
	for key := range st.dirty {
		changes[key] = change{svc: st.svcs[key], eps: slices.Clone(st.slices[key])}
	}
	clear(st.dirty)
	st.mu.Unlock()

	elect := false
	for key, c := range changes {
		old := st.derived[key]
		sv := deriveService(c.svc, c.eps)
		if sv != nil {
			st.derived[key] = sv
		} else {
			delete(st.derived, key)
		}
		elect = elect || !sameElection(old, sv)
	}
	return st.derived, elect
}

// sameElection says whether the election reads the same of a and b.
func sameElection(a, b *service) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key && a.pool == b.pool && a.local == b.local && slices.Equal(a.IPs, b.IPs) && slices.Equal(a.ready, b.ready)
}
