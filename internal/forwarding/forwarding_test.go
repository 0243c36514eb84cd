package forwarding

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// Desired is what a node programs for a whole cluster: ForService for each
// LoadBalancer Service with its slices read for node, merged, sorted by
// Key.
func Desired(node string, services []corev1.Service, eps []discoveryv1.EndpointSlice) []Rule {
	byService := map[string][]*Endpoints{}
	for i := range eps {
		if name := eps[i].Labels[discoveryv1.LabelServiceName]; name != "" {
			key := eps[i].Namespace + "/" + name
			e := EndpointsOf(node, &eps[i])
			byService[key] = append(byService[key], &e)
		}
	}
	perService := make([][]Rule, 0, len(services))
	for i := range services {
		if svc, ok := ServiceOf(&services[i]); ok {
			perService = append(perService, ForService(svc, byService[svc.Key]))
		}
	}
	m := Merge(perService...)
	out := make([]Rule, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return a.Key.Compare(b.Key) })
	return out
}

type port struct {
	name  string
	proto corev1.Protocol
	port  int32
}

func lbService(ns, name string, local bool, ips []string, ports ...port) corev1.Service {
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.name, Protocol: p.proto, Port: p.port})
	}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

type ep struct {
	addr  string
	node  string
	ready *bool
}

func slice(ns, svc, name string, typ discoveryv1.AddressType, ports []port, eps ...ep) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: typ,
	}
	for _, p := range ports {
		ep := discoveryv1.EndpointPort{Name: ptr(p.name), Port: ptr(p.port)}
		if p.proto != "" {
			ep.Protocol = ptr(p.proto)
		}
		es.Ports = append(es.Ports, ep)
	}
	for _, e := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, NodeName: ptr(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready}})
	}
	return es
}

func rule(vip string, proto Protocol, p uint16, svc string, eps ...string) Rule {
	r := Rule{Key: Key{VIP: netip.MustParseAddr(vip), Protocol: proto, Port: p}, Service: svc}
	for _, e := range eps {
		r.Endpoints = append(r.Endpoints, netip.MustParseAddrPort(e))
	}
	return r
}

var (
	http     = port{"http", corev1.ProtocolTCP, 80}
	http8080 = port{"http", corev1.ProtocolTCP, 8080}
	v4       = discoveryv1.AddressTypeIPv4
	v6       = discoveryv1.AddressTypeIPv6
)

