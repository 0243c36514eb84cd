package speaker

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

func TestStore(t *testing.T) {
	apiLB := func(name, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}}}
	}
	t1 := newTrimmer("node1")
	lb := func(name, ip string) *cachedService { return trimmed[*cachedService](t1.service(apiLB(name, ip))) }
	es := func(name, svc, node, ip string) *cachedSlice {
		return trimmed[*cachedSlice](t1.slice(&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr(int32(8080))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, NodeName: ptr(node)}},
		}))
	}
	st := newStore()
	svcH, sliceH := st.serviceHandler(), st.sliceHandler()
	svcH.OnAdd(lb("a", "192.0.2.1"), true)
	svcH.OnAdd(lb("b", "192.0.2.2"), true)
	svcH.OnAdd(trimmed[*cachedService](t1.service(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cip"}})), true)
	sliceH.OnAdd(es("a-1", "a", "node1", "10.0.0.1"), true)
	sliceH.OnAdd(es("a-2", "a", "node2", "10.0.0.2"), true)
	sliceH.OnAdd(es("b-1", "b", "node1", "10.0.0.3"), true)

	got, elect := st.services()
	if !elect {
		t.Error("the first Services changed nothing the election reads")
	}
	if len(got) != 2 || got["ns/cip"] != nil {
		t.Fatalf("services = %v, want ns/a and ns/b: a ClusterIP Service is not derived", got)
	}
	a, b := got["ns/a"], got["ns/b"]
	if !slices.Equal(a.ready, []string{"node1", "node2"}) || len(a.rules) != 1 ||
		!slices.Equal(a.rules[0].Endpoints, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080")}) {
		t.Errorf("ns/a = %+v: want ready on node1 and node2, forwarded to its node1 endpoint only", a)
	}

	// A slice moving from b to a changes both, and only them.
	sliceH.OnUpdate(es("b-1", "b", "node1", "10.0.0.3"), es("b-1", "a", "node3", "10.0.0.3"))
	got, elect = st.services()
	if !elect {
		t.Error("ready nodes changed, but not for the election")
	}
	if got["ns/b"] == b || len(got["ns/b"].ready) != 0 || len(got["ns/b"].rules) != 0 {
		t.Errorf("ns/b after its slice left: %+v, want derived again with no endpoints", got["ns/b"])
	}
	if !slices.Equal(got["ns/a"].ready, []string{"node1", "node2", "node3"}) {
		t.Errorf("ns/a ready = %v after b-1 joined it, want node1..3", got["ns/a"].ready)
	}
	a = got["ns/a"]
	sliceH.OnAdd(es("other", "c", "node1", "10.0.0.9"), false)
	if got, elect = st.services(); got["ns/a"] != a || elect {
		t.Errorf("ns/a was derived again (%v) or the election told of a change (%v), though nothing of it changed", got["ns/a"] != a, elect)
	}
	// A new address on node1, which already had one: the forwarding
	// rules change, the election's input does not.
	sliceH.OnAdd(es("a-3", "a", "node1", "10.0.0.7"), false)
	if got, elect = st.services(); elect || len(got["ns/a"].rules[0].Endpoints) != 2 {
		t.Errorf("another endpoint on node1: election changed %v, rules %v", elect, got["ns/a"].rules)
	}

	// Deletions, including one seen only as a tombstone.
	sliceH.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ns/a-1", Obj: es("a-1", "a", "node1", "10.0.0.1")})
	sliceH.OnDelete(es("a-3", "a", "node1", "10.0.0.7"))
	if got, _ = st.services(); !slices.Equal(got["ns/a"].ready, []string{"node2", "node3"}) || len(got["ns/a"].rules) != 0 {
		t.Errorf("ns/a after a-1 was deleted: %+v", got["ns/a"])
	}
	svcH.OnDelete(lb("a", "192.0.2.1"))
	if got, elect = st.services(); got["ns/a"] != nil || len(got) != 1 || !elect {
		t.Errorf("services after ns/a was deleted: %v", got)
	}
}

// trimmed is what an informer transform made.
func trimmed[T any](obj any, err error) T {
	if err != nil {
		panic(err)
	}
	return obj.(T)
}

// deriveServices derives every Service in lists as node's cache keeps
// them, as the store does one by one: the tests' and benchmarks' way to a
// snapshot's services.
func deriveServices(node string, svcs []corev1.Service, eps []discoveryv1.EndpointSlice) map[string]*service {
	t := newTrimmer(node)
	byService := map[string][]*cachedSlice{}
	for i := range eps {
		if es := trimmed[*cachedSlice](t.slice(&eps[i])); es.service != "" {
			byService[es.service] = append(byService[es.service], es)
		}
	}
	out := map[string]*service{}
	for i := range svcs {
		svc := trimmed[*cachedService](t.service(&svcs[i]))
		if sv := deriveService(svc, byService[svc.Key]); sv != nil {
			out[svc.Key] = sv
		}
	}
	return out
}
