package e2etest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

var allNodes = []string{"node1", "node2", "node3"}

func macOf(e *l2env, node string) string {
	nd, ok := e.lab.Network.Node(node)
	if !ok {
		e.t.Fatalf("no node %s", node)
	}
	return strings.ToLower(nd.MAC)
}

// TestL2OneNodeAnswers: the elected node, and only it, answers ARP and NDP
// for a Service's address; deleting the Service silences it.
func TestL2OneNodeAnswers(t *testing.T) {
	e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{"192.168.100.100-192.168.100.104", "fd00:100::100-fd00:100::104"}},
		v1beta1.L2AdvertisementSpec{})
	v4 := e.service("web4", false, corev1.IPv4Protocol, allNodes...)[0]
	v6 := e.service("web6", false, corev1.IPv6Protocol, allNodes...)[0]
	owner4 := e.waitOwner("web4", "")
	owner6 := e.waitOwner("web6", "")

	e.eventually("ARP for "+v4+" answered by "+owner4+" alone", 10*time.Second, func() error {
		if got := e.arpMACs(v4); len(got) != 1 || got[0] != macOf(e, owner4) {
			return fmt.Errorf("answered by %v, want only %s (%s)", got, owner4, macOf(e, owner4))
		}
		return nil
	})
	// arping -d exits 1 when two different MACs answer.
	if out, err := e.lab.Network.Exec(e.ctx, "router", "arping", "-d", "-c", "3", "-i", "eth0", v4); err != nil {
		t.Errorf("arping -d: duplicate answers or none: %v\n%s", err, out)
	}
	e.eventually("NDP for "+v6+" answered by "+owner6, 10*time.Second, func() error {
		out, err := e.lab.Network.Exec(e.ctx, "router", "ndisc6", "-1", "-r", "2", v6, "eth0")
		if err != nil {
			return err
		}
		if !strings.Contains(strings.ToLower(string(out)), "target link-layer address: "+macOf(e, owner6)) {
			return fmt.Errorf("ndisc6 said %q, want target %s", out, macOf(e, owner6))
		}
		return nil
	})

	if err := e.c.Delete(e.ctx, &corev1.Service{ObjectMeta: objMeta(e.ns, "web4")}); err != nil {
		t.Fatal(err)
	}
	e.eventually("nobody answers for "+v4+" after the Service is deleted", 10*time.Second, func() error {
		if got := e.arpMACs(v4); len(got) != 0 {
			return fmt.Errorf("still answered by %v", got)
		}
		return nil
	})
	e.eventually("ServiceL2Status of web4 removed", 10*time.Second, func() error {
		var list v1beta1.ServiceL2StatusList
		if err := e.c.List(e.ctx, &list, client.MatchingLabels{"ironlb.io/service-name": "web4", "ironlb.io/service-namespace": e.ns}); err != nil {
			return err
		}
		if len(list.Items) != 0 {
			return fmt.Errorf("%d left", len(list.Items))
		}
		return nil
	})
}

// primeNeighbour makes the router resolve ip, so that its neighbour table
// has an entry that a gratuitous ARP must then move.
func (e *l2env) primeNeighbour(ip string) {
	_, _ = e.lab.Network.Exec(e.ctx, "router", "ping", "-c", "1", "-W", "1", ip)
}

// neighbourMAC is the router's neighbour entry for ip ("" when none).
func (e *l2env) neighbourMAC(ip string) string {
	out, _ := e.lab.Network.Exec(e.ctx, "router", "ip", "neigh", "show", ip, "dev", "eth0")
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return strings.ToLower(f[i+1])
		}
	}
	return ""
}