func TestDesired(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services []corev1.Service
		slices   []discoveryv1.EndpointSlice
		want     []Rule
	}{
		{
			name:     "local endpoints only, for Local and Cluster alike",
			services: []corev1.Service{lbService("ns", "local", true, []string{"192.0.2.1"}, http), lbService("ns", "cluster", false, []string{"192.0.2.2"}, http)},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "local", "l1", v4, []port{http8080}, ep{"10.0.1.2", "node1", nil}, ep{"10.0.2.2", "node2", nil}),
				slice("ns", "cluster", "c1", v4, []port{http8080}, ep{"10.0.1.3", "node1", ptr(true)}, ep{"10.0.3.2", "node3", ptr(true)}),
			},
			want: []Rule{rule("192.0.2.1", TCP, 80, "ns/local", "10.0.1.2:8080"), rule("192.0.2.2", TCP, 80, "ns/cluster", "10.0.1.3:8080")},
		},
		{
			name:     "not ready endpoints are left out; none left means no rule",
			services: []corev1.Service{lbService("ns", "a", true, []string{"192.0.2.1"}, http), lbService("ns", "b", true, []string{"192.0.2.2"}, http)},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "a", "a1", v4, []port{http8080}, ep{"10.0.1.2", "node1", ptr(false)}, ep{"10.0.1.3", "node1", ptr(true)}),
				slice("ns", "b", "b1", v4, []port{http8080}, ep{"10.0.1.4", "node1", ptr(false)}),
			},
			want: []Rule{rule("192.0.2.1", TCP, 80, "ns/a", "10.0.1.3:8080")},
		},
		{
			name: "dual-stack: each family to its own endpoints",
			services: []corev1.Service{lbService("ns", "ds", false, []string{"fd00::1", "192.0.2.1"}, http,
				port{"dns", corev1.ProtocolUDP, 53})},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "ds", "v4", v4, []port{http8080, {"dns", corev1.ProtocolUDP, 5353}}, ep{"10.0.1.2", "node1", nil}),
				slice("ns", "ds", "v6", v6, []port{http8080, {"dns", corev1.ProtocolUDP, 5353}}, ep{"fd00:244::2", "node1", nil}),
			},
			want: []Rule{
				rule("192.0.2.1", TCP, 80, "ns/ds", "10.0.1.2:8080"),
				rule("192.0.2.1", UDP, 53, "ns/ds", "10.0.1.2:5353"),
				rule("fd00::1", TCP, 80, "ns/ds", "[fd00:244::2]:8080"),
				rule("fd00::1", UDP, 53, "ns/ds", "[fd00:244::2]:5353"),
			},
		},
		{
			name:     "an IPv4 VIP never gets IPv6 endpoints, even from a mislabelled slice",
			services: []corev1.Service{lbService("ns", "a", false, []string{"192.0.2.1"}, http)},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "a", "bad", v4, []port{http8080}, ep{"fd00::2", "node1", nil}),
				slice("ns", "a", "v6", v6, []port{http8080}, ep{"fd00::3", "node1", nil}),
			},
			want: []Rule{},
		},
		{
			name: "target port by name, several ports, SCTP, several slices merged and deduplicated",
			services: []corev1.Service{lbService("ns", "m", false, []string{"192.0.2.1"},
				port{"web", corev1.ProtocolTCP, 80}, port{"admin", corev1.ProtocolTCP, 81}, port{"sig", corev1.ProtocolSCTP, 3868})},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "m", "m1", v4, []port{{"admin", corev1.ProtocolTCP, 9000}, {"web", "", 8080}, {"sig", corev1.ProtocolSCTP, 3869}},
					ep{"10.0.1.5", "node1", nil}, ep{"10.0.1.2", "node1", nil}),
				slice("ns", "m", "m2", v4, []port{{"web", corev1.ProtocolTCP, 8080}}, ep{"10.0.1.2", "node1", nil}, ep{"10.0.1.9", "node1", nil}),
			},
			want: []Rule{
				// Protocols sort as nft names them: sctp, tcp, udp.
				rule("192.0.2.1", SCTP, 3868, "ns/m", "10.0.1.2:3869", "10.0.1.5:3869"),
				rule("192.0.2.1", TCP, 80, "ns/m", "10.0.1.2:8080", "10.0.1.5:8080", "10.0.1.9:8080"),
				rule("192.0.2.1", TCP, 81, "ns/m", "10.0.1.2:9000", "10.0.1.5:9000"),
			},
		},
		{
			name:     "a port name the slice lacks, or the wrong protocol, gives nothing",
			services: []corev1.Service{lbService("ns", "a", false, []string{"192.0.2.1"}, http, port{"http", corev1.ProtocolUDP, 80})},
			slices:   []discoveryv1.EndpointSlice{slice("ns", "a", "a1", v4, []port{{"other", corev1.ProtocolTCP, 8080}, {"http", corev1.ProtocolSCTP, 8080}}, ep{"10.0.1.2", "node1", nil})},
			want:     []Rule{},
		},
		{
			name: "not a LoadBalancer, no address, or another namespace's slice: nothing",
			services: func() []corev1.Service {
				cip := lbService("ns", "cip", false, []string{"192.0.2.1"}, http)
				cip.Spec.Type = corev1.ServiceTypeClusterIP
				return []corev1.Service{cip, lbService("ns", "pending", false, nil, http), lbService("ns", "other", false, []string{"192.0.2.3"}, http)}
			}(),
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "cip", "a", v4, []port{http8080}, ep{"10.0.1.2", "node1", nil}),
				slice("ns", "pending", "b", v4, []port{http8080}, ep{"10.0.1.2", "node1", nil}),
				slice("elsewhere", "other", "c", v4, []port{http8080}, ep{"10.0.1.2", "node1", nil}),
			},
			want: []Rule{},
		},
		{
			name: "two Services on one key: the first by name wins",
			services: []corev1.Service{lbService("ns", "zz", false, []string{"192.0.2.1"}, http),
				lbService("ns", "aa", false, []string{"192.0.2.1"}, http, port{"https", corev1.ProtocolTCP, 443})},
			slices: []discoveryv1.EndpointSlice{
				slice("ns", "zz", "z", v4, []port{http8080}, ep{"10.0.1.9", "node1", nil}),
				slice("ns", "aa", "a", v4, []port{http8080, {"https", corev1.ProtocolTCP, 8443}}, ep{"10.0.1.2", "node1", nil}),
			},
			want: []Rule{rule("192.0.2.1", TCP, 80, "ns/aa", "10.0.1.2:8080"), rule("192.0.2.1", TCP, 443, "ns/aa", "10.0.1.2:8443")},
		},
		{
			name:     "an IPv4-mapped ingress address is IPv4",
			services: []corev1.Service{lbService("ns", "a", false, []string{"::ffff:192.0.2.1", "192.0.2.1"}, http)},
			slices:   []discoveryv1.EndpointSlice{slice("ns", "a", "a1", v4, []port{http8080}, ep{"10.0.1.2", "node1", nil})},
			want:     []Rule{rule("192.0.2.1", TCP, 80, "ns/a", "10.0.1.2:8080")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Desired("node1", tc.services, tc.slices)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Desired:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// FuzzDesired builds a random cluster from the fuzzer's bytes and checks
// the invariants: shuffling the input never changes the result, no rule
// crosses families, and every endpoint is a ready endpoint on the node.
func FuzzDesired(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint64(1))
	f.Add([]byte{0xff, 0, 0x80, 7, 7, 7, 1, 0, 3, 200, 13, 99, 4, 4, 4, 4}, uint64(42))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		services, eps := fuzzCluster(data)
		got := Desired("node1", services, eps)

		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		s2, e2 := slices.Clone(services), slices.Clone(eps)
		r.Shuffle(len(s2), func(i, j int) { s2[i], s2[j] = s2[j], s2[i] })
		r.Shuffle(len(e2), func(i, j int) { e2[i], e2[j] = e2[j], e2[i] })
		if again := Desired("node1", s2, e2); !reflect.DeepEqual(got, again) {
			t.Fatalf("order changed the result:\n%v\n%v", got, again)
		}

		local := map[netip.Addr]bool{}
		for _, es := range eps {
			for _, e := range es.Endpoints {
				if *e.NodeName == "node1" && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
					local[netip.MustParseAddr(e.Addresses[0])] = true
				}
			}
		}
		for i, rl := range got {
			if i > 0 && got[i-1].Key.Compare(rl.Key) >= 0 {
				t.Fatalf("rules not sorted and distinct: %v then %v", got[i-1].Key, rl.Key)
			}
			if len(rl.Endpoints) == 0 {
				t.Fatalf("rule %v without endpoints", rl.Key)
			}
			for j, e := range rl.Endpoints {
				if e.Addr().Is4() != rl.VIP.Is4() {
					t.Fatalf("rule %v crosses families to %v", rl.Key, e)
				}
				if !local[e.Addr()] {
					t.Fatalf("rule %v sends to %v, not a ready endpoint on node1", rl.Key, e)
				}
				if j > 0 && rl.Endpoints[j-1].Compare(e) >= 0 {
					t.Fatalf("endpoints of %v not sorted and distinct: %v", rl.Key, rl.Endpoints)
				}
			}
		}
	})
}

