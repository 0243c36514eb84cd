package speaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/bgp"
	"github.com/ironlb/ironlb/internal/routes"
)

// Event reasons on BGPPeers, stable CamelCase.
const (
	ReasonSessionEstablished    = "SessionEstablished"
	ReasonSessionDown           = "SessionDown"
	ReasonPasswordSecretMissing = "PasswordSecretMissing"
	// ReasonSessionRefused: the router's ASN is not of the BGPPeer's
	// dynamicASN kind.
	ReasonSessionRefused = "SessionRefused"
)

// Condition on BGPSessionState: false when the session cannot be opened
// as configured (its password Secret is missing, say).
const ConditionConfigured = "Configured"

// Labels on BGPSessionState and ServiceBGPStatus objects.
const (
	LabelNode = "ironlb.io/node"
	LabelPeer = "ironlb.io/peer"
)

// bgpState is the BGP half of the speaker: its sessions and what the last
// sync reported, to log and record only changes.
type bgpState struct {
	speaker  *bgp.Speaker
	problems map[string]bool
	states   map[string]string // peer → state last seen
}

// peerProblem keeps one peer from being configured.
type peerProblem struct {
	peer    *v1beta1.BGPPeer
	reason  string
	message string
}

// syncBGP applies this node's paths to its sessions, then writes the
// BGPSessionState and ServiceBGPStatus objects. It never blocks the
// layer-2 half: failures are logged and retried.
func (s *speaker) syncBGP(ctx context.Context, snap snapshot, res routes.Result) {
	if s.bgp == nil {
		s.bgp = &bgpState{
			speaker: bgp.New(bgp.Config{Node: s.cfg.NodeName, Log: s.log, Registry: s.cfg.Registry,
				OnChange: s.markDirty}),
			problems: map[string]bool{},
			states:   map[string]string{},
		}
	}
	v4, v6 := nodeAddrs(snap, s.cfg.NodeName)
	peers, problems := peerConfigs(snap, res.Peers, v4, v6)
	var errs []error
	if err := s.bgp.speaker.Apply(ctx, peers, res.Paths); err != nil {
		errs = append(errs, err)
	}
	s.reportBGPProblems(res.Problems, problems)
	if err := s.writeSessionStates(ctx, snap, res.Peers, problems); err != nil {
		errs = append(errs, err)
	}
	alive := s.members.Alive()
	s.bgpWrites.set(func(ctx context.Context) error {
		return errors.Join(s.writeServiceBGPStatuses(ctx, snap, res), s.removeGoneNodesBGPStatuses(ctx, snap, alive))
	})
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("bgp sync failed", "node", s.cfg.NodeName, "err", err)
		time.AfterFunc(time.Second, s.markDirty)
	}
}

// closeBGP withdraws every path and closes every session, so that routers
// drop this node at once rather than at hold-time expiry.
func (s *speaker) closeBGP() error {
	if s.bgp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.bgp.speaker.Close(ctx)
}

// routesInput turns a snapshot into the routes computation's input.
// Invalid selectors (which the API server keeps out) select nothing.
func routesInput(snap snapshot, node string) routes.Input {
	in := routes.Input{Node: node, Aliases: map[string]string{}}
	for i := range snap.nodes {
		n := &snap.nodes[i]
		in.Nodes = append(in.Nodes, routes.Node{Name: n.Name, Labels: n.Labels,
			NetworkUnavailable: condition(n, corev1.NodeNetworkUnavailable) == corev1.ConditionTrue})
	}
	for i := range snap.pools {
		in.Pools = append(in.Pools, routes.Pool{Name: snap.pools[i].Name, Labels: snap.pools[i].Labels})
	}
	for i := range snap.bgpPeers {
		p := &snap.bgpPeers[i]
		sels, ok := selectors(p.Spec.NodeSelectors)
		if !ok {
			continue
		}
		ibgp := p.Spec.PeerASN == p.Spec.MyASN || (p.Spec.PeerASN == 0 && p.Spec.DynamicASN == v1beta1.InternalASNMode)
		in.Peers = append(in.Peers, routes.Peer{Name: p.Name, IBGP: ibgp, NodeSelectors: sels})
	}
	for i := range snap.bgpAdvertisements {
		a := &snap.bgpAdvertisements[i]
		ad := routes.Advertisement{Name: a.Name, Pools: a.Spec.IPAddressPools, Peers: a.Spec.Peers,
			Length4: 32, Length6: 128, LocalPref: a.Spec.LocalPref, Communities: a.Spec.Communities}
		if a.Spec.AggregationLength != nil {
			ad.Length4 = int(*a.Spec.AggregationLength)
		}
		if a.Spec.AggregationLengthV6 != nil {
			ad.Length6 = int(*a.Spec.AggregationLengthV6)
		}
		var ok bool
		if ad.PoolSelectors, ok = selectors(a.Spec.IPAddressPoolSelectors); !ok {
			continue
		}
		if ad.NodeSelectors, ok = selectors(a.Spec.NodeSelectors); !ok {
			continue
		}
		in.Advertisements = append(in.Advertisements, ad)
	}
	for i := range snap.communities {
		for _, c := range snap.communities[i].Spec.Communities {
			in.Aliases[c.Name] = c.Value
		}
	}
	for _, sv := range snap.services {
		in.Services = append(in.Services, routes.Service{
			Key: sv.Key, IPs: sv.IPs, Pool: sv.pool, Local: sv.local, ReadyNodes: sv.ready,
		})
	}
	return in
}

