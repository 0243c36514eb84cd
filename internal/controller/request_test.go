package controller

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/internal/allocator"
)

func TestRequest(t *testing.T) {
	local := corev1.ServiceExternalTrafficPolicyLocal
	dual := corev1.IPFamilyPolicyRequireDualStack
	tests := []struct {
		name    string
		svc     corev1.Service
		check   func(allocator.Service) string
		wantErr string
	}{{
		name: "defaults",
		svc:  corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		check: func(r allocator.Service) string {
			want := allocator.Service{Key: "ns/svc", Namespace: "ns", Families: []allocator.Family{allocator.IPv4},
				Ports: []allocator.Port{{Protocol: "TCP", Port: 80}}}
			if !reflect.DeepEqual(r, want) {
				return fmtAny(r)
			}
			return ""
		},
	}, {
		name: "ironlb annotation wins over metallb alias",
		svc: corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			"ironlb.io/loadBalancerIPs":           "10.0.0.1, fd00::1",
			"metallb.universe.tf/loadBalancerIPs": "10.0.0.2",
			"metallb.io/address-pool":             "gold",
			"metallb.universe.tf/allow-shared-ip": "k",
		}}},
		check: func(r allocator.Service) string {
			if !reflect.DeepEqual(r.RequestedIPs, []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}) || r.Pool != "gold" || r.SharingKey != "k" {
				return fmtAny(r)
			}
			return ""
		},
	}, {
		name: "spec.loadBalancerIP used when no annotation",
		svc:  corev1.Service{Spec: corev1.ServiceSpec{LoadBalancerIP: "::ffff:10.1.1.1"}},
		check: func(r allocator.Service) string {
			if !reflect.DeepEqual(r.RequestedIPs, []netip.Addr{netip.MustParseAddr("10.1.1.1")}) {
				return fmtAny(r.RequestedIPs)
			}
			return ""
		},
	}, {
		name: "eTP Local sets the backend key, dual-stack families kept in order",
		svc: corev1.Service{Spec: corev1.ServiceSpec{ExternalTrafficPolicy: local, Selector: map[string]string{"app": "a"},
			IPFamilyPolicy: &dual, IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}}},
		check: func(r allocator.Service) string {
			if r.BackendKey != "app=a" || r.Policy != allocator.RequireDualStack || !reflect.DeepEqual(r.Families, []allocator.Family{allocator.IPv6, allocator.IPv4}) {
				return fmtAny(r)
			}
			return ""
		},
	}, {
		name:    "malformed address named",
		svc:     corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"metallb.io/loadBalancerIPs": "10.0.0.300"}}},
		wantErr: `ironlb.io/loadBalancerIPs: "10.0.0.300" is not an IP address`,
	}, {
		name:    "two of one family",
		svc:     corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"ironlb.io/loadBalancerIPs": "10.0.0.1,10.0.0.2"}}},
		wantErr: "two addresses of one family",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.svc.Name, tt.svc.Namespace = "svc", "ns"
			got, err := request(&tt.svc, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.check(got); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestHandles(t *testing.T) {
	ours, theirs := "ironlb.io/ironlb", "other/lb"
	lb := func(class *string) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
	}
	for _, tt := range []struct {
		svc       *corev1.Service
		unclassed bool
		want      bool
	}{
		{lb(nil), true, true},
		{lb(nil), false, false},
		{lb(&ours), false, true},
		{lb(&theirs), true, false},
		{&corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}, true, false},
	} {
		if got := handles(tt.svc, ours, tt.unclassed); got != tt.want {
			t.Errorf("handles(type %s, class %v, unclassed %v) = %v", tt.svc.Spec.Type, tt.svc.Spec.LoadBalancerClass, tt.unclassed, got)
		}
	}
}

func fmtAny(v any) string { return fmt.Sprintf("got %+v", v) }
