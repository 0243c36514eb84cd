package speaker

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
)

// snapshot is the cluster state one election reads, as plain lists.
type snapshot struct {
	// services are the LoadBalancer Services with an address, by key;
	// electionChanged says whether what the election reads of them
	// changed since the last snapshot.
	services        map[string]*service
	electionChanged bool
	nodes           []corev1.Node
	pools           []v1beta1.IPAddressPool
	advertisements  []v1beta1.L2Advertisement
	// speakers are the speaker Pods, which say how many speakers should
	// exist.
	speakers []corev1.Pod
	// BGP configuration, and the Secrets in the speaker's namespace that
	// hold BGPPeer passwords.
	bgpPeers          []v1beta1.BGPPeer
	bgpAdvertisements []v1beta1.BGPAdvertisement
	communities       []v1beta1.Community
	secrets           []corev1.Secret
}

// SpeakerLabels select the speaker Pods (the DaemonSet's pod template
// carries them).
var SpeakerLabels = map[string]string{"app.kubernetes.io/name": "ironlb", "app.kubernetes.io/component": "speaker"}

// input turns a snapshot and the memberlist live set into the election's
// input. Invalid selectors (which the API server's validation keeps out)
// make an advertisement select nothing rather than everything. Pure.
func input(s snapshot, alive []string) election.Input {
	in := election.Input{}
	live := map[string]bool{}
	for _, n := range alive {
		live[n] = true
	}
	readyNode := map[string]bool{}
	for i := range s.nodes {
		n := &s.nodes[i]
		in.Nodes = append(in.Nodes, election.Node{
			Name:               n.Name,
			Labels:             n.Labels,
			Alive:              live[n.Name],
			NetworkUnavailable: condition(n, corev1.NodeNetworkUnavailable) == corev1.ConditionTrue,
		})
		readyNode[n.Name] = condition(n, corev1.NodeReady) == corev1.ConditionTrue
	}
	// A speaker should exist on every Ready node its DaemonSet runs on. A
	// partition does not change that count, so the smaller side loses
	// quorum; a node that dies goes NotReady and stops counting, so a
	// survivor of a two-node cluster gets quorum back then.
	counted := map[string]bool{}
	for i := range s.speakers {
		n := s.speakers[i].Spec.NodeName
		if n != "" && readyNode[n] && !counted[n] && s.speakers[i].DeletionTimestamp == nil {
			counted[n] = true
			in.ExpectedSpeakers++
		}
	}
	for i := range s.pools {
		in.Pools = append(in.Pools, election.Pool{Name: s.pools[i].Name, Labels: s.pools[i].Labels})
	}
	for i := range s.advertisements {
		a := &s.advertisements[i]
		ad := election.Advertisement{Name: a.Name, Pools: a.Spec.IPAddressPools, Interfaces: a.Spec.Interfaces}
		var ok bool
		if ad.PoolSelectors, ok = selectors(a.Spec.IPAddressPoolSelectors); !ok {
			continue
		}
		if ad.NodeSelectors, ok = selectors(a.Spec.NodeSelectors); !ok {
			continue
		}
		in.Advertisements = append(in.Advertisements, ad)
	}
	for _, sv := range s.services {
		in.Services = append(in.Services, election.Service{
			Key: sv.Key, IPs: sv.IPs, Pool: sv.pool, Local: sv.local, ReadyNodes: sv.ready,
		})
	}
	return in
}

func condition(n *corev1.Node, t corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func selectors(in []metav1.LabelSelector) ([]labels.Selector, bool) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