// nodeAddrs are the node's first IPv4 and IPv6 InternalIPs: the default
// router ID and the next hops for the other address family.
func nodeAddrs(snap snapshot, node string) (v4, v6 netip.Addr) {
	for i := range snap.nodes {
		if snap.nodes[i].Name != node {
			continue
		}
		for _, a := range snap.nodes[i].Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type != corev1.NodeInternalIP || err != nil {
				continue
			}
			if ip = ip.Unmap(); ip.Is4() && !v4.IsValid() {
				v4 = ip
			} else if ip.Is6() && !v6.IsValid() {
				v6 = ip
			}
		}
	}
	return v4, v6
}

// peerConfigs builds the session of each peer this node opens. A peer
// whose password Secret is missing is left out (a session without the
// password would only be refused) and reported; the others go ahead.
func peerConfigs(snap snapshot, names []string, v4, v6 netip.Addr) ([]bgp.PeerConfig, map[string]peerProblem) {
	problems := map[string]peerProblem{}
	var out []bgp.PeerConfig
	for i := range snap.bgpPeers {
		p := &snap.bgpPeers[i]
		if !slices.Contains(names, p.Name) {
			continue
		}
		addr, err := netip.ParseAddr(p.Spec.PeerAddress)
		if err != nil {
			problems[p.Name] = peerProblem{p, "InvalidPeerAddress", fmt.Sprintf("peerAddress %q: %v", p.Spec.PeerAddress, err)}
			continue
		}
		pc := bgp.PeerConfig{
			Name: p.Name, MyASN: p.Spec.MyASN, PeerASN: p.Spec.PeerASN, DynamicASN: string(p.Spec.DynamicASN),
			Address: addr.Unmap(), Port: p.Spec.PeerPort,
			RouterID: v4, EBGPMultiHop: p.Spec.EBGPMultiHop, Password: p.Spec.Password,
			GracefulRestart: p.Spec.EnableGracefulRestart, DisableMP: p.Spec.DisableMP, NextHop4: v4, NextHop6: v6,
			HoldTime: dur(p.Spec.HoldTime), Keepalive: dur(p.Spec.KeepaliveTime), ConnectRetry: dur(p.Spec.ConnectTime),
		}
		if ip, err := netip.ParseAddr(p.Spec.SourceAddress); err == nil {
			pc.Source = ip.Unmap()
			// The session's own address is the better next hop for its family.
			if pc.Source.Is4() {
				pc.NextHop4 = pc.Source
			} else {
				pc.NextHop6 = pc.Source
			}
		}
		if ip, err := netip.ParseAddr(p.Spec.RouterID); err == nil {
			pc.RouterID = ip
		}
		if ref := p.Spec.PasswordSecret; ref.Name != "" {
			ns := ref.Namespace
			if ns == "" {
				ns = p.Namespace
			}
			pw, ok := secretPassword(snap.secrets, ns, ref.Name)
			if !ok {
				problems[p.Name] = peerProblem{p, ReasonPasswordSecretMissing,
					fmt.Sprintf("password Secret %s/%s not found or has no %q key; the session stays down", ns, ref.Name, corev1.BasicAuthPasswordKey)}
				continue
			}
			pc.Password = pw
		}
		out = append(out, pc)
	}
	return out, problems
}

