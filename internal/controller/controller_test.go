package controller_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
)

func TestAssignsFromPoolAndReportsUsage(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"192.168.10.0/30", "fd00:1::10-fd00:1::11"}})
	e.startController(e.controllerOptions())
	e.service("web")

	s := e.waitIPs("web", "192.168.10.0")
	if got := s.Annotations[v1beta1.AnnotationAllocatedFromPool]; got != "lan" {
		t.Errorf("annotation %s = %q, want lan", v1beta1.AnnotationAllocatedFromPool, got)
	}
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", m)
	}
	e.waitEvent(e.ns, "web", "IPAllocated", "192.168.10.0", "pool lan")
	e.eventually("pool status counts the address", 10*time.Second, func() error {
		st := e.getPool("lan").Status
		if st.AssignedIPv4 != 1 || st.AvailableIPv4 != 3 || st.AssignedIPv6 != 0 || st.AvailableIPv6 != 2 || st.Assigned != 1 || st.Available != 5 {
			return fmt.Errorf("status %+v", st)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1beta1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ready condition %+v", c)
		}
		return nil
	})
}

func TestRequestedAddressesAndMetalLBAliases(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"192.168.20.0/24"}})
	e.startController(e.controllerOptions())

	e.service("ours", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "192.168.20.7"))
	e.service("metallb-io", withAnnotation("metallb.io/loadBalancerIPs", "192.168.20.8"))
	e.service("metallb-universe", withAnnotation("metallb.universe.tf/loadBalancerIPs", "192.168.20.9"))
	e.service("spec-field", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.168.20.10" })
	e.service("outside", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "10.9.9.9"))
	e.service("garbage", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "not-an-ip"))

	e.waitIPs("ours", "192.168.20.7")
	e.service("taken", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "192.168.20.7"))
	e.waitIPs("metallb-io", "192.168.20.8")
	e.waitIPs("metallb-universe", "192.168.20.9")
	e.waitIPs("spec-field", "192.168.20.10")
	e.waitEvent(e.ns, "outside", "AllocationFailed", "NotInPool", "10.9.9.9")
	e.waitEvent(e.ns, "garbage", "AllocationFailed", v1beta1.AnnotationLoadBalancerIPs, "not-an-ip")
	e.waitEvent(e.ns, "taken", "AllocationFailed", "IPInUse", "192.168.20.7")
	for _, n := range []string{"outside", "garbage", "taken"} {
		if got := ips(e.get(n)); len(got) != 0 {
			t.Errorf("%s got %v, want no address", n, got)
		}
	}
}

func TestPoolByNameAutoAssignAndPriority(t *testing.T) {
	e := newEnv(t)
	e.pool("reserved", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.50.0.0/24"}, AutoAssign: ptr(false)})
	e.pool("low", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.51.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 20}})
	e.pool("high", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.52.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 10}})
	e.pool("team", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.53.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{
		Priority:         1,
		ServiceSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "a"}}},
	}})
	e.startController(e.controllerOptions())

	e.service("plain")
	e.service("named", withAnnotation(v1beta1.AnnotationAddressPool, "reserved"))
	e.service("aliased", withAnnotation("metallb.universe.tf/address-pool", "reserved"))
	e.service("labelled", func(s *corev1.Service) { s.Labels = map[string]string{"team": "a"} })
	e.service("unknown", withAnnotation(v1beta1.AnnotationAddressPool, "nope"))

	e.waitIPs("plain", "10.52.0.0")
	if a, b := e.waitIn("named", "10.50.0.0/24"), e.waitIn("aliased", "10.50.0.0/24"); a[0] == b[0] {
		t.Errorf("named and aliased both got %s", a[0])
	}
	e.waitIPs("labelled", "10.53.0.0")
	e.waitEvent(e.ns, "unknown", "AllocationFailed", "nope")
}

