package allocator

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/internal/pool"
)

// Family is an IP address family, numbered as Kubernetes and the IP header do.
type Family int

// The two address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(" + itoa(int(f)) + ")"
}

// FamilyPolicy mirrors a Service's spec.ipFamilyPolicy.
type FamilyPolicy int

// The family policies of a Service.
const (
	SingleStack FamilyPolicy = iota
	PreferDualStack
	RequireDualStack
)

func (p FamilyPolicy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return "FamilyPolicy(" + itoa(int(p)) + ")"
}

// Pool is one IPAddressPool, already parsed.
type Pool struct {
	Name   string
	Ranges []pool.Range
	// AutoAssign false means the pool is used only when a Service names it
	// or requests an address inside it.
	AutoAssign bool
	// AvoidBuggyIPs removes every IPv4 x.x.x.0 and x.x.x.255 from the pool,
	// for clients whose firmware mistakes them for network or broadcast
	// addresses.
	AvoidBuggyIPs bool
	// Priority is serviceAllocation.priority; lower comes first, 0 = not set
	// (after every set one).
	Priority int
	// Namespaces is serviceAllocation.namespaces; empty = no restriction by
	// list. A Service is admitted if its namespace is listed or matches one
	// of NamespaceSelectors (when either is given).
	Namespaces         []string
	NamespaceSelectors []labels.Selector
	// ServiceSelectors, when given, must have one match the Service labels.
	ServiceSelectors []labels.Selector
}

// Port is one (protocol, port) a Service exposes; two Services sharing an
// address must not use the same one.
type Port struct {
	Protocol string
	Port     int32
}

// Service is what the allocator needs to know about one LoadBalancer Service.
type Service struct {
	Key             string // "namespace/name"
	Namespace       string
	NamespaceLabels map[string]string
	Labels          map[string]string
	Families        []Family // spec.ipFamilies order; empty means [IPv4]
	Policy          FamilyPolicy
	// RequestedIPs come from ironlb.io/loadBalancerIPs or
	// spec.loadBalancerIP; at most one per family.
	RequestedIPs []netip.Addr
	Pool         string // ironlb.io/address-pool; "" = any
	SharingKey   string // ironlb.io/allow-shared-ip; "" = no sharing
	// BackendKey is the selector string when externalTrafficPolicy is
	// Local, "" otherwise: sharers must agree on where traffic lands.
	BackendKey string
	Ports      []Port
}

// Result is what a Service holds: the pool and its addresses, in the family
// order of the request.
type Result struct {
	Pool string
	IPs  []netip.Addr
}

// Usage counts a pool's addresses; every figure saturates at MaxUint64.
type Usage struct{ AssignedV4, AssignedV6, AvailableV4, AvailableV6 uint64 }

// Overlap reports addresses that two pools both contain (A < B by name).
type Overlap struct {
	A, B  string
	Range pool.Range
}

// Held is a Service and the addresses its status says it has, as read back
// on a restart.
type Held struct {
	Service Service
	IPs     []netip.Addr
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	neg := i < 0
	var b [24]byte
	n := len(b)
	for i != 0 {
		d := i % 10
		if d < 0 {
			d = -d
		}
		n--
		b[n] = byte('0' + d)
		i /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}
