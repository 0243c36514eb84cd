package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceL2StatusSpec is empty: the object is all status, written by the
// speaker that answers for the Service.
type ServiceL2StatusSpec struct{}

// ServiceL2StatusStatus says which node answers ARP/NDP for a Service's
// addresses, and on which interfaces.
type ServiceL2StatusStatus struct {
	// Node is the node answering for the Service's addresses.
	// +optional
	Node string `json:"node,omitempty"`
	// ServiceName is the Service's name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// ServiceNamespace is the Service's namespace.
	// +optional
	ServiceNamespace string `json:"serviceNamespace,omitempty"`
	// Interfaces are the node's interfaces the answers go out on; empty
	// means every interface.
	// +optional
	Interfaces []InterfaceInfo `json:"interfaces,omitempty"`
	// Addresses are the Service's addresses this node answers for: both
	// of a dual-stack Service's, or the one it won. A speaker that wins an
	// address another live speaker still lists waits for it to let go.
	// +optional
	Addresses []string `json:"addresses,omitempty"`
}

// InterfaceInfo names one interface.
type InterfaceInfo struct {
	// Name is the interface name on the node.
	Name string `json:"name,omitempty"`
}

// ServiceL2Status reports which node announces a Service in layer 2 mode.
// Speakers keep one per announced Service in their namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=l2status
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Service Name",type=string,JSONPath=`.status.serviceName`
// +kubebuilder:printcolumn:name="Service Namespace",type=string,JSONPath=`.status.serviceNamespace`
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.status.addresses`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.status.interfaces[*].name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceL2Status struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceL2StatusSpec   `json:"spec,omitempty"`
	Status ServiceL2StatusStatus `json:"status,omitempty"`
}

// ServiceL2StatusList is a list of ServiceL2Status.
//
// +kubebuilder:object:root=true
type ServiceL2StatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceL2Status `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceL2Status{}, &ServiceL2StatusList{})
}
