package speaker

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/forwarding"
)

// service is what a sync needs of one LoadBalancer Service that has an
// address: derived from the Service and its EndpointSlices alone, so it
// changes only when they do.
type service struct {
	key string
	// obj is the cache's own object, for Events: never change it.
	obj   *corev1.Service
	ips   []netip.Addr
	pool  string
	local bool
	// ready are the nodes with a ready endpoint, sorted.
	ready []string
	// rules forward its addresses to this node's own ready endpoints.
	rules []forwarding.Rule
}

// deriveService is what node makes of svc and its slices; nil when svc is
// not a LoadBalancer with an address. Pure.
func deriveService(node string, svc *corev1.Service, eps []*discoveryv1.EndpointSlice) *service {
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	ips := ingressIPs(svc)
	if len(ips) == 0 {
		return nil
	}
	return &service{
		key:   svc.Namespace + "/" + svc.Name,
		obj:   svc,
		ips:   ips,
		pool:  svc.Annotations[v1beta1.AnnotationAllocatedFromPool],
		local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		ready: readyNodes(eps),
		rules: forwarding.ForService(node, svc, eps),
	}
}

// sliceService is the Service (namespace/name) an EndpointSlice belongs to.
func sliceService(es *discoveryv1.EndpointSlice) (string, bool) {
	name := es.Labels[discoveryv1.LabelServiceName]
	return es.Namespace + "/" + name, name != ""
}

// readyNodes are the sorted nodes that hold at least one ready endpoint
// in eps. A nil ready condition counts as ready, as the EndpointSlice API
// says it should.
func readyNodes(eps []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, es := range eps {
		for _, ep := range es.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if !slices.Contains(out, *ep.NodeName) {
				out = append(out, *ep.NodeName)
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
	node string

	mu     sync.Mutex
	svcs   map[string]*corev1.Service
	slices map[string]map[string]*discoveryv1.EndpointSlice // by Service, then namespace/name
	owner  map[string]string                                // slice namespace/name to its Service
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

func newStore(node string) *store {
	return &store{
		node: node, svcs: map[string]*corev1.Service{}, slices: map[string]map[string]*discoveryv1.EndpointSlice{},
		owner: map[string]string{}, dirty: map[string]bool{}, derived: map[string]*service{},
	}
}

// serviceHandler and sliceHandler feed the store from informers.
func (st *store) serviceHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { st.setService(obj, false) },
		UpdateFunc: func(_, obj any) { st.setService(obj, false) },
		DeleteFunc: func(obj any) { st.setService(obj, true) },
	}
}

func (st *store) sliceHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { st.setSlice(obj, false) },
		UpdateFunc: func(_, obj any) { st.setSlice(obj, false) },
		DeleteFunc: func(obj any) { st.setSlice(obj, true) },
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
	svc, ok := unwrap(obj).(*corev1.Service)
	if !ok {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	st.mu.Lock()
	defer st.mu.Unlock()
	if deleted {
		delete(st.svcs, key)
	} else {
		st.svcs[key] = svc
	}
	st.dirty[key] = true
}

func (st *store) setSlice(obj any, deleted bool) {
	es, ok := unwrap(obj).(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := es.Namespace + "/" + es.Name
	key, labelled := sliceService(es)
	st.mu.Lock()
	defer st.mu.Unlock()
	// A slice relabelled to another Service leaves the first one.
	if old, had := st.owner[name]; had && (deleted || old != key) {
		delete(st.slices[old], name)
		if len(st.slices[old]) == 0 {
			delete(st.slices, old)
		}
		delete(st.owner, name)
		st.dirty[old] = true
	}
	if deleted || !labelled {
		return
	}
	if st.slices[key] == nil {
		st.slices[key] = map[string]*discoveryv1.EndpointSlice{}
	}
	st.slices[key][name] = es
	st.owner[name] = key
	st.dirty[key] = true
}

// services derives again what changed since the last call and returns
// every LoadBalancer Service with an address, by key, and whether what
// the election reads of them changed. The map is the store's: the caller
// reads it until its next call and never changes it.
func (st *store) services() (map[string]*service, bool) {
	st.mu.Lock()
	type change struct {
		svc *corev1.Service
		eps []*discoveryv1.EndpointSlice
	}
	changes := make(map[string]change, len(st.dirty))
	for key := range st.dirty {
		c := change{svc: st.svcs[key]}
		for _, es := range st.slices[key] {
			c.eps = append(c.eps, es)
		}
		changes[key] = c
	}
	clear(st.dirty)
	st.mu.Unlock()

	elect := false
	for key, c := range changes {
		old := st.derived[key]
		sv := deriveService(st.node, c.svc, c.eps)
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
	return a.key == b.key && a.pool == b.pool && a.local == b.local && slices.Equal(a.ips, b.ips) && slices.Equal(a.ready, b.ready)
}