func TestSharingRules(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.60.0.0/24"}})
	e.startController(e.controllerOptions())

	share := withAnnotation(v1beta1.AnnotationAllowSharedIP, "k1")
	e.service("http", share, withPort(corev1.ProtocolTCP, 80))
	first := e.waitAnyIP("http", 1)[0]
	e.service("https", share, withPort(corev1.ProtocolTCP, 443))
	e.service("dns", share, withPort(corev1.ProtocolUDP, 80)) // same port, other protocol
	e.waitIPs("https", first)
	e.waitIPs("dns", first)

	// Asked for the shared address explicitly, with a clashing port: refused.
	e.service("clash", share, withPort(corev1.ProtocolTCP, 80), withAnnotation(v1beta1.AnnotationLoadBalancerIPs, first))
	e.waitEvent(e.ns, "clash", "AllocationFailed", "IPInUse")
	// Another key, or none: never the shared address.
	e.service("other-key", withAnnotation(v1beta1.AnnotationAllowSharedIP, "k2"), withPort(corev1.ProtocolTCP, 8080))
	e.service("no-key", withPort(corev1.ProtocolTCP, 9090))
	for _, n := range []string{"other-key", "no-key"} {
		if got := e.waitAnyIP(n, 1)[0]; got == first {
			t.Errorf("%s shares %s without a matching key", n, got)
		}
	}
	// externalTrafficPolicy Local with another selector: not shared.
	e.service("local", share, withPort(corev1.ProtocolTCP, 8443), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	if got := e.waitAnyIP("local", 1)[0]; got == first {
		t.Errorf("eTP Local service with another selector shares %s", got)
	}
}

func TestDualStack(t *testing.T) {
	e := newEnv(t)
	e.pool("v4only", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.70.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 1}})
	e.pool("dual", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.71.0.0/24", "fd00:71::/64"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 2}})
	e.startController(e.controllerOptions())

	policy := func(p corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
		return func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &p; s.Spec.IPFamilies = fams }
	}
	e.service("single", policy(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol))
	e.service("require", policy(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
	e.service("prefer", policy(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	e.service("v6", policy(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))

	e.waitIn("single", "10.70.0.0/24")
	e.waitIn("require", "fd00:71::/64", "10.71.0.0/24")
	// PreferDualStack takes the first pool by priority, which has IPv4 only.
	e.waitIn("prefer", "10.70.0.0/24")
	e.waitIn("v6", "fd00:71::/64")
}

func TestExhaustionThenRelease(t *testing.T) {
	e := newEnv(t)
	e.pool("tiny", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.80.0.1-10.80.0.2"}})
	e.startController(e.controllerOptions())
	e.service("a")
	e.waitAnyIP("a", 1)
	e.service("b")
	e.waitAnyIP("b", 1)
	e.service("c")
	e.waitEvent(e.ns, "c", "AllocationFailed", "PoolExhausted")
	freed := ips(e.get("a"))[0]
	if err := e.c.Delete(e.ctx, e.get("a")); err != nil {
		t.Fatal(err)
	}
	e.waitIPs("c", freed)
	e.waitEvent(e.ns, "c", "IPAllocated", freed)
}

func TestTypeChangeReleasesAddress(t *testing.T) {
	e := newEnv(t)
	e.pool("one", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.90.0.5/32"}})
	e.startController(e.controllerOptions())
	e.service("lb")
	e.waitIPs("lb", "10.90.0.5")
	e.service("waiting")
	e.waitEvent(e.ns, "waiting", "AllocationFailed", "PoolExhausted")

	e.update("lb", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		s.Spec.AllocateLoadBalancerNodePorts = nil
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	})
	e.waitIPs("lb")
	// The API server clears the status of a Service that stops being a
	// LoadBalancer itself; the annotation is the controller's to drop.
	e.eventually("pool annotation dropped from the ClusterIP service", 10*time.Second, func() error {
		if a := e.get("lb").Annotations[v1beta1.AnnotationAllocatedFromPool]; a != "" {
			return fmt.Errorf("pool annotation %q left", a)
		}
		return nil
	})
	e.waitIPs("waiting", "10.90.0.5")
}

func TestPoolShrinkReassignsWithEvent(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.100.0.0/24"}})
	e.startController(e.controllerOptions())
	e.service("web")
	e.waitIPs("web", "10.100.0.0")

	p := e.getPool("lan")
	p.Spec.Addresses = []string{"10.100.0.128/25"}
	if err := e.c.Update(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	e.waitIPs("web", "10.100.0.128")
	e.waitEvent(e.ns, "web", "IPReassigned", "10.100.0.128", "10.100.0.0")
}

func TestBadRequestKeepsCurrentAddress(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.110.0.0/24"}})
	e.startController(e.controllerOptions())
	e.service("holder", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "10.110.0.50"))
	e.waitIPs("holder", "10.110.0.50")
	e.service("web")
	e.waitIPs("web", "10.110.0.0")

	// Ask for an address someone else holds: refused, and web keeps its own.
	e.update("web", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "10.110.0.50"))
	e.waitEvent(e.ns, "web", "AllocationFailed", "IPInUse", "keeping 10.110.0.0")
	// Malformed: refused, kept.
	e.update("web", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "10.110.0.x"))
	e.waitEvent(e.ns, "web", "AllocationFailed", "10.110.0.x")
	time.Sleep(500 * time.Millisecond)
	e.waitIPs("web", "10.110.0.0")
	// A valid free address: moved, with an Event.
	e.update("web", withAnnotation(v1beta1.AnnotationLoadBalancerIPs, "10.110.0.60"))
	e.waitIPs("web", "10.110.0.60")
	e.waitEvent(e.ns, "web", "IPReassigned", "10.110.0.60")
}

func TestLoadBalancerClass(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.120.0.0/24"}})
	e.startController(e.controllerOptions())
	e.service("theirs", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("other.example.com/lb") })
	e.service("ours")
	e.waitIPs("ours", "10.120.0.0")
	time.Sleep(time.Second)
	if got := ips(e.get("theirs")); len(got) != 0 {
		t.Errorf("service of another class got %v", got)
	}
}

func TestOverlappingPoolsReportedNothingTaken(t *testing.T) {
	e := newEnv(t)
	e.pool("a", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.130.0.0/30"}})
	e.startController(e.controllerOptions())
	e.service("s1")
	e.waitIPs("s1", "10.130.0.0")

	e.pool("b", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.130.0.0-10.130.0.1"}})
	for _, name := range []string{"a", "b"} {
		e.eventually("pool "+name+" reports the overlap", 10*time.Second, func() error {
			c := meta.FindStatusCondition(e.getPool(name).Status.Conditions, v1beta1.ConditionOverlapping)
			if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "10.130.0.0-10.130.0.1") {
				return fmt.Errorf("overlapping condition %+v", c)
			}
			return nil
		})
	}
	e.waitEvent(e.poolNS, "b", "PoolOverlap", "a")
	e.service("s2", withAnnotation(v1beta1.AnnotationAddressPool, "b"))
	e.waitIPs("s2", "10.130.0.1")
	e.waitIPs("s1", "10.130.0.0")
}

func TestNamespaceSelectorFollowsLabels(t *testing.T) {
	e := newEnv(t)
	e.pool("general", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.140.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 50}})
	e.pool("gold", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.141.0.0/24"}, ServiceAllocation: &v1beta1.ServiceAllocation{
		Priority:           1,
		NamespaceSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "gold"}}},
	}})
	e.startController(e.controllerOptions())
	e.service("before")
	e.waitIPs("before", "10.140.0.0")

	var ns corev1.Namespace
	if err := e.c.Get(e.ctx, clientKey(e.ns), &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"tier": "gold"}
	if err := e.c.Update(e.ctx, &ns); err != nil {
		t.Fatal(err)
	}
	// A Service with an address keeps it; a new one uses the gold pool.
	e.service("after")
	e.waitIPs("after", "10.141.0.0")
	e.waitIPs("before", "10.140.0.0")
}

