package e2etest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// dpPod is an endpoint the dataplane test names: a pod namespace, the
// node it sits behind, and its address.
type dpPod struct {
	name, node string
	ip, ip6    netip.Addr
}

// v6 is the pod as an IPv6 endpoint.
func (p dpPod) v6() dpPod {
	p.ip = p.ip6
	return p
}

// TestDataplaneNFTables runs its own cluster lab with every speaker on
// --dataplane=nftables and forwarding on in the nodes, and a second pod
// behind node1, then checks the whole path from the client through the
// VIP to a pod: the client's address survives, traffic spreads over the
// owner's local pods, follows endpoint changes, survives someone flushing
// or deleting the table, and follows the VIP on failover.
func TestDataplaneNFTables(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	l, pod1b := dataplaneLab(t)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &l2env{t: t, lab: l, c: c, ctx: ctx, ns: "t-dataplane"}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "dataplane", Namespace: lab.Namespace},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"192.168.100.200-192.168.100.209", "fd00:100::200-fd00:100::209"}}})
	e.create(&v1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "dataplane", Namespace: lab.Namespace}})
	pod := func(name string) dpPod {
		if name == pod1b.name {
			return pod1b
		}
		p, ok := l.Network.PodOn("node" + strings.TrimPrefix(name, "pod"))
		if !ok {
			t.Fatalf("no %s", name)
		}
		return dpPod{p.Name, p.Node, p.IP, p.IPv6}
	}
	pod1 := pod("pod1")

	// eTP Local with two ready endpoints, both behind node1: node1 owns
	// the VIP and spreads over both.
	vip := e.service("web", true, corev1.IPv4Protocol)[0]
	// The controller says the speakers carry the traffic, so kube-proxy
	// keeps out of it.
	var st corev1.Service
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "web"}, &st); err != nil {
		t.Fatal(err)
	}
	if m := st.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeProxy {
		t.Errorf("ipMode = %v, want Proxy", m)
	}
	dpEndpoints(e, "web", pod1, pod1b)
	if owner := e.waitOwner("web", ""); owner != "node1" {
		t.Fatalf("web is announced by %s, want node1 (its only endpoints are there)", owner)
	}
	e.eventually("curl http://"+vip+"/ from the client answered by a pod on node1", 20*time.Second, func() error {
		body, err := curl(e, vip)
		if err != nil {
			return err
		}
		if name := strings.Fields(body)[0]; name != "pod1" && name != "pod1b" {
			return fmt.Errorf("answered by %s", name)
		}
		return nil
	})
	if out, err := l.Network.Exec(ctx, "node1", "nft", "list", "table", "inet", "ironlb"); err != nil ||
		!strings.Contains(string(out), vip+" . tcp . 80 : goto eps4-tcp-2") || !strings.Contains(string(out), "numgen random mod 2") {
		t.Errorf("node1's table has no two-way chain for %s: %v\n%s", vip, err, out)
	}
	for _, n := range []string{"node2", "node3"} {
		if out, _ := l.Network.Exec(ctx, n, "nft", "list", "table", "inet", "ironlb"); strings.Contains(string(out), vip) {
			t.Errorf("%s forwards %s without announcing it:\n%s", n, vip, out)
		}
	}

	// 200 requests, each a new connection: both pods serve at least a
	// quarter, and every pod saw the client's own address.
	counts := requests(e, vip, 200)
	t.Logf("200 requests to %s: %v", vip, counts)
	for _, p := range []string{"pod1", "pod1b"} {
		if counts[p] < 50 {
			t.Errorf("%s served %d of 200 requests, want at least 50: %v", p, counts[p], counts)
		}
	}
	if n := counts["other"]; n > 0 {
		t.Errorf("%d requests failed or were answered by another pod: %v", n, counts)
	}
	for _, name := range []string{"pod1", "pod1b"} {
		b, err := os.ReadFile(l.Process("pod-" + name).Log)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"remote":"` + lab.ClientIPv4.String() + `:`; !strings.Contains(string(b), want) {
			t.Errorf("%s's log has no request from the client's address (%s): the source IP was not kept", name, want)
		}
	}

	// One endpoint goes: after the sync no request reaches it.
	dpEndpoints(e, "web", pod1)
	e.eventually("pod1b gets no more requests", 10*time.Second, func() error {
		if got := requests(e, vip, 10); got["pod1"] != 10 {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	if got := requests(e, vip, 50); got["pod1"] != 50 {
		t.Errorf("after removing pod1b from the EndpointSlice: %v, want pod1 only", got)
	}

	// Someone flushes or deletes IronLB's table: the next sync (at most a
	// resync interval away) rebuilds it, with no change to any object.
	for _, breakIt := range [][]string{{"nft", "flush", "table", "inet", "ironlb"}, {"nft", "delete", "table", "inet", "ironlb"}} {
		if out, err := l.Network.Exec(ctx, "node1", breakIt...); err != nil {
			t.Fatalf("%v: %v\n%s", breakIt, err, out)
		}
		start := time.Now()
		e.eventually("table repaired after "+strings.Join(breakIt, " "), 15*time.Second, func() error {
			out, err := l.Network.Exec(ctx, "node1", "nft", "list", "table", "inet", "ironlb")
			if err != nil || !strings.Contains(string(out), " : "+pod1.ip.String()+" . 8080") {
				return fmt.Errorf("no DNAT to pod1 yet: %v", err)
			}
			_, err = curl(e, vip)
			return err
		})
		t.Logf("%q repaired after %s", strings.Join(breakIt, " "), time.Since(start).Round(time.Millisecond))
	}
	logTail(t, l.Process("speaker-node1").Log, "dataplane repaired")

	metrics := get(t, fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(mustNode(t, l, "node1").Mgmt, lab.SpeakerMetricsPort)))
	for _, want := range []string{`ironlb_dataplane_sync_duration_seconds_bucket{kind="full"`, `ironlb_dataplane_sync_duration_seconds_bucket{kind="partial"`,
		"ironlb_dataplane_last_sync_timestamp_seconds ", "ironlb_dataplane_rules 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("node1's metrics lack %s", want)
		}
	}

	// IPv6: the same path, from the client's IPv6 address through an IPv6
	// VIP (answered by NDP) to the pods' IPv6 addresses.
	vip6 := e.service("web6", true, corev1.IPv6Protocol)[0]
	dpEndpoints(e, "web6", pod1.v6(), pod1b.v6())
	e.eventually("curl http://["+vip6+"]/ from the client answered by a pod on node1", 20*time.Second, func() error {
		body, err := curl(e, vip6)
		if err != nil {
			return err
		}
		if name := strings.Fields(body)[0]; name != "pod1" && name != "pod1b" {
			return fmt.Errorf("answered by %s", name)
		}
		return nil
	})
	counts6 := requests(e, vip6, 60)
	t.Logf("60 requests to [%s]: %v", vip6, counts6)
	if counts6["pod1"] < 15 || counts6["pod1b"] < 15 || counts6["other"] > 0 {
		t.Errorf("IPv6: 60 requests spread as %v, want both pods at least 15 and no failures", counts6)
	}
	for _, name := range []string{"pod1", "pod1b"} {
		b, err := os.ReadFile(l.Process("pod-" + name).Log)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"remote":"[` + lab.ClientIPv6.String() + `]:`; !strings.Contains(string(b), want) {
			t.Errorf("%s's log has no request from the client's IPv6 address (%s)", name, want)
		}
	}

	// Failover: a Cluster Service with a pod on every node. The owner
	// forwards to its own pod; when its speaker stops, the VIP and the
	// traffic move to another node's pod.
	vip2 := e.service("spread", false, corev1.IPv4Protocol)[0]
	dpEndpoints(e, "spread", pod("pod1"), pod("pod2"), pod("pod3"))
	owner := e.waitOwner("spread", "")
	ownerPod, _ := l.Network.PodOn(owner)
	e.eventually("spread answered by "+ownerPod.Name, 20*time.Second, func() error { return answeredBy(e, vip2, ownerPod.Name) })
	if err := l.Process("speaker-" + owner).Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	next := e.waitOwner("spread", owner)
	nextPod, _ := l.Network.PodOn(next)
	e.eventually("spread answered by "+nextPod.Name+" after failover", 15*time.Second, func() error { return answeredBy(e, vip2, nextPod.Name) })
	t.Logf("SIGTERM to speaker-%s: traffic for %s answered by %s after %s", owner, vip2, nextPod.Name, time.Since(start).Round(time.Millisecond))
}

