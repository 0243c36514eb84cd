package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPAddressPoolSpec says which addresses may be given to LoadBalancer
// Services and to which of them.
type IPAddressPoolSpec struct {
	// Addresses are CIDRs ("192.168.10.0/24", "fd00::/120") or inclusive
	// ranges ("192.168.10.10-192.168.10.20", spaces around the dash allowed)
	// of one family each.
	//
	// The API server checks each entry. CEL has no ordering on addresses, so
	// the range rule finds n, the number of leading bits both ends share, by
	// binary search (steps 128, 64, ... 1; a step is taken when the last
	// address's network of that prefix length holds the first), then checks
	// that bit n+1 of the first address is 0. Prefix lengths are spelled
	// with digit lookups because string(int) has no size bound for the cost
	// estimator; that keeps the rule within budget at 1024 entries.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=100
	// +kubebuilder:validation:items:XValidation:rule="self.contains('-') ? self.indexOf('-') == self.lastIndexOf('-') && isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim()) : isCIDR(self)",message="must be a CIDR such as 192.168.10.0/24 or a range of two addresses such as 192.168.10.10-192.168.10.20"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('-') || !isIP(self.substring(0, self.indexOf('-')).trim()) || !isIP(self.substring(self.indexOf('-') + 1).trim()) || ip(self.substring(0, self.indexOf('-')).trim()).family() == ip(self.substring(self.indexOf('-') + 1).trim()).family()",message="both ends of a range must be of the same IP family"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('-') || [self.substring(0, self.indexOf('-')).trim()].all(a, [self.substring(self.indexOf('-') + 1).trim()].all(b, !isIP(a) || !isIP(b) || ip(a).family() != ip(b).family() || [ip(a).family() == 4 ? 32 : 128].all(bits, [128 <= bits && cidr(b + '/128').containsIP(a) ? 128 : 0].all(n1, [n1 + ((n1 + 64) <= bits && cidr(b + ((n1 + 64) >= 100 ? '/1' : '/') + ((n1 + 64) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n1 + 64) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n1 + 64) % 10]).containsIP(a) ? 64 : 0)].all(n2, [n2 + ((n2 + 32) <= bits && cidr(b + ((n2 + 32) >= 100 ? '/1' : '/') + ((n2 + 32) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n2 + 32) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n2 + 32) % 10]).containsIP(a) ? 32 : 0)].all(n3, [n3 + ((n3 + 16) <= bits && cidr(b + ((n3 + 16) >= 100 ? '/1' : '/') + ((n3 + 16) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n3 + 16) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n3 + 16) % 10]).containsIP(a) ? 16 : 0)].all(n4, [n4 + ((n4 + 8) <= bits && cidr(b + ((n4 + 8) >= 100 ? '/1' : '/') + ((n4 + 8) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n4 + 8) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n4 + 8) % 10]).containsIP(a) ? 8 : 0)].all(n5, [n5 + ((n5 + 4) <= bits && cidr(b + ((n5 + 4) >= 100 ? '/1' : '/') + ((n5 + 4) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n5 + 4) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n5 + 4) % 10]).containsIP(a) ? 4 : 0)].all(n6, [n6 + ((n6 + 2) <= bits && cidr(b + ((n6 + 2) >= 100 ? '/1' : '/') + ((n6 + 2) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n6 + 2) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n6 + 2) % 10]).containsIP(a) ? 2 : 0)].all(n7, [n7 + ((n7 + 1) <= bits && cidr(b + ((n7 + 1) >= 100 ? '/1' : '/') + ((n7 + 1) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n7 + 1) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n7 + 1) % 10]).containsIP(a) ? 1 : 0)].all(n8, n8 == bits || [(n8 >= 100 ? '/1' : '/') + (n8 >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][n8 / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][n8 % 10]].all(p, [((n8 + 1) >= 100 ? '/1' : '/') + ((n8 + 1) >= 10 ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n8 + 1) / 10 % 10] : '') + ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'][(n8 + 1) % 10]].all(q, cidr(a + p).masked().ip() == cidr(a + q).masked().ip())))))))))))))",message="the first address of a range must not be greater than the last"
	Addresses []string `json:"addresses"`

	// AutoAssign lets the controller pick addresses from this pool for
	// Services that do not name a pool or an address. When false the pool is
	// used only when asked for by name or address.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips addresses ending in .0 and .255, which some
	// clients and routers mishandle.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// ServiceAllocation restricts the pool to some Services and orders it
	// among the pools a Service may use.
	// +optional
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
}

// ServiceAllocation restricts a pool to some Services and orders it against
// other pools.
type ServiceAllocation struct {
	// Priority orders pools a Service may use: a lower number is tried first;
	// pools without a priority come after those with one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Priority int `json:"priority,omitempty"`

	// Namespaces lists the namespaces whose Services may use the pool.
	// +optional
	// +kubebuilder:validation:items:MinLength=1
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelectors select, by namespace labels, the namespaces whose
	// Services may use the pool.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || size(self.matchExpressions) <= 32",message="at most 32 matchExpressions are allowed",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || self.matchExpressions[i].operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['In', 'NotIn']) || (has(self.matchExpressions[i].values) && size(self.matchExpressions[i].values) > 0))",message="matchExpressions with operator In or NotIn need values",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['Exists', 'DoesNotExist']) || !has(self.matchExpressions[i].values) || size(self.matchExpressions[i].values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values",fieldPath=".matchExpressions"
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`

	// ServiceSelectors select, by Service labels, the Services that may use
	// the pool.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || size(self.matchExpressions) <= 32",message="at most 32 matchExpressions are allowed",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || self.matchExpressions[i].operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['In', 'NotIn']) || (has(self.matchExpressions[i].values) && size(self.matchExpressions[i].values) > 0))",message="matchExpressions with operator In or NotIn need values",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['Exists', 'DoesNotExist']) || !has(self.matchExpressions[i].values) || size(self.matchExpressions[i].values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values",fieldPath=".matchExpressions"
	ServiceSelectors []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// IPAddressPoolStatus is written by the controller.
type IPAddressPoolStatus struct {
	// AssignedIPv4 counts the pool's IPv4 addresses held by Services.
	AssignedIPv4 int64 `json:"assignedIPv4"`
	// AssignedIPv6 counts the pool's IPv6 addresses held by Services.
	AssignedIPv6 int64 `json:"assignedIPv6"`
	// AvailableIPv4 counts the pool's IPv4 addresses still free.
	AvailableIPv4 int64 `json:"availableIPv4"`
	// AvailableIPv6 counts the pool's IPv6 addresses still free, capped at
	// the largest int64.
	AvailableIPv6 int64 `json:"availableIPv6"`
	// Assigned and Available are the two families added up, for display.
	Assigned int64 `json:"assigned"`
	// +optional
	Available int64 `json:"available"`

	// Conditions: Ready, and Overlapping when the pool shares addresses with
	// another pool.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPAddressPool is a set of addresses the controller hands out to
// LoadBalancer Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ipp
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Auto Assign",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Assigned",type=integer,JSONPath=`.status.assigned`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.available`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPAddressPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPAddressPoolSpec   `json:"spec"`
	Status IPAddressPoolStatus `json:"status,omitempty"`
}

// IPAddressPoolList is a list of IPAddressPool.
//
// +kubebuilder:object:root=true
type IPAddressPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPAddressPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&IPAddressPool{}, &IPAddressPoolList{})
}
