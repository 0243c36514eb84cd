package speaker

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/forwarding"
)

// TestTrimKeepsWhatASyncReads: what the cache keeps of complete objects
// derives, on every node, what those objects say.
func TestTrimKeepsWhatASyncReads(t *testing.T) {
	yes, no := true, false
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{"app": "web"},
			Annotations:   map[string]string{v1beta1.AnnotationAllocatedFromPool: "lan", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web"), NodePort: 30080},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}, {IP: "2001:db8::1"}}}},
	}
	ports := []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)},
		{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)}}
	endpoint := func(node string, ready *bool, addrs ...string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: addrs, NodeName: ptr(node), Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "web-" + node}, Hostname: ptr("h"), Zone: ptr("z")}
	}
	slices := []*discoveryv1.EndpointSlice{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-v4", ResourceVersion: "3", Labels: map[string]string{discoveryv1.LabelServiceName: "web",
			"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports,
		Endpoints: []discoveryv1.Endpoint{
			endpoint("node1", &yes, "10.244.1.2", "10.244.1.99"), endpoint("node1", nil, "10.244.1.3"), endpoint("node1", &no, "10.244.1.4"),
			endpoint("node2", &yes, "10.244.2.2"), endpoint("node2", &yes, "10.244.2.3"), endpoint("node3", &no, "10.244.3.2"),
			{Addresses: []string{"10.244.9.9"}}, // no node
		},
	}, {
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-v6", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv6, Ports: ports,
		Endpoints: []discoveryv1.Endpoint{endpoint("node1", &yes, "fd00:244:1::2"), endpoint("node3", nil, "fd00:244:3::2")},
	}}
	rule := func(vip, proto string, port uint16, eps ...string) forwarding.Rule {
		r := forwarding.Rule{Key: forwarding.Key{VIP: netip.MustParseAddr(vip), Protocol: forwarding.Protocol(proto), Port: port}, Service: "ns/web"}
		for _, e := range eps {
			r.Endpoints = append(r.Endpoints, netip.MustParseAddrPort(e))
		}
		return r
	}
	// Each node forwards to its own ready endpoints only (a nil condition
	// is ready), by the first address; every node sees the same ready
	// nodes, of both families.
	wantRules := map[string][]forwarding.Rule{
		"node1": {rule("192.0.2.1", "tcp", 80, "10.244.1.2:8080", "10.244.1.3:8080"), rule("192.0.2.1", "udp", 53, "10.244.1.2:5353", "10.244.1.3:5353"),
			rule("2001:db8::1", "tcp", 80, "[fd00:244:1::2]:8080"), rule("2001:db8::1", "udp", 53, "[fd00:244:1::2]:5353")},
		"node2": {rule("192.0.2.1", "tcp", 80, "10.244.2.2:8080", "10.244.2.3:8080"), rule("192.0.2.1", "udp", 53, "10.244.2.2:5353", "10.244.2.3:5353")},
		"node3": {rule("2001:db8::1", "tcp", 80, "[fd00:244:3::2]:8080"), rule("2001:db8::1", "udp", 53, "[fd00:244:3::2]:5353")},
		"node4": nil,
	}
	for node, want := range wantRules {
		t1 := newTrimmer(node)
		csvc := trimmed[*cachedService](t1.service(svc.DeepCopy()))
		var cslices []*cachedSlice
		for _, es := range slices {
			cslices = append(cslices, trimmed[*cachedSlice](t1.slice(es.DeepCopy())))
		}
		got := deriveService(csvc, cslices)
		if got.Key != "ns/web" || got.pool != "lan" || !got.local || !reflect.DeepEqual(got.IPs, []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}) {
			t.Errorf("%s derives key %q pool %q local %v addresses %v", node, got.Key, got.pool, got.local, got.IPs)
		}
		if !reflect.DeepEqual(got.ready, []string{"node1", "node2", "node3"}) {
			t.Errorf("%s: ready nodes %v, want node1..3", node, got.ready)
		}
		if !reflect.DeepEqual(got.rules, want) {
			t.Errorf("%s forwards\n%v\nwant %v", node, got.rules, want)
		}
	}

	// The informer keys and versions what the cache keeps as it would the
	// objects; Events name the Service.
	t1 := newTrimmer("node1")
	csvc := trimmed[*cachedService](t1.service(svc.DeepCopy()))
	cslice := trimmed[*cachedSlice](t1.slice(slices[0].DeepCopy()))
	for _, c := range []struct {
		obj     any
		key, rv string
	}{{csvc, "ns/web", "7"}, {cslice, "ns/web-v4", "3"}} {
		key, err := toolscache.MetaNamespaceKeyFunc(c.obj)
		m, merr := meta.Accessor(c.obj)
		if err != nil || merr != nil || key != c.key || m.GetResourceVersion() != c.rv {
			t.Errorf("informer reads %T as key %q (%v), version %v (%v); want %s at %s", c.obj, key, err, m, merr, c.key, c.rv)
		}
	}
	if ref := csvc.ref(); ref.Kind != "Service" || ref.APIVersion != "v1" || ref.Namespace != "ns" || ref.Name != "web" || ref.UID != "u1" {
		t.Errorf("Event reference %+v", ref)
	}
	// A ClusterIP Service is kept as who it is, and derives nothing.
	cip := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Annotations: map[string]string{v1beta1.AnnotationAllocatedFromPool: "lan"}},
		Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: svc.Spec.Ports, Selector: map[string]string{"x": "y"}},
		Status: svc.Status}
	if c := trimmed[*cachedService](t1.service(cip)); !reflect.DeepEqual(c, &cachedService{Service: forwarding.Service{Key: "ns/db"}}) || deriveService(c, nil) != nil {
		t.Errorf("trimmed ClusterIP Service %+v", c)
	}
}