// dataplaneLab starts the test's own cluster lab with the nftables
// dataplane, and pod1b: a second pod namespace behind node1 at
// 10.244.11.2 running the pod server. Both go away when the test ends.
func dataplaneLab(t *testing.T) (*lab.Lab, dpPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	idx, err := lab.FreeIndex(ctx, 170)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ironlb-e2e-dataplane-")
	if err != nil {
		t.Fatal(err)
	}
	podServer := podServerBinary(t)
	l, err := lab.StartCluster(ctx, lab.ClusterConfig{
		Config:         lab.Config{Dir: dir, Root: repoRoot(t)},
		Prefix:         fmt.Sprintf("ilbd%d", idx),
		Index:          idx,
		Controller:     controllerBinary(t),
		Speaker:        speakerBinary(t),
		PodServer:      podServer,
		SpeakerArgs:    []string{"--dataplane=nftables"},
		ControllerArgs: []string{"--ip-mode=Proxy"},
		Forwarding:     true,
	})
	pod1b := dpPod{name: "pod1b", node: "node1", ip: netip.MustParseAddr("10.244.11.2"), ip6: netip.MustParseAddr("fd00:244:11::2")}
	ns := fmt.Sprintf("ilbd%d-pod1b", idx)
	t.Cleanup(func() {
		if l != nil {
			if err := l.Stop(); err != nil {
				t.Errorf("stopping the dataplane lab: %v", err)
			}
		}
		_ = dpRun(context.Background(), "ip", "netns", "del", ns)
		_ = os.RemoveAll(dir)
	})
	if err != nil {
		t.Fatalf("starting the dataplane lab: %v", err)
	}
	node1 := mustNode(t, l, "node1").NS
	for _, argv := range [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", node1, "link", "add", "veth-pod1b", "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "-n", node1, "link", "set", "veth-pod1b", "up"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", node1, "addr", "add", "10.244.11.1/24", "dev", "veth-pod1b"},
		{"ip", "-n", ns, "addr", "add", pod1b.ip.String() + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "route", "add", "default", "via", "10.244.11.1"},
		{"ip", "-n", node1, "addr", "add", "fd00:244:11::1/64", "dev", "veth-pod1b", "nodad"},
		{"ip", "-n", ns, "addr", "add", pod1b.ip6.String() + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:244:11::1"},
	} {
		if err := dpRun(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.StartProcess("pod-pod1b", nil, "ip", "netns", "exec", ns, podServer,
		"--name=pod1b", fmt.Sprintf("--listen=:%d", lab.PodPort)); err != nil {
		t.Fatal(err)
	}
	return l, pod1b
}

// dpEndpoints writes the Service's EndpointSlice with one ready endpoint
// per pod, on the pod's node, of the pods' family.
func dpEndpoints(e *l2env, svc string, pods ...dpPod) {
	e.t.Helper()
	family := discoveryv1.AddressTypeIPv4
	if len(pods) > 0 && pods[0].ip.Is6() {
		family = discoveryv1.AddressTypeIPv6
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-lab", Namespace: e.ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(lab.PodPort)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.ip.String()}, NodeName: ptr(p.node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	var cur discoveryv1.EndpointSlice
	err := e.c.Get(e.ctx, client.ObjectKeyFromObject(es), &cur)
	if err == nil && cur.AddressType != es.AddressType {
		// The family of a slice cannot change: replace it.
		if err := e.c.Delete(e.ctx, &cur); err != nil {
			e.t.Fatalf("deleting EndpointSlice %s: %v", es.Name, err)
		}
		err = apierrors.NewNotFound(discoveryv1.Resource("endpointslices"), es.Name)
	}
	switch {
	case apierrors.IsNotFound(err):
		e.create(es)
	case err != nil:
		e.t.Fatal(err)
	default:
		cur.Endpoints = es.Endpoints
		if err := e.c.Update(e.ctx, &cur); err != nil {
			e.t.Fatalf("updating EndpointSlice %s: %v", es.Name, err)
		}
	}
}

// clientIP is the client's address of vip's family.
func clientIP(vip string) netip.Addr {
	if strings.Contains(vip, ":") {
		return lab.ClientIPv6
	}
	return lab.ClientIPv4
}

// curl fetches http://vip/ from the client namespace and returns the body,
// "<pod> <remote address>", after checking the pod saw the client's IP.
func curl(e *l2env, vip string) (string, error) {
	out, err := e.lab.Network.Exec(e.ctx, "client", "curl", "-sS", "--fail", "--max-time", "2", "http://"+net.JoinHostPort(vip, "80")+"/")
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return "", fmt.Errorf("unexpected answer %q", out)
	}
	if ap, err := netip.ParseAddrPort(f[1]); err != nil || ap.Addr() != clientIP(vip) {
		return "", fmt.Errorf("%s saw the request from %s, not the client %s", f[0], f[1], clientIP(vip))
	}
	return string(out), nil
}

func answeredBy(e *l2env, vip, pod string) error {
	body, err := curl(e, vip)
	if err != nil {
		return err
	}
	if got := strings.Fields(body)[0]; got != pod {
		return fmt.Errorf("answered by %s", got)
	}
	return nil
}

// requests sends n requests from the client, each on a new connection, and
// counts answers per pod; "other" counts failures and foreign answers (a
// pod that saw another source address).
func requests(e *l2env, vip string, n int) map[string]int {
	script := fmt.Sprintf("for i in $(seq %d); do curl -s --max-time 2 http://%s/ || echo fail x; done", n, net.JoinHostPort(vip, "80"))
	out, _ := e.lab.Network.Exec(e.ctx, "client", "sh", "-c", script)
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			counts["other"]++
			continue
		}
		if ap, err := netip.ParseAddrPort(f[1]); err != nil || ap.Addr() != clientIP(vip) {
			counts["other"]++
			continue
		}
		counts[f[0]]++
	}
	return counts
}

func mustNode(t *testing.T, l *lab.Lab, name string) lab.Node {
	t.Helper()
	nd, ok := l.Network.Node(name)
	if !ok {
		t.Fatalf("no node %s", name)
	}
	return nd
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

func dpRun(ctx context.Context, argv ...string) error {
	if out, err := osexec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
