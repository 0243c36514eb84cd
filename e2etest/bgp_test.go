package e2etest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// bgpLab starts a cluster lab of its own with FRR in the router namespace
// (AS 64500) and BGPPeers for it over IPv4 and IPv6 (nodes in AS 64501).
func bgpLab(t *testing.T) (*lab.Lab, *lab.FRR) {
	t.Helper()
	return bgpLabWith(t, nil)
}

// bgpLabWith is bgpLab with the lab's configuration adjusted by tune.
func bgpLabWith(t *testing.T, tune func(*lab.ClusterConfig)) (*lab.Lab, *lab.FRR) {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the BGP lab needs %s: run `make packages`", tool)
		}
	}
	l := ownLab(t, 190, "ilbg", tune)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	frr, err := l.StartFRR(ctx, 64500, 64501)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the lab's Stop, so it runs first: what FRR and the
	// speakers saw, while they still run.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx := context.Background()
		out, _ := frr.Vtysh(ctx, "show bgp summary", "show bgp ipv4 unicast", "show bgp ipv6 unicast")
		t.Logf("FRR:\n%s", out)
		out, _ = l.Network.Exec(ctx, "router", "ip", "route")
		t.Logf("router IPv4 routes:\n%s", out)
		for _, n := range allNodes {
			logTail(t, l.Process("speaker-"+n).Log, "bgp", "route", "level=WARN", "level=ERROR")
		}
	})
	return l, frr
}

// frrSummary maps each FRR neighbor address to its state, both families.
func frrSummary(ctx context.Context, f *lab.FRR) (map[string]string, error) {
	out, err := f.Vtysh(ctx, "show bgp summary json")
	if err != nil {
		return nil, err
	}
	var sum map[string]struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return nil, fmt.Errorf("parsing bgp summary %q: %w", out, err)
	}
	states := map[string]string{}
	for _, fam := range sum {
		for addr, p := range fam.Peers {
			states[addr] = p.State
		}
	}
	return states, nil
}

// kernelNextHops are the router's kernel next hops for dst ("" family
// flag picks by address), sorted; nil when there is no route.
func kernelNextHops(ctx context.Context, l *lab.Lab, dst string) ([]string, error) {
	args := []string{"ip", "-j", "route", "show", dst}
	if strings.Contains(dst, ":") {
		args = []string{"ip", "-6", "-j", "route", "show", dst}
	}
	out, err := l.Network.Exec(ctx, "router", args...)
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Protocol string `json:"protocol"`
		NextHops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("parsing routes %q: %w", out, err)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, nh := range r.NextHops {
			hops = append(hops, nh.Gateway)
		}
	}
	slices.Sort(hops)
	return hops, nil
}

