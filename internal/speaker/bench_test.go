package speaker

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
)

// benchSnapshot is a three-node cluster with n LoadBalancer Services of
// ten ready endpoints each, all on node1, in one pool one L2Advertisement
// selects: what make bench-dataplane runs.
func benchSnapshot(n int) snapshot {
	s, svcs, eps := benchCluster(n)
	s.services = deriveServices("node1", svcs, eps)
	return s
}

// benchCluster is benchSnapshot with its Services and EndpointSlices as
// the API has them, not yet derived.
func benchCluster(n int) (s snapshot, svcs []corev1.Service, eps []discoveryv1.EndpointSlice) {
	for _, name := range []string{"node1", "node2", "node3"} {
		s.nodes = append(s.nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
		s.speakers = append(s.speakers, corev1.Pod{Spec: corev1.PodSpec{NodeName: name}})
	}
	s.pools = []v1beta1.IPAddressPool{{ObjectMeta: metav1.ObjectMeta{Name: "pool"}, Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.18.0.0/17"}}}}
	s.advertisements = []v1beta1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "l2"}}}
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		svcs = append(svcs, corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name, Annotations: map[string]string{v1beta1.AnnotationAllocatedFromPool: "pool"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip.String()}}}},
		})
		es := discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		}
		for j := range 10 {
			k := i*10 + j
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 128+k>>16, k>>8&255, k&255)},
				NodeName:   ptr("node1"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			})
		}
		eps = append(eps, es)
	}
	return s, svcs, eps
}

// BenchmarkSyncStages times the pure stages of one sync at 10,000
// Services: what every change costs before anything is programmed.
// derive-all is what a restart derives once; derive-one what the store
// derives again when one EndpointSlice changes.
func BenchmarkSyncStages(b *testing.B) {
	snap, svcs, eps := benchCluster(10000)
	snap.services = deriveServices("node1", svcs, eps)
	alive := []string{"node1", "node2", "node3"}
	in := input(snap, alive)
	res := election.Elect(in)
	if len(res.Announcements) != 10000 {
		b.Fatalf("%d announcements, want 10000: %v", len(res.Announcements), res.Problems[:min(3, len(res.Problems))])
	}
	mine := map[netip.Addr]election.Announcement{}
	for _, a := range res.For("node1") {
		mine[a.IP] = a
	}
	b.Run("derive-all", func(b *testing.B) {
		for b.Loop() {
			deriveServices("node1", svcs, eps)
		}
	})
	b.Run("derive-one", func(b *testing.B) {
		st, t := newStore(), newTrimmer("node1")
		for i := range svcs {
			st.setService(trimmed[*cachedService](t.service(&svcs[i])), false)
			st.setSlice(nil, trimmed[*cachedSlice](t.slice(&eps[i])))
		}
		st.services()
		es := trimmed[*cachedSlice](t.slice(&eps[0]))
		for b.Loop() {
			st.setSlice(es, es)
			st.services()
		}
	})
	b.Run("input", func(b *testing.B) {
		for b.Loop() {
			input(snap, alive)
		}
	})
	b.Run("elect", func(b *testing.B) {
		for b.Loop() {
			election.Elect(in)
		}
	})
	b.Run("forwarding", func(b *testing.B) {
		for b.Loop() {
			forwardedRules(snap.services, mine, nil)
		}
	})
	b.Run("statuses", func(b *testing.B) {
		for b.Loop() {
			desiredStatuses("node1", "ironlb-system", mine)
		}
	})
	b.Run("routes-input", func(b *testing.B) {
		for b.Loop() {
			routesInput(snap, "node1")
		}
	})
}
