package election

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/labels"
)

// ExcludeLabel on a Node keeps it from announcing, whatever its value, as
// Kubernetes' own service controller does for cloud load balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Node is one cluster node as the speaker sees it.
type Node struct {
	Name   string
	Labels map[string]string
	// Alive means the node's speaker is in the memberlist live set.
	Alive bool
	// NetworkUnavailable mirrors the Node condition NetworkUnavailable=True.
	NetworkUnavailable bool
}

// Pool is an IPAddressPool; only its name and labels matter here.
type Pool struct {
	Name   string
	Labels map[string]string
}

// Advertisement is one L2Advertisement with its selectors already parsed.
// A nil selector matches nothing, as apimachinery converts a nil
// *metav1.LabelSelector to labels.Nothing().
type Advertisement struct {
	Name string
	// Pools names the pools announced. With PoolSelectors also empty, every
	// pool is announced.
	Pools         []string
	PoolSelectors []labels.Selector
	// NodeSelectors limit the announcing nodes: empty means all, otherwise
	// a node must match at least one.
	NodeSelectors []labels.Selector
	// Interfaces limit where answers are sent: empty means all.
	Interfaces []string
}

// Service is one LoadBalancer Service that holds addresses.
type Service struct {
	Key string // namespace/name
	// IPs come from status.loadBalancer.ingress.
	IPs []netip.Addr
	// Pool is the annotation ironlb.io/ip-allocated-from-pool.
	Pool string
	// Local is externalTrafficPolicy: Local.
	Local bool
	// ReadyNodes are the nodes with at least one ready endpoint.
	ReadyNodes []string
}

// Input is everything the election reads. Order within slices never
// changes the Result.
type Input struct {
	Nodes          []Node
	Pools          []Pool
	Advertisements []Advertisement
	Services       []Service
	// ExpectedSpeakers is how many speakers should exist (for example the
	// Ready nodes); quorum is computed against it, see HasQuorum.
	ExpectedSpeakers int
}

// Announcement says that Node answers ARP/NDP for IP on Interfaces.
type Announcement struct {
	IP   netip.Addr
	Node string
	// Interfaces are sorted and deduplicated; nil means all interfaces.
	Interfaces []string
	// Services are the keys of the Services sharing IP, sorted.
	Services []string
}

// ProblemKind classifies a Problem. Values are stable CamelCase words so
// they can be used as Event reasons and metric labels.
type ProblemKind string

const (
	// PoolNotAdvertised: no L2Advertisement selects the Service's pool (or
	// the pool is unknown).
	PoolNotAdvertised ProblemKind = "PoolNotAdvertised"
	// NoEligibleNode: the pool is advertised but no node may announce the
	// address; Problem.Reason says why.
	NoEligibleNode ProblemKind = "NoEligibleNode"
	// NoQuorum: this speaker sees too few live speakers to announce safely.
	NoQuorum ProblemKind = "NoQuorum"
)

// Reason refines NoEligibleNode: the filter that removed the last candidate.
type Reason string

const (
	ReasonNotSelected        Reason = "NotSelected"        // no node matches the advertisements' node selectors
	ReasonExcluded           Reason = "Excluded"           // every selected node carries ExcludeLabel
	ReasonNetworkUnavailable Reason = "NetworkUnavailable" // every remaining node has NetworkUnavailable
	ReasonNotAlive           Reason = "NotAlive"           // no remaining node is in the memberlist live set
	ReasonNoLocalEndpoint    Reason = "NoLocalEndpoint"    // Local: no remaining node has a ready endpoint
	ReasonNoEndpoint         Reason = "NoEndpoint"         // Cluster: the Service has no ready endpoint at all
	ReasonSharedIP           Reason = "SharedIP"           // no node is eligible for every Service sharing the address
)

// Problem is something to report on a Service (or, for NoQuorum, on the
// speaker). IP is set for NoEligibleNode, which is decided per address.
type Problem struct {
	Kind    ProblemKind
	Reason  Reason
	Service string
	Pool    string
	IP      netip.Addr
	Message string
}

// Result is the whole election. Every speaker computes the same Result
// from the same Input.
type Result struct {
	// Announcements are sorted by IP, one per address.
	Announcements []Announcement
	// Problems are sorted by Kind, Service, IP, Reason, Pool, Message.
	Problems []Problem
}

// For returns what node must announce, in IP order.
func (r Result) For(node string) []Announcement {
	var out []Announcement
	for _, a := range r.Announcements {
		if a.Node == node {
			out = append(out, a)
		}
	}
	return out
}
