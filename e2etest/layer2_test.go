package e2etest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
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