func TestBGPWithFRR(t *testing.T) {
	l, frr := bgpLab(t)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &l2env{t: t, lab: l, c: c, ctx: context.Background(), ns: "t-bgp"}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:100::/64"}}})
	e.create(&v1beta1.Community{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: lab.Namespace},
		Spec: v1beta1.CommunitySpec{Communities: []v1beta1.CommunityAlias{{Name: "lab-tag", Value: "65000:200"}}}})
	e.create(&v1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"bgp"},
			Communities: []string{"65000:100", "lab-tag", "large:64501:1:2"}}})
	for name, addr := range map[string]string{"router-v4": lab.RouterIPv4.String(), "router-v6": lab.RouterIPv6.String()} {
		e.create(&v1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace},
			Spec: v1beta1.BGPPeerSpec{MyASN: 64501, PeerASN: 64500, PeerAddress: addr,
				ConnectTime: &metav1.Duration{Duration: 2 * time.Second}}})
	}
	var peers []string
	for _, nd := range l.Network.Nodes {
		peers = append(peers, nd.IPv4.String(), nd.IPv6.String())
	}
	e.eventually("all six sessions Established in FRR", 60*time.Second, func() error {
		st, err := frrSummary(e.ctx, frr)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if st[p] != "Established" {
				return fmt.Errorf("%s is %q (all: %v)", p, st[p], st)
			}
		}
		return nil
	})
	e.eventually("BGPSessionState objects say Established", 20*time.Second, func() error {
		var list v1beta1.BGPSessionStateList
		if err := c.List(e.ctx, &list, client.InNamespace(lab.Namespace)); err != nil {
			return err
		}
		if len(list.Items) != 6 {
			return fmt.Errorf("%d BGPSessionState objects, want 6", len(list.Items))
		}
		for _, s := range list.Items {
			if s.Status.State != "Established" || s.Status.EstablishedSince == nil {
				return fmt.Errorf("node %s peer %s: %q", s.Status.Node, s.Status.Peer, s.Status.State)
			}
		}
		return nil
	})

	v4 := e.service("web4", false, corev1.IPv4Protocol, allNodes...)[0]
	v6 := e.service("web6", false, corev1.IPv6Protocol, allNodes...)[0]
	nodes4 := []string{"192.168.100.11", "192.168.100.12", "192.168.100.13"}
	nodes6 := []string{"fd00:100::11", "fd00:100::12", "fd00:100::13"}
	waitHops := func(dst string, want []string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		e.eventually(fmt.Sprintf("router's kernel route to %s via %v", dst, want), within, func() error {
			got, err := kernelNextHops(e.ctx, l, dst)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("next hops %v", got)
			}
			return nil
		})
		return time.Since(start)
	}
	waitHops(v4, nodes4, 20*time.Second)
	waitHops(v6, nodes6, 20*time.Second)

	out, err := frr.Vtysh(e.ctx, "show bgp ipv4 unicast "+v4+"/32 json")
	if err != nil {
		t.Fatal(err)
	}
	var route struct {
		Paths []struct {
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			LargeCommunity struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(out, &route); err != nil {
		t.Fatalf("parsing %s: %v", out, err)
	}
	if len(route.Paths) != 3 {
		t.Errorf("FRR has %d paths for %s, want 3: %s", len(route.Paths), v4, out)
	}
	for _, p := range route.Paths {
		if p.Community.String != "65000:100 65000:200" || p.LargeCommunity.String != "64501:1:2" {
			t.Errorf("path for %s carries communities %q and large %q, want \"65000:100 65000:200\" and \"64501:1:2\"",
				v4, p.Community.String, p.LargeCommunity.String)
		}
	}
	e.eventually("ServiceBGPStatus for web4 on every node", 10*time.Second, func() error {
		var list v1beta1.ServiceBGPStatusList
		if err := c.List(e.ctx, &list, client.InNamespace(lab.Namespace),
			client.MatchingLabels{"ironlb.io/service-name": "web4", "ironlb.io/service-namespace": e.ns}); err != nil {
			return err
		}
		if len(list.Items) != 3 {
			return fmt.Errorf("%d objects, want 3", len(list.Items))
		}
		for _, s := range list.Items {
			if !slices.Equal(s.Status.Peers, []string{"router-v4", "router-v6"}) {
				return fmt.Errorf("node %s lists peers %v", s.Status.Node, s.Status.Peers)
			}
		}
		return nil
	})

	// externalTrafficPolicy Local: only nodes with a ready endpoint.
	local := e.service("local4", true, corev1.IPv4Protocol, "node2")[0]
	waitHops(local, []string{"192.168.100.12"}, 20*time.Second)
	e.endpoints("local4", "node1", "node3")
	waitHops(local, []string{"192.168.100.11", "192.168.100.13"}, 10*time.Second)

	// Deleting the Service withdraws its route.
	if err := c.Delete(e.ctx, &corev1.Service{ObjectMeta: objMeta(e.ns, "web4")}); err != nil {
		t.Fatal(err)
	}
	waitHops(v4, nil, 10*time.Second)

	// SIGTERM: the speaker withdraws and closes its sessions before it
	// exits, so its next hop goes at once, not at hold-time expiry.
	p := l.Process("speaker-node3")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := waitHops(v6, nodes6[:2], 3*time.Second)
	t.Logf("SIGTERM to node3's next hop gone from the router: %s", took.Round(time.Millisecond))
	logTail(t, p.Log, "bgp session", "route advertised", "route withdrawn", "speaker stopped")
	e.eventually("FRR sees node3's sessions down", 10*time.Second, func() error {
		st, err := frrSummary(e.ctx, frr)
		if err != nil {
			return err
		}
		if st["192.168.100.13"] == "Established" || st["fd00:100::13"] == "Established" {
			return fmt.Errorf("node3 still Established: %v", st)
		}
		return nil
	})
}

// waitKernelHops waits until the router's kernel route to dst goes via
// want (nil: no route) and returns how long that took.
func waitKernelHops(e *l2env, dst string, want []string, within time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	e.eventually(fmt.Sprintf("router's kernel route to %s via %v", dst, want), within, func() error {
		got, err := kernelNextHops(e.ctx, e.lab, dst)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("next hops %v", got)
		}
		return nil
	})
	return time.Since(start)
}

// bgpStatusNodes counts the BGPSessionState and ServiceBGPStatus objects
// of each node.
func bgpStatusNodes(e *l2env) (sessions, services map[string]int, err error) {
	var ss v1beta1.BGPSessionStateList
	if err := e.c.List(e.ctx, &ss, client.InNamespace(lab.Namespace)); err != nil {
		return nil, nil, err
	}
	var sv v1beta1.ServiceBGPStatusList
	if err := e.c.List(e.ctx, &sv, client.InNamespace(lab.Namespace)); err != nil {
		return nil, nil, err
	}
	sessions, services = map[string]int{}, map[string]int{}
	for _, s := range ss.Items {
		sessions[s.Labels["ironlb.io/node"]]++
	}
	for _, s := range sv.Items {
		services[s.Labels["ironlb.io/node"]]++
	}
	return sessions, services, nil
}

