package speaker

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/kube"
)

// api is the speaker's view of the API server: an informer for each kind
// a sync reads, and typed clients for what it reads once or writes.
type api struct {
	// Cluster-wide.
	nodes, services, slices cache.SharedIndexInformer
	// In the speaker's namespace; speakers only those with SpeakerLabels.
	speakers, pools, l2Ads, peers, bgpAds, communities, secrets cache.SharedIndexInformer
	l2Statuses, sessionStates, bgpStatuses                      cache.SharedIndexInformer

	nodeClient    kube.Resource[*corev1.Node, *corev1.NodeList]
	secretClient  kube.Resource[*corev1.Secret, *corev1.SecretList]
	l2Client      kube.Resource[*v1beta1.ServiceL2Status, *v1beta1.ServiceL2StatusList]
	sessionClient kube.Resource[*v1beta1.BGPSessionState, *v1beta1.BGPSessionStateList]
	bgpClient     kube.Resource[*v1beta1.ServiceBGPStatus, *v1beta1.ServiceBGPStatusList]
}

// newAPI makes the clients and informers; the informers run once started.
// Services, EndpointSlices and ServiceL2Status enter the cache as the
// small values a sync reads (trim.go).
func newAPI(c *kube.Client, node, ns string) *api {
	nodes := kube.For[corev1.Node, corev1.NodeList](c, "nodes", "")
	secrets := kube.For[corev1.Secret, corev1.SecretList](c, "secrets", ns)
	services := kube.For[corev1.Service, corev1.ServiceList](c, "services", "")
	slices := kube.For[discoveryv1.EndpointSlice, discoveryv1.EndpointSliceList](c, "endpointslices", "")
	pods := kube.For[corev1.Pod, corev1.PodList](c, "pods", ns)
	pools := kube.For[v1beta1.IPAddressPool, v1beta1.IPAddressPoolList](c, "ipaddresspools", ns)
	l2Ads := kube.For[v1beta1.L2Advertisement, v1beta1.L2AdvertisementList](c, "l2advertisements", ns)
	peers := kube.For[v1beta1.BGPPeer, v1beta1.BGPPeerList](c, "bgppeers", ns)
	bgpAds := kube.For[v1beta1.BGPAdvertisement, v1beta1.BGPAdvertisementList](c, "bgpadvertisements", ns)
	communities := kube.For[v1beta1.Community, v1beta1.CommunityList](c, "communities", ns)
	a := &api{
		nodeClient:    nodes,
		secretClient:  secrets,
		l2Client:      kube.For[v1beta1.ServiceL2Status, v1beta1.ServiceL2StatusList](c, "servicel2statuses", ns),
		sessionClient: kube.For[v1beta1.BGPSessionState, v1beta1.BGPSessionStateList](c, "bgpsessionstates", ns),
		bgpClient:     kube.For[v1beta1.ServiceBGPStatus, v1beta1.ServiceBGPStatusList](c, "servicebgpstatuses", ns),
	}
	a.nodes = nodes.Informer("", nil)
	t := newTrimmer(node)
	a.services = services.Informer("", t.service)
	a.slices = slices.Informer("", t.slice)
	a.speakers = pods.Informer(labels.SelectorFromSet(SpeakerLabels).String(), nil)
	a.secrets = secrets.Informer("", nil)
	a.pools = pools.Informer("", nil)
	a.l2Ads = l2Ads.Informer("", nil)
	a.peers = peers.Informer("", nil)
	a.bgpAds = bgpAds.Informer("", nil)
	a.communities = communities.Informer("", nil)
	a.l2Statuses = a.l2Client.Informer("", t.l2Status)
	a.sessionStates = a.sessionClient.Informer("", nil)
	a.bgpStatuses = a.bgpClient.Informer("", nil)
	return a
}

func (a *api) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{
		a.nodes, a.services, a.slices, a.speakers, a.secrets, a.pools, a.l2Ads,
		a.peers, a.bgpAds, a.communities, a.l2Statuses, a.sessionStates, a.bgpStatuses,
	}
}

// start runs the informers until run ends and waits until each has listed
// everything once; false if wait ended first.
func (a *api) start(run, wait context.Context) bool {
	var synced []cache.InformerSynced
	for _, inf := range a.informers() {
		go inf.RunWithContext(run)
		synced = append(synced, inf.HasSynced)
	}
	return cache.WaitForCacheSync(wait.Done(), synced...)
}
