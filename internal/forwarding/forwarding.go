// Package forwarding computes which service traffic a node forwards to
// which of its own endpoints: the desired dataplane state, as plain values.
package forwarding

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Protocol is a transport protocol a rule matches, lowercase as nft
// spells it.
type Protocol string

// The protocols a Service port may name.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// Key is what a packet is matched on: the service IP, the transport
// protocol and the service port.
type Key struct {
	VIP      netip.Addr
	Protocol Protocol
	Port     uint16
}

// Compare orders keys by address, protocol, then port.
func (k Key) Compare(o Key) int {
	if c := k.VIP.Compare(o.VIP); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Protocol, o.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(k.Port, o.Port)
}

// Rule sends traffic for Key to one of Endpoints, all on this node and of
// the VIP's address family.
type Rule struct {
	Key
	// Service is the Service (namespace/name) the rule comes from.
	Service string
	// Endpoints are sorted and distinct; never empty.
	Endpoints []netip.AddrPort
}

// ForService returns the rules node should program for one Service:
// for each of its ingress IPs and ports, its ready endpoints on node, with
// the target port resolved by port name from its EndpointSlices (in any
// order). Pure and deterministic: the result is sorted by Key. A speaker
// keeps it until the Service or one of its slices changes, and Merge
// combines the Services'.
//
// A node forwards only to its own pods, whatever the Service's
// externalTrafficPolicy. For Local that is the policy itself. For Cluster,
// reaching pods on other nodes would need either SNAT to this node (losing
// the client's IP, which is what this dataplane exists to keep) or an
// encapsulation or routing arrangement with the other nodes; both are out
// of scope here. A key with no local endpoint gets no rule, so the packet
// goes on to whatever else handles it (kube-proxy, if it runs).
func ForService(node string, svc *corev1.Service, eps []*discoveryv1.EndpointSlice) []Rule {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	svcKey := svc.Namespace + "/" + svc.Name
	var out []Rule
	for _, vip := range ingressIPs(svc) {
		for _, sp := range svc.Spec.Ports {
			proto, ok := protocol(sp.Protocol)
			if !ok || sp.Port <= 0 || sp.Port > 65535 {
				continue
			}
			k := Key{VIP: vip, Protocol: proto, Port: uint16(sp.Port)}
			if slices.ContainsFunc(out, func(r Rule) bool { return r.Key == k }) {
				continue
			}
			if e := localEndpoints(node, vip.Is4(), sp.Name, proto, eps); len(e) > 0 {
				out = append(out, Rule{Key: k, Service: svcKey, Endpoints: e})
			}
		}
	}
	slices.SortFunc(out, func(a, b Rule) int { return a.Key.Compare(b.Key) })
	return out
}

// Merge combines the rules of many Services into one rule per Key. Where
// two Services claim a key (which the allocator's sharing rules should
// prevent), the one first by namespace/name wins, so the result does not
// depend on the order of the lists.
func Merge(perService ...[]Rule) map[Key]Rule {
	n := 0
	for _, rs := range perService {
		n += len(rs)
	}
	out := make(map[Key]Rule, n)
	for _, rs := range perService {
		for _, r := range rs {
			if o, taken := out[r.Key]; taken && serviceOrder(o.Service, r.Service) <= 0 {
				continue
			}
			out[r.Key] = r
		}
	}
	return out
}

// serviceOrder orders namespace/name keys by namespace, then name: not
// the same as comparing the strings, since '/' sorts before letters but
// after '-' and '.'.
func serviceOrder(a, b string) int {
	ans, an, _ := strings.Cut(a, "/")
	bns, bn, _ := strings.Cut(b, "/")
	return cmp.Or(cmp.Compare(ans, bns), cmp.Compare(an, bn))
}

// localEndpoints are the ready endpoints on node, of one family, for the
// service port named portName, sorted and distinct.
func localEndpoints(node string, v4 bool, portName string, proto Protocol, eps []*discoveryv1.EndpointSlice) []netip.AddrPort {
	want := discoveryv1.AddressTypeIPv6
	if v4 {
		want = discoveryv1.AddressTypeIPv4
	}
	var out []netip.AddrPort
	for _, es := range eps {
		if es.AddressType != want {
			continue
		}
		port, ok := targetPort(es.Ports, portName, proto)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			// The API says a nil ready condition means ready.
			if ep.NodeName == nil || *ep.NodeName != node || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			// Consumers may use only the first address: the rest are
			// fungible copies of it.
			if len(ep.Addresses) == 0 {
				continue
			}
			ip, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				continue
			}
			// The slice's address type says the family; an address
			// that disagrees (or an IPv4-mapped IPv6 one) is not trusted.
			if ip.Zone() != "" || ip.Is4() != v4 || ip.Is4In6() {
				continue
			}
			ap := netip.AddrPortFrom(ip, port)
			if !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// targetPort finds the slice's port for a service port, matched by name
// and protocol as kube-proxy does (an unnamed service port matches an
// unnamed slice port; a nil protocol is TCP).
func targetPort(ports []discoveryv1.EndpointPort, name string, proto Protocol) (uint16, bool) {
	for _, p := range ports {
		n := ""
		if p.Name != nil {
			n = *p.Name
		}
		pp := TCP
		if p.Protocol != nil {
			var ok bool
			if pp, ok = protocol(*p.Protocol); !ok {
				continue
			}
		}
		if n != name || pp != proto || p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		return uint16(*p.Port), true
	}
	return 0, false
}

func protocol(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return "", false
}

// ingressIPs are the Service's load-balancer addresses, distinct, with
// IPv4-mapped IPv6 addresses turned into IPv4 (as the speaker's election
// does) and zoned ones dropped.
func ingressIPs(svc *corev1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil || ip.Zone() != "" {
			continue
		}
		ip = ip.Unmap()
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	return ips
}
