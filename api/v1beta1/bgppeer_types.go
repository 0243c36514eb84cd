package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DynamicASNMode says how the peer's ASN is found when PeerASN is not set.
// +kubebuilder:validation:Enum=internal;external
type DynamicASNMode string

const (
	// InternalASNMode expects the peer's ASN to equal MyASN (iBGP).
	InternalASNMode DynamicASNMode = "internal"
	// ExternalASNMode expects the peer's ASN to differ from MyASN (eBGP).
	ExternalASNMode DynamicASNMode = "external"
)

// BGPPeerSpec describes a BGP session the speakers open.
type BGPPeerSpec struct {
	// MyASN is the speakers' autonomous system number.
	MyASN uint32 `json:"myASN"`
	// PeerASN is the router's autonomous system number.
	// +optional
	PeerASN uint32 `json:"peerASN,omitempty"`
	// DynamicASN accepts the router's ASN as sent in its OPEN when PeerASN
	// is not set.
	// +optional
	DynamicASN DynamicASNMode `json:"dynamicASN,omitempty"`
	// PeerAddress is the router's address.
	PeerAddress string `json:"peerAddress"`
	// PeerPort is the router's BGP port.
	// +optional
	// +kubebuilder:default=179
	PeerPort uint16 `json:"peerPort,omitempty"`
	// SourceAddress is the node address to open the session from.
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`
	// RouterID overrides the BGP router identifier (default: node address).
	// +optional
	RouterID string `json:"routerID,omitempty"`
	// HoldTime is the proposed hold time.
	// +optional
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between KEEPALIVE messages.
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// ConnectTime is the time between attempts to connect.
	// +optional
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`
	// EBGPMultiHop allows the eBGP peer to be more than one hop away.
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`
	// Password is the TCP MD5 password, in clear text. Prefer PasswordSecret.
	// +optional
	Password string `json:"password,omitempty"`
	// PasswordSecret names a Secret of type kubernetes.io/basic-auth whose
	// "password" key holds the TCP MD5 password.
	// +optional
	PasswordSecret corev1.SecretReference `json:"passwordSecret,omitempty"`
	// NodeSelectors limit the nodes that open this session. Empty means all.
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	// EnableGracefulRestart announces the graceful restart capability.
	// +optional
	EnableGracefulRestart bool `json:"enableGracefulRestart,omitempty"`
	// DisableMP carries each address family on its own session instead of
	// multiprotocol BGP on one.
	// +optional
	DisableMP bool `json:"disableMP,omitempty"`
}


// BGPPeer is a router the speakers peer with.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=bgppeer
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=`.spec.myASN`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPPeerSpec `json:"spec"`
}

// BGPPeerList is a list of BGPPeer.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

// CommunitySpec names BGP community values.
type CommunitySpec struct {
	// Communities are named values usable in BGPAdvertisement.communities.
	// +optional
	Communities []CommunityAlias `json:"communities,omitempty"`
}

// CommunityAlias gives a community value a name.
type CommunityAlias struct {
	// Name is how BGPAdvertisements refer to the value.
	Name string `json:"name"`
	// Value is a standard ("65535:65282") or large ("large:1:2:3") community.
	Value string `json:"value"`
}

// Community names BGP community values for BGPAdvertisements.
//
// +kubebuilder:object:root=true
type Community struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec CommunitySpec `json:"spec,omitempty"`
}

// CommunityList is a list of Community.
//
// +kubebuilder:object:root=true
type CommunityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Community `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPPeer{}, &BGPPeerList{}, &Community{}, &CommunityList{})
}
