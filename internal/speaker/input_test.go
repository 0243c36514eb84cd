package speaker

import (
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
)

func node(name string, ready bool, ip string, labels map[string]string, conds ...corev1.NodeCondition) corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	n.Status.Conditions = append([]corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}, conds...)
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func speakerPod(node string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + node, Namespace: "ironlb-system", Labels: SpeakerLabels},
		Spec: corev1.PodSpec{NodeName: node}}
}

func slice(ns, svc string, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Endpoints:  eps,
	}
}

func ep(node string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestInput(t *testing.T) {
	yes, no := true, false
	lbSvc := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", Annotations: map[string]string{v1beta1.AnnotationAllocatedFromPool: "lan"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "192.168.100.100"}, {IP: "fd00:100::100"}, {Hostname: "ignored.example"}}}},
	}
	pending := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "pending"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	clusterIP := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "cip"},
		Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "10.0.0.9"}}}}}
	snap := snapshot{
		services: deriveServices("node1", []corev1.Service{lbSvc, pending, clusterIP}, []discoveryv1.EndpointSlice{
			slice("demo", "web", ep("node2", &yes), ep("node1", nil), ep("node3", &no), ep("node2", &yes)),
		}),
		nodes: []corev1.Node{
			node("node1", true, "192.168.100.11", nil),
			node("node2", true, "192.168.100.12", map[string]string{"zone": "a"},
				corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}),
			node("node3", false, "192.168.100.13", nil),
			node("node4", true, "192.168.100.14", nil), // no speaker Pod
		},
		pools: []v1beta1.IPAddressPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan", Labels: map[string]string{"tier": "1"}}}},
		advertisements: []v1beta1.L2Advertisement{
			{ObjectMeta: metav1.ObjectMeta{Name: "good"}, Spec: v1beta1.L2AdvertisementSpec{IPAddressPools: []string{"lan"}, Interfaces: []string{"eth0"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "bad-selector"}, Spec: v1beta1.L2AdvertisementSpec{NodeSelectors: []metav1.LabelSelector{
				{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}}}},
		},
		speakers: []corev1.Pod{speakerPod("node1"), speakerPod("node2"), speakerPod("node3")},
	}
	got := input(snap, []string{"node1", "node3"})

	if got.ExpectedSpeakers != 2 {
		t.Errorf("ExpectedSpeakers = %d, want 2 (speaker Pods on Ready nodes: node1, node2)", got.ExpectedSpeakers)
	}
	wantNodes := []election.Node{
		{Name: "node1", Alive: true},
		{Name: "node2", Labels: map[string]string{"zone": "a"}, NetworkUnavailable: true},
		{Name: "node3", Alive: true},
		{Name: "node4"},
	}
	if !reflect.DeepEqual(got.Nodes, wantNodes) {
		t.Errorf("Nodes = %+v\nwant    %+v", got.Nodes, wantNodes)
	}
	if len(got.Advertisements) != 1 || got.Advertisements[0].Name != "good" || !reflect.DeepEqual(got.Advertisements[0].Interfaces, []string{"eth0"}) {
		t.Errorf("Advertisements = %+v, want only %q (a bad selector selects nothing)", got.Advertisements, "good")
	}
	wantSvcs := []election.Service{{
		Key: "demo/web", Pool: "lan", Local: true, ReadyNodes: []string{"node1", "node2"},
		IPs: []netip.Addr{netip.MustParseAddr("192.168.100.100"), netip.MustParseAddr("fd00:100::100")},
	}}
	if !reflect.DeepEqual(got.Services, wantSvcs) {
		t.Errorf("Services = %+v\nwant       %+v", got.Services, wantSvcs)
	}
	if !reflect.DeepEqual(got.Pools, []election.Pool{{Name: "lan", Labels: map[string]string{"tier": "1"}}}) {
		t.Errorf("Pools = %+v", got.Pools)
	}

	peers := peerAddrs(snap, "node1", 7946)
	wantPeers := []netip.AddrPort{netip.MustParseAddrPort("192.168.100.12:7946"), netip.MustParseAddrPort("192.168.100.13:7946")}
	if !reflect.DeepEqual(peers, wantPeers) {
		t.Errorf("peerAddrs = %v, want %v", peers, wantPeers)
	}
}

