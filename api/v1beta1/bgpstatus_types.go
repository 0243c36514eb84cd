package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPSessionStateSpec is empty: the object is all status, written by the
// speaker that holds the session.
type BGPSessionStateSpec struct{}

// BGPSessionStateStatus is one speaker's session with one BGPPeer.
type BGPSessionStateStatus struct {
	// Node is the speaker's node.
	// +optional
	Node string `json:"node,omitempty"`
	// Peer is the BGPPeer's name.
	// +optional
	Peer string `json:"peer,omitempty"`
	// PeerAddress is the router's address.
	// +optional
	PeerAddress string `json:"peerAddress,omitempty"`
	// State is the BGP finite state machine's state: Idle, Connect,
	// Active, OpenSent, OpenConfirm or Established.
	// +optional
	State string `json:"state,omitempty"`
	// EstablishedSince is when the session last reached Established.
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`
	// PrefixesSent counts the prefixes advertised on the session.
	// +optional
	PrefixesSent int64 `json:"prefixesSent,omitempty"`
	// Conditions explain what stops a session (a missing password Secret,
	// say).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPSessionState reports the state of one node's session with one peer.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bgpsession
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Peer",type=string,JSONPath=`.status.peer`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.peerAddress`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Prefixes Sent",type=integer,JSONPath=`.status.prefixesSent`
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=`.status.establishedSince`
type BGPSessionState struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPSessionStateSpec   `json:"spec,omitempty"`
	Status BGPSessionStateStatus `json:"status,omitempty"`
}

// BGPSessionStateList is a list of BGPSessionState.
//
// +kubebuilder:object:root=true
type BGPSessionStateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPSessionState `json:"items"`
}

// ServiceBGPStatusSpec is empty: the object is all status.
type ServiceBGPStatusSpec struct{}

// ServiceBGPStatusStatus says which peers a node advertises a Service to.
type ServiceBGPStatusStatus struct {
	// Node is the advertising node.
	// +optional
	Node string `json:"node,omitempty"`
	// ServiceName is the Service's name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// ServiceNamespace is the Service's namespace.
	// +optional
	ServiceNamespace string `json:"serviceNamespace,omitempty"`
	// Peers are the BGPPeers the Service's addresses are advertised to.
	// +optional
	Peers []string `json:"peers,omitempty"`
}

// ServiceBGPStatus reports that a node advertises a Service over BGP.
// Speakers keep one per node and advertised Service.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bgpstatus
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Service Name",type=string,JSONPath=`.status.serviceName`
// +kubebuilder:printcolumn:name="Service Namespace",type=string,JSONPath=`.status.serviceNamespace`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.status.peers`
type ServiceBGPStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceBGPStatusSpec   `json:"spec,omitempty"`
	Status ServiceBGPStatusStatus `json:"status,omitempty"`
}

// ServiceBGPStatusList is a list of ServiceBGPStatus.
//
// +kubebuilder:object:root=true
type ServiceBGPStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceBGPStatus `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPSessionState{}, &BGPSessionStateList{}, &ServiceBGPStatus{}, &ServiceBGPStatusList{})
}