// failover stops the announcing speaker with sig and checks that another
// node takes over: it answers, and the router's entry moves to it without
// the router asking (gratuitous ARP).
func failover(t *testing.T, sig syscall.Signal, within time.Duration) {
	e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}}, v1beta1.L2AdvertisementSpec{})
	ip := e.service("web", false, corev1.IPv4Protocol, allNodes...)[0]
	owner := e.waitOwner("web", "")
	e.eventually("owner answers", 10*time.Second, func() error {
		if got := e.arpMACs(ip); len(got) != 1 || got[0] != macOf(e, owner) {
			return fmt.Errorf("answered by %v", got)
		}
		return nil
	})
	e.primeNeighbour(ip)
	if got := e.neighbourMAC(ip); got != macOf(e, owner) {
		t.Fatalf("router's entry for %s is %q before failover, want %s", ip, got, macOf(e, owner))
	}
	p := e.lab.Process("speaker-" + owner)
	t.Cleanup(func() {
		// Bring the speaker back for the next test.
		if p.Alive() {
			return
		}
		if err := e.lab.StartSpeaker(e.ctx, speakerBinary(t), owner); err != nil {
			t.Errorf("restarting speaker on %s: %v", owner, err)
		}
	})
	start := time.Now()
	if err := p.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var moved string
	e.eventually("router's entry moves off "+owner, within, func() error {
		moved = e.neighbourMAC(ip)
		if moved == "" || moved == macOf(e, owner) {
			return fmt.Errorf("entry %q", moved)
		}
		return nil
	})
	t.Logf("%s at %s: router's entry moved to %s after %s", sig, start.Format("15:04:05.000"), moved, time.Since(start).Round(time.Millisecond))
	for _, n := range allNodes {
		logTail(t, e.lab.Process("speaker-"+n).Log, "service announced", "service withdrawn", "speaker stopped", "member gone")
	}
	next := e.waitOwner("web", owner)
	if moved != macOf(e, next) {
		t.Errorf("router's entry moved to %s, but the ServiceL2Status names %s (%s)", moved, next, macOf(e, next))
	}
	e.eventually("only the new owner answers", 10*time.Second, func() error {
		if got := e.arpMACs(ip); len(got) != 1 || got[0] != macOf(e, next) {
			return fmt.Errorf("answered by %v, want %s", got, macOf(e, next))
		}
		return nil
	})
}

// Each test gets its own addresses on the LAN.
var testPools = map[string]string{
	"TestL2GracefulFailover":                        "192.168.100.105-192.168.100.109",
	"TestL2CrashFailover":                           "192.168.100.110-192.168.100.114",
	"TestL2LocalFollowsEndpoints":                   "192.168.100.115-192.168.100.119",
	"TestL2PartitionNoDoubleAnswers":                "192.168.100.130-192.168.100.149",
	"TestL2ProblemsAreReported/missing-interface":   "192.168.100.150-192.168.100.154",
	"TestL2ProblemsAreReported/no-endpoints":        "192.168.100.155-192.168.100.159",
	"TestL2ProblemsAreReported/pool-not-advertised": "192.168.100.160-192.168.100.164",
}

func poolFor(t *testing.T) string {
	p, ok := testPools[t.Name()]
	if !ok {
		t.Fatalf("no pool for %s in testPools", t.Name())
	}
	return p
}

func TestL2GracefulFailover(t *testing.T) { failover(t, syscall.SIGTERM, 3*time.Second) }

func TestL2CrashFailover(t *testing.T) { failover(t, syscall.SIGKILL, 10*time.Second) }

// TestL2LocalFollowsEndpoints: with externalTrafficPolicy Local only a node
// with a ready endpoint answers, and ownership follows the endpoint.
func TestL2LocalFollowsEndpoints(t *testing.T) {
	e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}}, v1beta1.L2AdvertisementSpec{})
	ip := e.service("local", true, corev1.IPv4Protocol, "node2")[0]
	for _, want := range []string{"node2", "node3", "node1"} {
		e.endpoints("local", want)
		e.eventually("only "+want+" answers", 10*time.Second, func() error {
			if got := e.arpMACs(ip); len(got) != 1 || got[0] != macOf(e, want) {
				return fmt.Errorf("answered by %v, want %s", got, macOf(e, want))
			}
			if o, err := e.owner("local"); err != nil || o != want {
				return fmt.Errorf("ServiceL2Status names %q (%v)", o, err)
			}
			return nil
		})
	}
	e.endpoints("local")
	e.eventually("nobody answers without endpoints", 10*time.Second, func() error {
		if got := e.arpMACs(ip); len(got) != 0 {
			return fmt.Errorf("answered by %v", got)
		}
		return nil
	})
}