func secretPassword(secrets []corev1.Secret, ns, name string) (string, bool) {
	for i := range secrets {
		if secrets[i].Namespace == ns && secrets[i].Name == name {
			pw, ok := secrets[i].Data[corev1.BasicAuthPasswordKey]
			return string(pw), ok && len(pw) > 0
		}
	}
	return "", false
}

func dur(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

// reportBGPProblems logs each new problem once, and records an Event on
// the BGPPeer for peer problems (each node sees its own, so each records).
func (s *speaker) reportBGPProblems(adProblems []routes.Problem, peerProblems map[string]peerProblem) {
	now := map[string]bool{}
	for _, p := range adProblems {
		key := "ad/" + p.Advertisement + "/" + p.Message
		now[key] = true
		if !s.bgp.problems[key] {
			s.log.Warn("bgp advertisement not applied", "advertisement", p.Advertisement, "node", s.cfg.NodeName, "err", p.Message)
		}
	}
	for name, p := range peerProblems {
		key := "peer/" + name + "/" + p.message
		now[key] = true
		if !s.bgp.problems[key] {
			s.log.Warn("bgp session not configured", "peer", name, "node", s.cfg.NodeName, "reason", p.reason, "err", p.message)
			s.events.Eventf(p.peer, corev1.EventTypeWarning, p.reason, "node %s: %s", s.cfg.NodeName, p.message)
		}
	}
	s.bgp.problems = now
}

// sessionStateName names a node's BGPSessionState for one peer: stable,
// unique, and a valid object name whatever the node and peer are called.
func sessionStateName(node, peer string) string {
	sum := sha256.Sum256([]byte(node + "\x00" + peer))
	return "bgp-" + hex.EncodeToString(sum[:8])
}

// writeSessionStates keeps one BGPSessionState per peer this node should
// peer with, and removes this node's others. It also records an Event on
// the BGPPeer when a session goes up or down.
func (s *speaker) writeSessionStates(ctx context.Context, snap snapshot, peers []string, problems map[string]peerProblem) error {
	have := map[string]*v1beta1.BGPSessionState{}
	for _, o := range s.api.sessionStates.GetStore().List() {
		if st := o.(*v1beta1.BGPSessionState); st.Labels[LabelNode] == s.cfg.NodeName {
			have[st.Name] = st
		}
	}
	byName := map[string]*v1beta1.BGPPeer{}
	for i := range snap.bgpPeers {
		byName[snap.bgpPeers[i].Name] = &snap.bgpPeers[i]
	}
	live := map[string]bgp.Status{}
	for _, st := range s.bgp.speaker.Sessions(ctx) {
		live[st.Peer] = st
	}
	want := map[string]bool{}
	var errs []error
	for _, peer := range peers {
		name := sessionStateName(s.cfg.NodeName, peer)
		want[name] = true
		st := live[peer]
		status := v1beta1.BGPSessionStateStatus{Node: s.cfg.NodeName, Peer: peer, State: st.State, PrefixesSent: st.PrefixesSent}
		if p := byName[peer]; p != nil {
			status.PeerAddress = p.Spec.PeerAddress
		}
		if status.State == "" {
			status.State = bgp.StateIdle
		}
		if !st.EstablishedSince.IsZero() {
			t := metav1.NewTime(st.EstablishedSince.Truncate(time.Second))
			status.EstablishedSince = &t
		}
		cur := have[name]
		cond := metav1.Condition{Type: ConditionConfigured, Status: metav1.ConditionTrue, Reason: "Configured", Message: "the session is configured"}
		if pp, bad := problems[peer]; bad {
			cond = metav1.Condition{Type: ConditionConfigured, Status: metav1.ConditionFalse, Reason: pp.reason, Message: pp.message}
		} else if st.Refused != "" {
			cond = metav1.Condition{Type: ConditionConfigured, Status: metav1.ConditionFalse, Reason: ReasonSessionRefused,
				Message: "session refused: " + st.Refused}
		}
		if cur != nil {
			status.Conditions = slices.Clone(cur.Status.Conditions)
		}
		meta.SetStatusCondition(&status.Conditions, cond)
		s.sessionEvent(byName[peer], peer, status.State, st.Refused)
		if cur == nil {
			cur = &v1beta1.BGPSessionState{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace,
				Labels: map[string]string{LabelNode: s.cfg.NodeName, LabelPeer: labelValue(peer)}}}
			created, err := s.api.sessionClient.Create(ctx, cur, metav1.CreateOptions{})
			if err != nil {
				if !apierrors.IsAlreadyExists(err) {
					errs = append(errs, fmt.Errorf("creating bgpsessionstate %s (node %s, peer %s): %w", name, s.cfg.NodeName, peer, err))
				}
				continue
			}
			cur = created
		}
		if sessionStatusEqual(cur.Status, status) {
			continue
		}
		upd := cur.DeepCopy()
		upd.Status = status
		if _, err := s.api.sessionClient.UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("writing bgpsessionstate %s (node %s, peer %s): %w", name, s.cfg.NodeName, peer, err))
		}
	}
	for name, cur := range have {
		if want[name] {
			continue
		}
		if err := s.api.sessionClient.Delete(ctx, cur.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting bgpsessionstate %s: %w", name, err))
		}
	}
	for peer := range s.bgp.states {
		if !slices.Contains(peers, peer) {
			delete(s.bgp.states, peer)
		}
	}
	return errors.Join(errs...)
}