// fuzzCluster decodes bytes into Services and EndpointSlices drawn from
// small pools of names, addresses and ports, so that collisions (shared
// VIPs, endpoints in several slices) are common.
func fuzzCluster(data []byte) ([]corev1.Service, []discoveryv1.EndpointSlice) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP, "", "ICMP"}
	names := []string{"a", "b", "", "c"}
	nodes := []string{"node1", "node2", "node1", "node3"}
	addr := func(b byte, v6 bool) string {
		if v6 {
			return fmt.Sprintf("fd00::%x", b%8)
		}
		return fmt.Sprintf("10.0.0.%d", b%8)
	}
	var services []corev1.Service
	var eps []discoveryv1.EndpointSlice
	for n := int(next() % 6); n > 0; n-- {
		name := fmt.Sprintf("s%d", next()%4)
		var ips []string
		for k := next() % 3; k > 0; k-- {
			b := next()
			if b&1 == 0 {
				ips = append(ips, fmt.Sprintf("192.0.2.%d", b%4))
			} else {
				ips = append(ips, fmt.Sprintf("2001:db8::%d", b%4))
			}
		}
		var ports []port
		for k := next() % 3; k > 0; k-- {
			ports = append(ports, port{names[next()%4], protos[next()%5], int32(next() % 4)})
		}
		services = append(services, lbService("ns", name, next()&1 == 0, ips, ports...))
	}
	for n := int(next() % 6); n > 0; n-- {
		v6 := next()&1 == 1
		typ := v4
		if v6 {
			typ = discoveryv1.AddressTypeIPv6
		}
		var ports []port
		for k := next() % 3; k > 0; k-- {
			ports = append(ports, port{names[next()%4], protos[next()%5], int32(next()%4) + 8080})
		}
		var es []ep
		for k := next() % 4; k > 0; k-- {
			b := next()
			var ready *bool
			switch b % 3 {
			case 1:
				ready = ptr(true)
			case 2:
				ready = ptr(false)
			}
			// Now and then an address of the wrong family.
			es = append(es, ep{addr(next(), v6 != (b&0x80 != 0)), nodes[b/3%4], ready})
		}
		eps = append(eps, slice("ns", fmt.Sprintf("s%d", next()%4), fmt.Sprintf("e%d", len(eps)), typ, ports, es...))
	}
	return services, eps
}