// TestL2PartitionNoDoubleAnswers cuts memberlist traffic between node1 and
// the others while ARP still flows. node1 sees one of three speakers, loses
// quorum and falls silent; node2 and node3 keep a majority and take over its
// addresses: every address is answered by exactly one MAC throughout.
func TestL2PartitionNoDoubleAnswers(t *testing.T) {
	e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}}, v1beta1.L2AdvertisementSpec{})
	// Enough Services that node1 announces some of them.
	var ips []string
	onNode1 := 0
	for i := 0; i < 12 && (i < 6 || onNode1 == 0); i++ {
		name := fmt.Sprintf("svc%d", i)
		ips = append(ips, e.service(name, false, corev1.IPv4Protocol, allNodes...)[0])
		if e.waitOwner(name, "") == "node1" {
			onNode1++
		}
	}
	if onNode1 == 0 {
		t.Fatal("node1 announces none of the Services; the test proves nothing")
	}
	const rules = `table inet ironlb_partition {
  chain in { type filter hook input priority 0; udp dport 7946 drop; tcp dport 7946 drop; udp sport 7946 drop; tcp sport 7946 drop; }
  chain out { type filter hook output priority 0; udp dport 7946 drop; tcp dport 7946 drop; udp sport 7946 drop; tcp sport 7946 drop; }
}`
	cmd := exec.Command("ip", "netns", "exec", e.lab.Network.NS("node1"), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cutting memberlist on node1: %v\n%s", err, out)
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if out, err := e.lab.Network.Exec(e.ctx, "node1", "nft", "delete", "table", "inet", "ironlb_partition"); err != nil {
				t.Errorf("healing the partition: %v\n%s", err, out)
			}
		}
	}
	t.Cleanup(heal)

	n1 := macOf(e, "node1")
	e.eventually("every address answered by exactly one MAC, none node1's", 15*time.Second, func() error {
		for _, ip := range ips {
			got := e.arpMACs(ip)
			if len(got) != 1 || got[0] == n1 {
				return fmt.Errorf("%s answered by %v (node1 is %s)", ip, got, n1)
			}
		}
		return nil
	})
	// Stable, not a passing moment: check again a few seconds later.
	time.Sleep(3 * time.Second)
	for _, ip := range ips {
		if got := e.arpMACs(ip); len(got) != 1 || got[0] == n1 {
			t.Errorf("during the partition %s is answered by %v", ip, got)
		}
	}
	log, err := os.ReadFile(e.lab.Process("speaker-node1").Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"msg":"announcing stopped"`) || !strings.Contains(string(log), "NoQuorum") {
		t.Errorf("node1's log does not say it stopped announcing for lack of quorum")
	}

	heal()
	e.eventually("node1 rejoins and announces again", 30*time.Second, func() error {
		for i := range ips {
			if o, err := e.owner(fmt.Sprintf("svc%d", i)); err == nil && o == "node1" {
				return nil
			}
		}
		return fmt.Errorf("node1 owns nothing yet")
	})
	for _, ip := range ips {
		if got := e.arpMACs(ip); len(got) != 1 {
			t.Errorf("after healing %s is answered by %v", ip, got)
		}
	}
	// Whether node1 had to wait depends on gossip timing; say how often.
	if log, err := os.ReadFile(e.lab.Process("speaker-node1").Log); err == nil {
		t.Logf("node1 waited %d times for the previous owner to let go", strings.Count(string(log), "waiting for the previous owner"))
	}
}

// TestL2ProblemsAreReported: what keeps a Service from being announced is
// an Event on it, naming what to fix.
func TestL2ProblemsAreReported(t *testing.T) {
	t.Run("missing-interface", func(t *testing.T) {
		e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}},
			v1beta1.L2AdvertisementSpec{Interfaces: []string{"eth9"}})
		e.service("wrong-iface", false, corev1.IPv4Protocol, allNodes...)
		e.waitEvent("wrong-iface", "AnnounceFailed", "eth9")
	})
	t.Run("no-endpoints", func(t *testing.T) {
		e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}}, v1beta1.L2AdvertisementSpec{})
		e.service("no-endpoints", true, corev1.IPv4Protocol)
		e.waitEvent("no-endpoints", "NotAnnounced", "NoEligibleNode")
	})
	t.Run("pool-not-advertised", func(t *testing.T) {
		e := newL2Env(t, v1beta1.IPAddressPoolSpec{Addresses: []string{poolFor(t)}},
			v1beta1.L2AdvertisementSpec{IPAddressPools: []string{"some-other-pool"}})
		e.service("unadvertised", false, corev1.IPv4Protocol, allNodes...)
		e.waitEvent("unadvertised", "NotAnnounced", "PoolNotAdvertised")
	})
}

// waitEvent waits for an Event on the Service with the reason and a note
// containing every fragment.
func (e *l2env) waitEvent(svc, reason string, fragments ...string) {
	e.t.Helper()
	apiservertest.WaitEvent(e.t, e.c, e.ns, svc, reason, fragments...)
}

// logTail logs the lines of a process log that contain any of the phrases,
// to show the order of events when a timing looks wrong.
func logTail(t *testing.T, path string, phrases ...string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range phrases {
			if strings.Contains(line, p) {
				t.Log(line)
				break
			}
		}
	}
}

// TestLabPodsServeHTTP: the endpoints the tests name are real: each pod
// namespace answers HTTP from its node.
func TestLabPodsServeHTTP(t *testing.T) {
	l := cluster(t)
	for _, pod := range l.Network.Pods {
		url := fmt.Sprintf("http://%s:8080/", pod.IP)
		out, err := l.Network.Exec(context.Background(), pod.Node, "curl", "-sS", "--max-time", "5", url)
		if err != nil || !strings.HasPrefix(string(out), pod.Name+" ") {
			t.Errorf("%s from %s: %q, %v", url, pod.Node, out, err)
		}
	}
}