func TestDesiredStatuses(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.168.100.100"), netip.MustParseAddr("fd00:100::100")
	mine := map[netip.Addr]election.Announcement{
		v4: {IP: v4, Node: "node1", Interfaces: []string{"eth1"}, Services: []string{"demo/web", "demo/web-udp"}},
		v6: {IP: v6, Node: "node1", Interfaces: []string{"eth0"}, Services: []string{"demo/web"}},
	}
	got := desiredStatuses("node1", "ironlb-system", mine)
	if len(got) != 2 {
		t.Fatalf("%d objects, want 2 (one per Service)", len(got))
	}
	web := got[l2StatusName("demo/web", "node1")]
	if web == nil {
		t.Fatal("no object for demo/web")
	}
	want := &l2Status{namespace: "ironlb-system", name: l2StatusName("demo/web", "node1"), node: "node1", service: "demo/web",
		addrs: []netip.Addr{v4, v6}, ifaces: []string{"eth0", "eth1"}}
	if !reflect.DeepEqual(web, want) {
		t.Errorf("demo/web status = %+v, want %+v", web, want)
	}
	obj := web.object()
	wantStatus := v1beta1.ServiceL2StatusStatus{Node: "node1", ServiceName: "web", ServiceNamespace: "demo",
		Interfaces: []v1beta1.InterfaceInfo{{Name: "eth0"}, {Name: "eth1"}}, Addresses: []string{"192.168.100.100", "fd00:100::100"}}
	if !reflect.DeepEqual(obj.Status, wantStatus) {
		t.Errorf("demo/web object status = %+v, want %+v", obj.Status, wantStatus)
	}
	if obj.Labels[LabelServiceName] != "web" || obj.Labels[LabelServiceNamespace] != "demo" || obj.Namespace != "ironlb-system" || obj.Name != want.name {
		t.Errorf("demo/web metadata = %+v", obj.ObjectMeta)
	}
	// The cache reads back what the object says.
	obj.ResourceVersion = "5"
	if back := l2StatusOf(obj, nil); !back.says(web) || back.rv != "5" || back.name != web.name {
		t.Errorf("read back as %+v", back)
	}
	if l2StatusName("a-b/c", "n") == l2StatusName("a/b-c", "n") || l2StatusName("a/b", "n1") == l2StatusName("a/b", "n2") {
		t.Error("names collide")
	}
}

// TestHoldHandovers: a won address another live speaker still lists waits,
// for at most handoverTimeout; one listed by a dead speaker, already
// answered, or listed by nobody is answered at once.
func TestHoldHandovers(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	status := func(node string, addrs ...string) *l2Status {
		return l2StatusOf(&v1beta1.ServiceL2Status{Status: v1beta1.ServiceL2StatusStatus{Node: node, Addresses: addrs}}, nil)
	}
	statuses := []*l2Status{
		status("node2", "10.0.0.1", "fd00::1"), // alive: wait
		status("node3", "10.0.0.2"),            // not alive: crashed, no wait
		status("node1", "10.0.0.3"),            // this node's own
		status("node2", "10.0.0.4"),            // alive, but already answered here
		status("node2", "10.0.0.5"),            // alive, waited too long
	}
	s := &speaker{
		cfg: Config{NodeName: "node1"}, log: slog.New(slog.DiscardHandler), dirty: make(chan struct{}, 1),
		announced: map[netip.Addr]election.Announcement{a("10.0.0.4"): {}},
		held:      map[netip.Addr]time.Time{a("10.0.0.5"): time.Now().Add(-handoverTimeout)},
	}
	mine := map[netip.Addr]election.Announcement{}
	for _, ip := range []string{"10.0.0.1", "fd00::1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"} {
		mine[a(ip)] = election.Announcement{IP: a(ip), Node: "node1"}
	}
	listed := s.hold(statuses, mine, []string{"node1", "node2"})
	if len(listed) != 1 || !listed[a("10.0.0.3")] {
		t.Errorf("listed = %v, want 10.0.0.3: this node's own status lists it, a restart's news to nobody", listed)
	}

	var answered []string
	for ip := range mine {
		answered = append(answered, ip.String())
	}
	slices.Sort(answered)
	if want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}; !slices.Equal(answered, want) {
		t.Errorf("answered at once: %v, want %v", answered, want)
	}
	if len(s.held) != 2 || s.held[a("10.0.0.1")].IsZero() || s.held[a("fd00::1")].IsZero() || !s.holding.Load() {
		t.Errorf("held = %v (holding %v), want 10.0.0.1 and fd00::1", s.held, s.holding.Load())
	}

	// node2 let go: nothing is held any more.
	mine = map[netip.Addr]election.Announcement{a("10.0.0.1"): {IP: a("10.0.0.1")}}
	s.hold(statuses[1:], mine, []string{"node1", "node2"})
	if len(mine) != 1 || len(s.held) != 0 || s.holding.Load() {
		t.Errorf("after release: mine %v, held %v", mine, s.held)
	}
}
