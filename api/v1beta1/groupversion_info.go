// Package v1beta1 holds the ironlb.io/v1beta1 API: address pools and the
// advertisement, peer and community kinds the speaker reads. Kinds and field
// names follow MetalLB's so that migrating is a rename of the group.
//
// +kubebuilder:object:generate=true
// +groupName=ironlb.io
package v1beta1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the group and version of every kind in this package.
var GroupVersion = schema.GroupVersion{Group: "ironlb.io", Version: "v1beta1"}

var (
	// SchemeBuilder registers this package's kinds.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds this package's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
