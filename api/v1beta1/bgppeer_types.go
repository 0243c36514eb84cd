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
//
// +kubebuilder:validation:XValidation:rule="has(self.peerASN) != has(self.dynamicASN)",message="exactly one of peerASN and dynamicASN must be set"
// +kubebuilder:validation:XValidation:rule=`!has(self.holdTime) || !has(self.keepaliveTime) || !self.holdTime.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || !self.keepaliveTime.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self.keepaliveTime) < duration(self.holdTime)`,message="keepaliveTime must be less than holdTime",fieldPath=".keepaliveTime"
// +kubebuilder:validation:XValidation:rule="!has(self.password) || size(self.password) == 0 || !has(self.passwordSecret) || !has(self.passwordSecret.name) || size(self.passwordSecret.name) == 0",message="password and passwordSecret are mutually exclusive",fieldPath=".password"
type BGPPeerSpec struct {
	// MyASN is the speakers' autonomous system number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:Format=int64
	MyASN uint32 `json:"myASN"`
	// PeerASN is the router's autonomous system number.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:Format=int64
	PeerASN uint32 `json:"peerASN,omitempty"`
	// DynamicASN accepts the router's ASN as sent in its OPEN when PeerASN
	// is not set.
	// +optional
	DynamicASN DynamicASNMode `json:"dynamicASN,omitempty"`
	// PeerAddress is the router's address.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be a valid IP address"
	PeerAddress string `json:"peerAddress"`
	// PeerPort is the router's BGP port.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PeerPort uint16 `json:"peerPort,omitempty"`
	// SourceAddress is the node address to open the session from.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be a valid IP address"
	SourceAddress string `json:"sourceAddress,omitempty"`
	// RouterID overrides the BGP router identifier (default: node address).
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	RouterID string `json:"routerID,omitempty"`
	// HoldTime is the proposed hold time: 0 (no keepalives) or at least 3s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')`,message="must be a duration such as 90s or 1m30s"
	// +kubebuilder:validation:XValidation:rule=`!self.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self) == duration('0s') || duration(self) >= duration('3s')`,message="must be 0 or at least 3s"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between KEEPALIVE messages, less than
	// HoldTime when both are set.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')`,message="must be a duration such as 90s or 1m30s"
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// ConnectTime is the time between attempts to connect.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')`,message="must be a duration such as 90s or 1m30s"
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`
	// EBGPMultiHop allows the eBGP peer to be more than one hop away.
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`
	// Password is the TCP MD5 password, in clear text. Prefer PasswordSecret.
	// +optional
	// +kubebuilder:validation:MaxLength=80
	Password string `json:"password,omitempty"`
	// PasswordSecret names a Secret of type kubernetes.io/basic-auth whose
	// "password" key holds the TCP MD5 password.
	// +optional
	PasswordSecret corev1.SecretReference `json:"passwordSecret,omitempty"`
	// NodeSelectors limit the nodes that open this session. Empty means all.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || size(self.matchExpressions) <= 32",message="at most 32 matchExpressions are allowed",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || self.matchExpressions[i].operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['In', 'NotIn']) || (has(self.matchExpressions[i].values) && size(self.matchExpressions[i].values) > 0))",message="matchExpressions with operator In or NotIn need values",fieldPath=".matchExpressions"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.matchExpressions) || [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].all(i, i >= size(self.matchExpressions) || !(self.matchExpressions[i].operator in ['Exists', 'DoesNotExist']) || !has(self.matchExpressions[i].values) || size(self.matchExpressions[i].values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values",fieldPath=".matchExpressions"
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
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1024
	Communities []CommunityAlias `json:"communities,omitempty"`
}

// CommunityAlias gives a community value a name.
type CommunityAlias struct {
	// Name is how BGPAdvertisements refer to the value: a DNS-1123 label
	// ("no-export-a"), so that it cannot be mistaken for a value.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Value is a standard ("65535:65282") or large ("large:1:2:3") community.
	// +kubebuilder:validation:MaxLength=38
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[0-9]{1,5}:[0-9]{1,5}$') || self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$')`,message="must be a standard community A:B or a large community large:A:B:C"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^[0-9]{1,5}:[0-9]{1,5}$') || self.split(':').all(n, int(n) <= 65535)`,message="a standard community's numbers must be 0 to 65535"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') || self.split(':').all(n, n == 'large' || int(n) <= 4294967295)`,message="a large community's numbers must be 0 to 4294967295"
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