// sessionEvent records an Event on the BGPPeer when this node's session
// enters or leaves Established.
func (s *speaker) sessionEvent(p *v1beta1.BGPPeer, peer, state, refused string) {
	old := s.bgp.states[peer]
	if refused != "" {
		state = "refused: " + refused // one Event per refusal reason
	}
	s.bgp.states[peer] = state
	if p == nil || old == state {
		return
	}
	if refused != "" {
		s.events.Eventf(p, corev1.EventTypeWarning, ReasonSessionRefused, "node %s: session with %s refused: %s", s.cfg.NodeName, p.Spec.PeerAddress, refused)
		return
	}
	switch {
	case state == bgp.StateEstablished:
		s.events.Eventf(p, corev1.EventTypeNormal, ReasonSessionEstablished, "node %s: session with %s established", s.cfg.NodeName, p.Spec.PeerAddress)
	case old == bgp.StateEstablished:
		s.events.Eventf(p, corev1.EventTypeWarning, ReasonSessionDown, "node %s: session with %s down (%s)", s.cfg.NodeName, p.Spec.PeerAddress, state)
	}
}

func sessionStatusEqual(a, b v1beta1.BGPSessionStateStatus) bool {
	if a.Node != b.Node || a.Peer != b.Peer || a.PeerAddress != b.PeerAddress || a.State != b.State || a.PrefixesSent != b.PrefixesSent {
		return false
	}
	if (a.EstablishedSince == nil) != (b.EstablishedSince == nil) ||
		(a.EstablishedSince != nil && !a.EstablishedSince.Equal(b.EstablishedSince)) {
		return false
	}
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}

// serviceBGPStatusName names a node's ServiceBGPStatus for one Service.
func serviceBGPStatusName(key, node string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + node))
	return "bgp-" + hex.EncodeToString(sum[:8])
}

