package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/allocator"
)

// annotation returns the value of an IronLB annotation, falling back to its
// MetalLB aliases, so that Services written for MetalLB keep working.
func annotation(svc *corev1.Service, name string) string {
	if v, ok := svc.Annotations[name]; ok {
		return v
	}
	for _, alias := range v1beta1.AnnotationAliases[name] {
		if v, ok := svc.Annotations[alias]; ok {
			return v
		}
	}
	return ""
}

// handles reports whether the controller is responsible for svc: a
// LoadBalancer Service of our class, or of no class when unclassed services
// are ours.
func handles(svc *corev1.Service, class string, unclassed bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return unclassed
	}
	return *svc.Spec.LoadBalancerClass == class
}

// request turns a Service into what the allocator needs. An error means the
// Service asks for something malformed; the message says which annotation or
// field.
func request(svc *corev1.Service, nsLabels map[string]string) (allocator.Service, error) {
	req := allocator.Service{
		Key:             svc.Namespace + "/" + svc.Name,
		Namespace:       svc.Namespace,
		NamespaceLabels: nsLabels,
		Labels:          svc.Labels,
		Pool:            strings.TrimSpace(annotation(svc, v1beta1.AnnotationAddressPool)),
		SharingKey:      strings.TrimSpace(annotation(svc, v1beta1.AnnotationAllowSharedIP)),
	}
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			req.Families = append(req.Families, allocator.IPv6)
		} else {
			req.Families = append(req.Families, allocator.IPv4)
		}
	}
	if len(req.Families) == 0 {
		req.Families = []allocator.Family{allocator.IPv4}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			req.Policy = allocator.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			req.Policy = allocator.RequireDualStack
		}
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		// Services sharing an address with eTP Local must send traffic to the
		// same pods, or one node would attract traffic it cannot serve.
		req.BackendKey = labels.Set(svc.Spec.Selector).String()
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		req.Ports = append(req.Ports, allocator.Port{Protocol: string(proto), Port: p.Port})
	}

	ips := annotation(svc, v1beta1.AnnotationLoadBalancerIPs)
	field := v1beta1.AnnotationLoadBalancerIPs
	if ips == "" && svc.Spec.LoadBalancerIP != "" {
		ips, field = svc.Spec.LoadBalancerIP, "spec.loadBalancerIP"
	}
	if ips != "" {
		for _, s := range strings.Split(ips, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return req, fmt.Errorf("%s: %q is not an IP address", field, s)
			}
			ip = ip.Unmap()
			if slices.ContainsFunc(req.RequestedIPs, func(o netip.Addr) bool { return o.Is4() == ip.Is4() }) {
				return req, fmt.Errorf("%s: %q asks for two addresses of one family", field, ips)
			}
			req.RequestedIPs = append(req.RequestedIPs, ip)
		}
	}
	return req, nil
}

// ingressIPs reads the addresses a Service holds now from its status.
// Hostnames and unparsable entries are ignored: they are not ours.
func ingressIPs(svc *corev1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

// ingress is the status the controller writes for ips. The mode is always
// written: the API server defaults it to VIP, and leaving it out would make
// every comparison with the stored status differ.
func ingress(ips []netip.Addr, mode corev1.LoadBalancerIPMode) []corev1.LoadBalancerIngress {
	if mode == "" {
		mode = corev1.LoadBalancerIPModeVIP
	}
	out := make([]corev1.LoadBalancerIngress, 0, len(ips))
	for _, ip := range ips {
		out = append(out, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &mode})
	}
	return out
}
