package speaker

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// TestTrimKeepsWhatASyncReads: whatever node derives from complete
// objects, it derives the same from trimmed ones.
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
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-v4", Labels: map[string]string{discoveryv1.LabelServiceName: "web",
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
	for _, node := range []string{"node1", "node2", "node3", "node4"} {
		want := deriveService(node, svc, slices)
		tsvc, _ := trimService(svc.DeepCopy())
		trimmer := newSliceTrimmer(node)
		var tslices []*discoveryv1.EndpointSlice
		for _, es := range slices {
			o, _ := trimmer.trim(es.DeepCopy())
			tslices = append(tslices, o.(*discoveryv1.EndpointSlice))
		}
		got := deriveService(node, tsvc.(*corev1.Service), tslices)
		got.obj, want.obj = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s derives from trimmed objects\n%+v\nwant %+v", node, got, want)
		}
	}
	tsvc, _ := trimService(svc.DeepCopy())
	m := tsvc.(*corev1.Service).ObjectMeta
	if m.Name != "web" || m.Namespace != "ns" || m.UID != "u1" || m.ResourceVersion != "7" || len(m.ManagedFields) != 0 ||
		!reflect.DeepEqual(m.Annotations, map[string]string{v1beta1.AnnotationAllocatedFromPool: "lan"}) || m.Labels != nil {
		t.Errorf("trimmed Service metadata %+v: want its identity and IronLB's annotation only", m)
	}
	// A ClusterIP Service keeps only who it is and its type.
	cip := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: svc.Spec.Ports, Selector: map[string]string{"x": "y"}}}
	o, _ := trimService(cip)
	if want := (&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}); !reflect.DeepEqual(o, want) {
		t.Errorf("trimmed ClusterIP Service %+v", o)
	}
}
