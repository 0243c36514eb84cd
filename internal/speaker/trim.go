package speaker

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/forwarding"
)

// The informer cache holds every Service and EndpointSlice of the
// cluster, and a sync reads a few fields of each. So the cache does not
// keep API objects for them: the trims below turn each object, before it
// enters the cache, into a small value holding what a sync reads (see
// deriveService), already parsed, and what identifies it for the
// informer and for Events. At 10,000 Services of 10 endpoints that is
// about a fifth of what even trimmed API objects weighed. ServiceL2Status
// objects become l2Status values the same way (l2status.go).

// cachedService is what the cache keeps of a Service.
type cachedService struct {
	// Service has the Service's key; its addresses and ports only for a
	// LoadBalancer.
	forwarding.Service
	uid types.UID
	// rv is the resource version: the informer tells an update from a
	// resync by it.
	rv    string
	lb    bool
	local bool
	// pool is the pool the controller allocated from (interned).
	pool string
}

// GetObjectMeta makes what the informer reads of an object: its name and
// resource version.
func (s *cachedService) GetObjectMeta() metav1.Object {
	ns, name, _ := strings.Cut(s.Key, "/")
	return &metav1.ObjectMeta{Namespace: ns, Name: name, UID: s.uid, ResourceVersion: s.rv}
}

// ref is the Service's reference for Events.
func (s *cachedService) ref() *corev1.ObjectReference {
	ns, name, _ := strings.Cut(s.Key, "/")
	return &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name, UID: s.uid, ResourceVersion: s.rv}
}

// cachedSlice is what the cache keeps of an EndpointSlice, read for one
// node.
type cachedSlice struct {
	// Endpoints are the slice's ports and its ready endpoints on the node.
	forwarding.Endpoints
	// key is the slice's namespace/name; service its Service's, "" when
	// it has no service-name label.
	key, service string
	rv           string
	// ready are the nodes with a ready endpoint of any address type,
	// sorted and distinct (interned).
	ready []string
}

func (s *cachedSlice) GetObjectMeta() metav1.Object {
	ns, name, _ := strings.Cut(s.key, "/")
	return &metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: s.rv}
}

// trimmer turns Services and EndpointSlices into what the cache keeps,
// for one node. Node and pool names, repeated in thousands of objects,
// are kept once.
type trimmer struct {
	node string

	mu      sync.Mutex
	strings map[string]string
}

func newTrimmer(node string) *trimmer {
	return &trimmer{node: node, strings: map[string]string{}}
}

// intern is the shared copy of s. Names of nodes and pools long gone
// stay: a few bytes each.
func (t *trimmer) intern(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.strings[s]; ok {
		return c
	}
	t.strings[s] = s
	return s
}

// service is the informer transform for Services. Other objects pass
// unchanged (the informer may hand back what it already trimmed).
func (t *trimmer) service(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	fs, lb := forwarding.ServiceOf(svc)
	out := &cachedService{Service: fs, uid: svc.UID, rv: svc.ResourceVersion, lb: lb}
	if lb {
		out.local = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		out.pool = t.intern(svc.Annotations[v1beta1.AnnotationAllocatedFromPool])
	}
	return out, nil
}

// slice is the informer transform for EndpointSlices.
func (t *trimmer) slice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &cachedSlice{Endpoints: forwarding.EndpointsOf(t.node, es), key: es.Namespace + "/" + es.Name, rv: es.ResourceVersion}
	if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
		out.service = es.Namespace + "/" + name
	}
	// A nil ready condition counts as ready, as the API says it should.
	for _, ep := range es.Endpoints {
		if ep.NodeName == nil || *ep.NodeName == "" || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
			continue
		}
		if !slices.Contains(out.ready, *ep.NodeName) {
			out.ready = append(out.ready, t.intern(*ep.NodeName))
		}
	}
	slices.Sort(out.ready)
	out.ready = slices.Clip(out.ready)
	return out, nil
}

// l2Status is the informer transform for ServiceL2Status.
func (t *trimmer) l2Status(obj any) (any, error) {
	st, ok := obj.(*v1beta1.ServiceL2Status)
	if !ok {
		return obj, nil
	}
	return l2StatusOf(st, t.intern), nil
}