// TestBGPCrash: how the router learns that a node is gone, with a 9 s
// hold time (keepalive 3 s) on the BGPPeers.
//
//   - SIGKILL of a speaker: the kernel closes its TCP connections, so FRR
//     sees the FIN and drops the node's paths at once, long before the
//     hold time.
//   - A node that dies without a word (its switch port cut, so no FIN and
//     no keepalive): the path stays until the hold time expires (6 to 9 s
//     after the last keepalive), and is gone right after.
//   - The dead nodes' BGPSessionState and ServiceBGPStatus objects are
//     removed by the live speaker once the node's speaker Pod or Node
//     object is deleted, and not before.
func TestBGPCrash(t *testing.T) {
	const hold, keepalive = 9 * time.Second, 3 * time.Second
	l, frr := bgpLab(t)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &l2env{t: t, lab: l, c: c, ctx: context.Background(), ns: "t-bgp-crash"}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:100::/64"}}})
	e.create(&v1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"bgp"}}})
	e.routerPeers(func(s *v1beta1.BGPPeerSpec) {
		s.HoldTime = &metav1.Duration{Duration: hold}
		s.KeepaliveTime = &metav1.Duration{Duration: keepalive}
	})
	nodes4, _ := e.nodeAddrs()
	e.eventually("IPv4 sessions Established in FRR", 60*time.Second, func() error {
		st, err := frrSummary(e.ctx, frr)
		if err != nil {
			return err
		}
		for _, p := range nodes4 {
			if st[p] != "Established" {
				return fmt.Errorf("%s is %q", p, st[p])
			}
		}
		return nil
	})
	out, _ := frr.Vtysh(e.ctx, "show bgp neighbor "+nodes4[2]+" json")
	if !strings.Contains(string(out), `"bgpTimerHoldTimeMsecs":9000`) {
		t.Errorf("FRR did not negotiate a 9 s hold time with node3:\n%s", out)
	}
	all := e.service("all", false, corev1.IPv4Protocol, allNodes...)[0]
	only2 := e.service("only2", true, corev1.IPv4Protocol, "node2")[0]
	only3 := e.service("only3", true, corev1.IPv4Protocol, "node3")[0]
	waitKernelHops(e, all, nodes4, 20*time.Second)
	waitKernelHops(e, only2, nodes4[1:2], 20*time.Second)
	waitKernelHops(e, only3, nodes4[2:3], 20*time.Second)
	e.eventually("every node has its BGP status objects", 20*time.Second, func() error {
		ss, sv, err := bgpStatusNodes(e)
		if err != nil {
			return err
		}
		for _, n := range allNodes {
			if ss[n] != 2 || sv[n] < 1 {
				return fmt.Errorf("node %s: %d BGPSessionStates (want 2), %d ServiceBGPStatuses", n, ss[n], sv[n])
			}
		}
		return nil
	})

	// SIGKILL: the connection is closed by the kernel, FRR drops node3 on
	// the FIN.
	if err := l.Process("speaker-node3").Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := waitKernelHops(e, only3, nil, hold)
	t.Logf("SIGKILL of node3's speaker to its path gone from the router: %s (TCP FIN; hold time %s)", took.Round(time.Millisecond), hold)
	if took > hold/2 {
		t.Errorf("the path went only after %s: the FIN of the killed speaker's connection should drop it at once", took)
	}
	waitKernelHops(e, all, nodes4[:2], 5*time.Second)

	// A silent death: cut node2's switch port. No FIN, no keepalive: FRR
	// keeps the path until its hold timer expires.
	if out, err := exec.Command("ip", "-n", l.Network.NS("sw"), "link", "set", "sw-node2", "down").CombinedOutput(); err != nil {
		t.Fatalf("cutting node2's port: %v: %s", err, out)
	}
	cut := time.Now()
	var gone time.Duration
	for {
		hops, err := kernelNextHops(e.ctx, l, only2)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Since(cut)
		if len(hops) == 0 {
			gone = since
			break
		}
		if since > hold+3*time.Second {
			t.Fatalf("node2's path still at the router %s after its port was cut (hold time %s)", since.Round(time.Millisecond), hold)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("node2's port cut to its path gone from the router: %s (hold time %s, keepalive %s)", gone.Round(time.Millisecond), hold, keepalive)
	if gone < hold-keepalive-time.Second {
		t.Errorf("the path went after %s, before the hold time could expire (%s after the last keepalive)", gone.Round(time.Millisecond), hold)
	}
	waitKernelHops(e, all, nodes4[:1], 5*time.Second)
	// node2's speaker itself is still running (it reaches the API server
	// over the management link): stop it for good, as a dead node's would be.
	if err := l.Process("speaker-node2").Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// Status objects: still there while the dead nodes' Pods and Nodes
	// exist (it could be a restart) ...
	time.Sleep(3 * time.Second)
	ss, sv, err := bgpStatusNodes(e)
	if err != nil {
		t.Fatal(err)
	}
	if ss["node2"] == 0 || ss["node3"] == 0 {
		t.Fatalf("BGP status objects of a node that might restart were removed: sessions %v, services %v", ss, sv)
	}
	// ... and removed by node1 once node3's speaker Pod and node2's Node
	// object are deleted.
	if err := c.Delete(e.ctx, &corev1.Pod{ObjectMeta: objMeta(lab.Namespace, "speaker-node3")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(e.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.eventually("node2's and node3's BGP status objects removed", 20*time.Second, func() error {
		ss, sv, err := bgpStatusNodes(e)
		if err != nil {
			return err
		}
		if ss["node2"]+ss["node3"]+sv["node2"]+sv["node3"] > 0 {
			return fmt.Errorf("sessions %v, services %v", ss, sv)
		}
		if ss["node1"] != 2 || sv["node1"] < 1 {
			return fmt.Errorf("node1's own objects went too: sessions %v, services %v", ss, sv)
		}
		return nil
	})
	t.Logf("gone nodes' BGP status objects removed %s after the Pod and Node deletions", time.Since(start).Round(time.Millisecond))
	logTail(t, l.Process("speaker-node1").Log, "bgp status of a gone node removed")
}

// TestBGPDataplane: in BGP mode with --dataplane=nftables, the router
// spreads a Cluster Service's connections over every node (ECMP, hashed on
// ports as well as addresses), and each node forwards them to its own pod:
// every pod serves, and every pod sees the client's own address, over IPv4
// and IPv6.
func TestBGPDataplane(t *testing.T) {
	l, _ := bgpLabWith(t, func(c *lab.ClusterConfig) {
		c.SpeakerArgs = []string{"--dataplane=nftables"}
		c.ControllerArgs = []string{"--ip-mode=Proxy"}
		c.PodServer = podServerBinary(t)
		c.Forwarding = true
	})
	ctx := context.Background()
	if out, err := l.Network.Exec(ctx, "router", "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		t.Fatalf("hashing ECMP on ports in the router: %v\n%s", err, out)
	}
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &l2env{t: t, lab: l, c: c, ctx: ctx, ns: "t-bgp-dataplane"}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:100::/64"}}})
	e.create(&v1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"bgp"}}})
	for name, addr := range map[string]string{"router-v4": lab.RouterIPv4.String(), "router-v6": lab.RouterIPv6.String()} {
		e.create(&v1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace},
			Spec: v1beta1.BGPPeerSpec{MyASN: 64501, PeerASN: 64500, PeerAddress: addr,
				ConnectTime: &metav1.Duration{Duration: 2 * time.Second}}})
	}
	for _, fam := range []struct {
		family corev1.IPFamily
		hops   []string
	}{
		{corev1.IPv4Protocol, []string{"192.168.100.11", "192.168.100.12", "192.168.100.13"}},
		{corev1.IPv6Protocol, []string{"fd00:100::11", "fd00:100::12", "fd00:100::13"}},
	} {
		name := "web-" + strings.ToLower(string(fam.family))
		vip := e.service(name, false, fam.family, allNodes...)[0]
		if fam.family == corev1.IPv6Protocol {
			var pods []dpPod
			for _, p := range l.Network.Pods {
				pods = append(pods, dpPod{p.Name, p.Node, p.IPv6, p.IPv6})
			}
			dpEndpoints(e, name, pods...)
		}
		waitKernelHops(e, vip, fam.hops, 60*time.Second)
		e.eventually("curl http://"+vip+"/ answered", 20*time.Second, func() error {
			_, err := curl(e, vip)
			return err
		})
		counts := requests(e, vip, 60)
		t.Logf("60 requests to %s: %v", vip, counts)
		for _, p := range l.Network.Pods {
			if counts[p.Name] < 5 {
				t.Errorf("%s: %s served %d of 60 requests, want every node's pod to serve (ECMP): %v", vip, p.Name, counts[p.Name], counts)
			}
		}
		if counts["other"] > 0 {
			t.Errorf("%s: %d requests failed or lost the client's address: %v", vip, counts["other"], counts)
		}
	}
}
