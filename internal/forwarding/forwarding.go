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

// Service is what forwarding reads of a LoadBalancer Service (ServiceOf).
type Service struct {
	// Key is the Service's namespace/name.
	Key string
	// IPs are its load-balancer addresses: distinct, IPv4-mapped ones
	// made IPv4, none with a zone.
	IPs []netip.Addr
	// Ports are its ports with a protocol and number a rule can match.
	Ports []Port
}

// Port is a port of a Service or of an EndpointSlice. A Service port
// finds its target in a slice by name and protocol, as in kube-proxy.
type Port struct {
	Name     string
	Protocol Protocol
	Port     uint16
}

// Endpoints is what forwarding reads of one EndpointSlice for one node
// (EndpointsOf): the slice's ports, and the address of each of its ready
// endpoints on that node.
type Endpoints struct {
	IPv6  bool
	Ports []Port
	// addrs are the addresses, of the slice's family, packed: 4 or 16
	// bytes each. A speaker keeps one Endpoints per slice; at 10,000
	// slices of 10 endpoints, netip.Addr's 24 bytes would be 2 MB more.
	addrs []byte
}

// Len is the number of addresses.
func (e *Endpoints) Len() int { return len(e.addrs) / e.size() }

// Addr is the i'th address.
func (e *Endpoints) Addr(i int) netip.Addr {
	if e.IPv6 {
		return netip.AddrFrom16([16]byte(e.addrs[i*16:]))
	}
	return netip.AddrFrom4([4]byte(e.addrs[i*4:]))
}

func (e *Endpoints) size() int {
	if e.IPv6 {
		return 16
	}
	return 4
}

// ServiceOf reads svc; false when it is not a LoadBalancer.
func ServiceOf(svc *corev1.Service) (Service, bool) {
	out := Service{Key: svc.Namespace + "/" + svc.Name}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return out, false
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil || ip.Zone() != "" {
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(out.IPs, ip) {
			out.IPs = append(out.IPs, ip)
		}
	}
	for _, sp := range svc.Spec.Ports {
		if proto, ok := protocol(sp.Protocol); ok && sp.Port > 0 && sp.Port <= 65535 {
			out.Ports = append(out.Ports, Port{Name: sp.Name, Protocol: proto, Port: uint16(sp.Port)})
		}
	}
	return out, true
}

// EndpointsOf reads es for node. Only its ready endpoints on node count
// (a nil ready condition means ready, as the API says), and of each only
// the first address: consumers may use no other, the rest are fungible
// copies of it. An address whose family disagrees with the slice's
// address type is not trusted. A slice of neither IP family has none.
func EndpointsOf(node string, es *discoveryv1.EndpointSlice) Endpoints {
	out := Endpoints{IPv6: es.AddressType == discoveryv1.AddressTypeIPv6}
	if es.AddressType != discoveryv1.AddressTypeIPv4 && !out.IPv6 {
		return out
	}
	for _, p := range es.Ports {
		proto := TCP
		if p.Protocol != nil {
			var ok bool
			if proto, ok = protocol(*p.Protocol); !ok {
				continue
			}
		}
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		out.Ports = append(out.Ports, Port{Name: ptrValue(p.Name), Protocol: proto, Port: uint16(*p.Port)})
	}
	n := 0
	for _, ep := range es.Endpoints {
		if local(node, ep) {
			n++
		}
	}
	out.addrs = make([]byte, 0, n*out.size())
	for _, ep := range es.Endpoints {
		if !local(node, ep) {
			continue
		}
		ip, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || ip.Zone() != "" || ip.Is4() == out.IPv6 || ip.Is4In6() {
			continue
		}
		if out.IPv6 {
			b := ip.As16()
			out.addrs = append(out.addrs, b[:]...)
		} else {
			b := ip.As4()
			out.addrs = append(out.addrs, b[:]...)
		}
	}
	return out
}

// local says ep is ready, on node, and has an address.
func local(node string, ep discoveryv1.Endpoint) bool {
	return ep.NodeName != nil && *ep.NodeName == node && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && len(ep.Addresses) > 0
}

func ptrValue[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

// ForService returns the rules a node programs for one Service, from the
// Service and its EndpointSlices read for that node (in any order): for
// each address and port, the node's ready endpoints of the address's
// family, at the target port the slice gives the Service port. Pure and
// deterministic: the result is sorted by Key, each rule's endpoints sorted
// and distinct. A speaker keeps it until the Service or one of its slices
// changes, and Merge combines the Services'.
//
// A node forwards only to its own pods, whatever the Service's
// externalTrafficPolicy. For Local that is the policy itself. For Cluster,
// reaching pods on other nodes would need either SNAT to this node (losing
// the client's IP, which is what this dataplane exists to keep) or an
// encapsulation or routing arrangement with the other nodes; both are out
// of scope here. A key with no local endpoint gets no rule, so the packet
// goes on to whatever else handles it (kube-proxy, if it runs).
func ForService(svc Service, eps []*Endpoints) []Rule {
	var out []Rule
	for _, vip := range svc.IPs {
		for _, sp := range svc.Ports {
			k := Key{VIP: vip, Protocol: sp.Protocol, Port: sp.Port}
			if slices.ContainsFunc(out, func(r Rule) bool { return r.Key == k }) {
				continue
			}
			if e := localEndpoints(vip.Is6(), sp, eps); len(e) > 0 {
				if out == nil {
					out = make([]Rule, 0, len(svc.IPs)*len(svc.Ports))
				}
				out = append(out, Rule{Key: k, Service: svc.Key, Endpoints: e})
			}
		}
	}
	slices.SortFunc(out, func(a, b Rule) int { return a.Key.Compare(b.Key) })
	return slices.Clip(out)
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

// localEndpoints are the endpoints of one family for the service port
// sp, sorted and distinct; exactly as long as it needs to be, since a
// speaker keeps one for every Service.
func localEndpoints(v6 bool, sp Port, eps []*Endpoints) []netip.AddrPort {
	n := 0
	for _, es := range eps {
		if _, ok := targetPort(es, v6, sp); ok {
			n += es.Len()
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]netip.AddrPort, 0, n)
	for _, es := range eps {
		if port, ok := targetPort(es, v6, sp); ok {
			for i := range es.Len() {
				out = append(out, netip.AddrPortFrom(es.Addr(i), port))
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	out = slices.Compact(out)
	if len(out) < cap(out)/2 {
		out = slices.Clone(out)
	}
	return out
}

// targetPort is the port of es that service port sp reaches: matched by
// name and protocol (an unnamed service port matches an unnamed slice
// port); false when es is of the other family or has none.
func targetPort(es *Endpoints, v6 bool, sp Port) (uint16, bool) {
	if es.IPv6 != v6 {
		return 0, false
	}
	for _, p := range es.Ports {
		if p.Name == sp.Name && p.Protocol == sp.Protocol {
			return p.Port, true
		}
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
