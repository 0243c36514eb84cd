package v1beta1

// Service annotations the controller reads and writes. Each one read is also
// accepted under MetalLB's names (metallb.io/... and metallb.universe.tf/...)
// so that Services move over unchanged.
const (
	// AnnotationLoadBalancerIPs requests specific addresses, comma separated,
	// at most one per family.
	AnnotationLoadBalancerIPs = "ironlb.io/loadBalancerIPs"
	// AnnotationAddressPool requests an address from the named pool.
	AnnotationAddressPool = "ironlb.io/address-pool"
	// AnnotationAllowSharedIP is a sharing key: Services with the same key
	// may share an address when their ports do not clash.
	AnnotationAllowSharedIP = "ironlb.io/allow-shared-ip"
	// AnnotationAllocatedFromPool is written by the controller: the pool the
	// Service's addresses came from.
	AnnotationAllocatedFromPool = "ironlb.io/ip-allocated-from-pool"
)

// AnnotationAliases lists, for each annotation the controller reads, the
// MetalLB names accepted in its place. The IronLB name wins when both are set.
var AnnotationAliases = map[string][]string{
	AnnotationLoadBalancerIPs: {"metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"},
	AnnotationAddressPool:     {"metallb.io/address-pool", "metallb.universe.tf/address-pool"},
	AnnotationAllowSharedIP:   {"metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"},
}

// Condition types and reasons on IPAddressPool status.
const (
	// ConditionReady is true when the pool is used for allocation.
	ConditionReady = "Ready"
	// ConditionOverlapping is true when the pool shares addresses with
	// another pool.
	ConditionOverlapping = "Overlapping"
)