// TestStatusWriteKeepsAnnotation guards the single-write design: the pool
// annotation set through the status subresource must be stored.
func TestStatusWriteKeepsAnnotation(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.150.0.0/24"}})
	e.startController(e.controllerOptions())
	e.service("web")
	e.waitIPs("web", "10.150.0.0")
	e.eventually("pool annotation stored", 5*time.Second, func() error {
		if got := e.get("web").Annotations[v1beta1.AnnotationAllocatedFromPool]; got != "lan" {
			return fmt.Errorf("annotation %q", got)
		}
		return nil
	})
}

func TestAllocatedAddressesAreInPool(t *testing.T) {
	e := newEnv(t)
	e.pool("v6", v1beta1.IPAddressPoolSpec{Addresses: []string{"fd00:abcd::/64"}, ServiceAllocation: &v1beta1.ServiceAllocation{Priority: 1}})
	e.startController(e.controllerOptions())
	p := netip.MustParsePrefix("fd00:abcd::/64")
	for i := range 5 {
		e.service(fmt.Sprintf("s%d", i), func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicySingleStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
		})
	}
	seen := map[string]bool{}
	for i := range 5 {
		ip := e.waitAnyIP(fmt.Sprintf("s%d", i), 1)[0]
		if !p.Contains(netip.MustParseAddr(ip)) || seen[ip] {
			t.Errorf("s%d got %s: outside %s or duplicate", i, ip, p)
		}
		seen[ip] = true
	}
}

// TestIPModeProxy: when the speakers forward the traffic themselves, the
// status says Proxy, so kube-proxy leaves the address alone.
func TestIPModeProxy(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.200.0.0/24"}})
	o := e.controllerOptions()
	o.IPMode = corev1.LoadBalancerIPModeProxy
	e.startController(o)
	e.service("web")
	s := e.waitIPs("web", "10.200.0.0")
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeProxy {
		t.Errorf("ipMode = %v, want Proxy", m)
	}
}