// writeServiceBGPStatuses keeps one ServiceBGPStatus per Service this node
// advertises, listing the peers it is advertised to, and removes this
// node's others.
func (s *speaker) writeServiceBGPStatuses(ctx context.Context, snap snapshot, res routes.Result) error {
	peersOf := map[string][]string{}
	for peer, paths := range res.Paths {
		for _, p := range paths {
			for _, svc := range p.Services {
				if !slices.Contains(peersOf[svc], peer) {
					peersOf[svc] = append(peersOf[svc], peer)
				}
			}
		}
	}
	have := map[string]*v1beta1.ServiceBGPStatus{}
	for _, o := range s.api.bgpStatuses.GetStore().List() {
		if st := o.(*v1beta1.ServiceBGPStatus); st.Labels[LabelNode] == s.cfg.NodeName {
			have[st.Name] = st
		}
	}
	var errs []error
	want := map[string]bool{}
	for key, peers := range peersOf {
		slices.Sort(peers)
		ns, svcName, _ := strings.Cut(key, "/")
		name := serviceBGPStatusName(key, s.cfg.NodeName)
		want[name] = true
		status := v1beta1.ServiceBGPStatusStatus{Node: s.cfg.NodeName, ServiceName: svcName, ServiceNamespace: ns, Peers: peers}
		cur := have[name]
		if cur == nil {
			cur = &v1beta1.ServiceBGPStatus{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace,
				Labels: map[string]string{LabelNode: s.cfg.NodeName, LabelServiceName: svcName, LabelServiceNamespace: ns}}}
			created, err := s.api.bgpClient.Create(ctx, cur, metav1.CreateOptions{})
			if err != nil {
				if !apierrors.IsAlreadyExists(err) {
					errs = append(errs, fmt.Errorf("creating servicebgpstatus %s (service %s): %w", name, key, err))
				}
				continue
			}
			cur = created
		}
		if cur.Status.Node == status.Node && cur.Status.ServiceName == status.ServiceName &&
			cur.Status.ServiceNamespace == status.ServiceNamespace && slices.Equal(cur.Status.Peers, status.Peers) {
			continue
		}
		upd := cur.DeepCopy()
		upd.Status = status
		if _, err := s.api.bgpClient.UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("writing servicebgpstatus %s (service %s): %w", name, key, err))
		}
	}
	for name, cur := range have {
		if want[name] {
			continue
		}
		if err := s.api.bgpClient.Delete(ctx, cur.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting servicebgpstatus %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// labelValue makes a name usable as a label value (at most 63 bytes); a
// longer one is shortened with a hash so it stays unique.
func labelValue(v string) string {
	if len(v) <= 63 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return v[:46] + "-" + hex.EncodeToString(sum[:8])
}

// goneNodes says which nodes' BGP status objects no speaker keeps any
// more: those not alive in memberlist whose Node object is gone, or that
// have no speaker Pod, or are not Ready. A speaker that crashed and is
// being restarted (its Pod and Ready Node still there) keeps its objects;
// a speaker alive in memberlist always keeps them. Pure.
func goneNodes(snap snapshot, alive []string) func(node string) bool {
	nodes := map[string]*corev1.Node{}
	for i := range snap.nodes {
		nodes[snap.nodes[i].Name] = &snap.nodes[i]
	}
	pods := map[string]bool{}
	for i := range snap.speakers {
		if p := &snap.speakers[i]; p.DeletionTimestamp == nil && p.Spec.NodeName != "" {
			pods[p.Spec.NodeName] = true
		}
	}
	return func(node string) bool {
		if slices.Contains(alive, node) {
			return false
		}
		n := nodes[node]
		return n == nil || !pods[node] || condition(n, corev1.NodeReady) != corev1.ConditionTrue
	}
}

// removeGoneNodesBGPStatuses deletes the BGPSessionState and
// ServiceBGPStatus objects of nodes that are gone (see goneNodes): a dead
// speaker cannot remove its own. Only the first alive node does it, as
// for ServiceL2Status, so that one writer, not every node, deletes them.
func (s *speaker) removeGoneNodesBGPStatuses(ctx context.Context, snap snapshot, alive []string) error {
	if len(alive) == 0 || alive[0] != s.cfg.NodeName {
		return nil
	}
	gone := goneNodes(snap, alive)
	var errs []error
	remove := func(kind string, o metav1.Object, node string, del func(context.Context, string, metav1.DeleteOptions) error) {
		if node == s.cfg.NodeName || !gone(node) {
			return
		}
		err := del(ctx, o.GetName(), deleteIfUnchanged(o.GetResourceVersion()))
		switch {
		case err == nil:
			s.log.Info("bgp status of a gone node removed", "node", node, "object", kind+" "+o.GetName())
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			errs = append(errs, fmt.Errorf("deleting %s %s of a gone node %s: %w", kind, o.GetName(), node, err))
		}
	}
	for _, o := range s.api.sessionStates.GetStore().List() {
		st := o.(*v1beta1.BGPSessionState)
		remove("bgpsessionstate", st, statusNode(st.Status.Node, st.Labels), s.api.sessionClient.Delete)
	}
	for _, o := range s.api.bgpStatuses.GetStore().List() {
		st := o.(*v1beta1.ServiceBGPStatus)
		remove("servicebgpstatus", st, statusNode(st.Status.Node, st.Labels), s.api.bgpClient.Delete)
	}
	return errors.Join(errs...)
}

// statusNode is the node a status object belongs to: its status, else its
// node label (an object created but never written has no status yet).
func statusNode(node string, labels map[string]string) string {
	if node != "" {
		return node
	}
	return labels[LabelNode]
}
