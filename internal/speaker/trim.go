package speaker

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// The informer cache holds every Service and EndpointSlice of the
// cluster, and the speaker reads a few fields of each: the trims below
// keep only those, so that 10,000 Services do not weigh what 10,000
// complete objects weigh. They run before an object enters the cache, so
// nothing in the speaker ever sees more; what they keep is all a sync
// reads (see deriveService) and what an Event needs to name its object.

// trimMeta keeps what identifies an object (for Events and status
// writes), and the labels and annotations named.
func trimMeta(m *metav1.ObjectMeta, keepLabel func(string) bool, keepAnnotation func(string) bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, DeletionTimestamp: m.DeletionTimestamp,
	}
	out.Labels = keep(m.Labels, keepLabel)
	out.Annotations = keep(m.Annotations, keepAnnotation)
	return out
}

func keep(m map[string]string, ok func(string) bool) map[string]string {
	var out map[string]string
	for k, v := range m {
		if ok != nil && ok(k) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// trimService keeps of a Service its identity, its type, and, for a
// LoadBalancer, its ports, traffic policy, addresses and IronLB's
// annotations.
func trimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &corev1.Service{TypeMeta: svc.TypeMeta, Spec: corev1.ServiceSpec{Type: svc.Spec.Type}}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		out.ObjectMeta = trimMeta(&svc.ObjectMeta, nil, nil)
		return out, nil
	}
	out.ObjectMeta = trimMeta(&svc.ObjectMeta, nil, func(k string) bool { return strings.HasPrefix(k, v1beta1.GroupVersion.Group+"/") })
	out.Spec.ExternalTrafficPolicy = svc.Spec.ExternalTrafficPolicy
	out.Spec.Ports = make([]corev1.ServicePort, len(svc.Spec.Ports))
	for i, p := range svc.Spec.Ports {
		out.Spec.Ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port}
	}
	out.Status.LoadBalancer = svc.Status.LoadBalancer
	return out, nil
}

// sliceTrimmer trims EndpointSlices for one node: it keeps each ready
// endpoint on the node with its first address (the only one consumers may
// use), and of the endpoints on other nodes only one per node that is
// ready, without addresses: that the node has one is all the election and
// the routes ask. Node names are shared between slices.
type sliceTrimmer struct {
	node string

	mu    sync.Mutex
	names map[string]*string
}

func newSliceTrimmer(node string) *sliceTrimmer {
	return &sliceTrimmer{node: node, names: map[string]*string{}}
}

// isReady is the one Ready condition every trimmed endpoint points to.
var isReady = ptr(true)

func (t *sliceTrimmer) trim(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &discoveryv1.EndpointSlice{
		TypeMeta:    es.TypeMeta,
		ObjectMeta:  trimMeta(&es.ObjectMeta, func(k string) bool { return k == discoveryv1.LabelServiceName }, nil),
		AddressType: es.AddressType,
		Ports:       es.Ports,
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Room for all, then exactly what is kept: growing by appends would
	// leave half the space of a 10-endpoint slice unused.
	out.Endpoints = make([]discoveryv1.Endpoint, 0, len(es.Endpoints))
	for _, ep := range es.Endpoints {
		if ep.NodeName == nil || *ep.NodeName == "" || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
			continue
		}
		name := t.name(*ep.NodeName)
		if *name != t.node {
			if !containsNode(out.Endpoints, *name) {
				out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{NodeName: name, Conditions: discoveryv1.EndpointConditions{Ready: isReady}})
			}
			continue
		}
		if len(ep.Addresses) == 0 {
			continue
		}
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
			Addresses: ep.Addresses[:1:1], NodeName: name, Conditions: discoveryv1.EndpointConditions{Ready: isReady},
		})
	}
	if len(out.Endpoints) < cap(out.Endpoints) {
		out.Endpoints = slices.Clone(out.Endpoints)
	}
	return out, nil
}

// name is the shared copy of a node name. Names of nodes long gone stay:
// a few bytes each.
func (t *sliceTrimmer) name(n string) *string {
	p, ok := t.names[n]
	if !ok {
		p = &n
		t.names[n] = p
	}
	return p
}

func containsNode(eps []discoveryv1.Endpoint, node string) bool {
	for _, ep := range eps {
		if *ep.NodeName == node {
			return true
		}
	}
	return false
}

// trimL2Status drops the labels of a ServiceL2Status (they find a
// Service's statuses with kubectl; the speaker reads the status).
func trimL2Status(obj any) (any, error) {
	st, ok := obj.(*v1beta1.ServiceL2Status)
	if !ok {
		return obj, nil
	}
	out := &v1beta1.ServiceL2Status{TypeMeta: st.TypeMeta, ObjectMeta: trimMeta(&st.ObjectMeta, nil, nil), Status: st.Status}
	return out, nil
}
