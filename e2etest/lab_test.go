package e2etest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/e2etest/lab"
)

// TestLabUpDown brings the demo up in a temporary directory, on a free
// management subnet and under its own namespace prefix (so that it never
// meets a running `make demo`), and checks what the demo shows: the
// example Service got addresses from the example pool, through the API
// and through kubectl; a ServiceL2Status names its node; exactly one node,
// the announcing one, answers ARP and NDP from the router; stopping that
// speaker moves the address and a second up starts it again. Down must
// leave no process, namespace or root interface behind.
func TestLabUpDown(t *testing.T) {
	needRoot(t)
	root := repoRoot(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to check what users see: %v", err)
	}
	examples, err := filepath.Glob(filepath.Join(root, "e2etest", "testdata", "demo", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no demo examples in e2etest/testdata/demo: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	// The demo uses index 1, the layer-2 tests 100 and up, bench-l2 150 and up.
	idx, err := lab.FreeIndex(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("ilbu%d", idx)
	dir := filepath.Join(t.TempDir(), "lab")
	cfg := lab.UpConfig{
		ClusterConfig: lab.ClusterConfig{
			Config:     lab.Config{Dir: dir, Root: root, Log: testWriter{t}},
			Prefix:     prefix,
			Index:      idx,
			Controller: controllerBinary(t),
			Speaker:    speakerBinary(t),
		},
		Examples: examples,
	}
	l, err := lab.Up(ctx, cfg)
	if l != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if cur, err := lab.Load(dir); err == nil {
					dumpLogs(t, cur)
				}
			}
			// Down reads the state file, which knows restarted speakers.
			_ = lab.Down(dir)
		})
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}

	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "demo", Name: "web"}
	var svc corev1.Service
	if err := c.Get(ctx, key, &svc); err != nil {
		t.Fatalf("getting demo/web: %v", err)
	}
	pool := []struct{ first, last netip.Addr }{
		{netip.MustParseAddr("192.168.100.100"), netip.MustParseAddr("192.168.100.120")},
		{netip.MustParseAddr("fd00:100::100"), netip.MustParseAddr("fd00:100::120")},
	}
	var ips []string
	var v4, v6 netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil {
			t.Fatalf("demo/web ingress %q: %v", in.IP, err)
		}
		inPool := false
		for _, r := range pool {
			inPool = inPool || (r.first.Compare(ip) <= 0 && ip.Compare(r.last) <= 0)
		}
		if !inPool {
			t.Errorf("demo/web got %s, outside demo-pool", ip)
		}
		if ip.Is4() {
			v4 = ip
		} else {
			v6 = ip
		}
		ips = append(ips, in.IP)
	}
	if len(ips) != 2 || !v4.IsValid() || !v6.IsValid() {
		t.Fatalf("demo/web ingress %v: want one IPv4 and one IPv6 address", ips)
	}

	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", l.Kubeconfig, "get", "svc,servicel2statuses", "-A").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	for _, ip := range ips {
		if !strings.Contains(string(out), ip) {
			t.Errorf("kubectl get svc does not show %s:\n%s", ip, out)
		}
	}

	// Who answers, from the router: exactly one node per address, and the
	// one whose speaker logged announcing it.
	owner := map[netip.Addr]string{}
	for _, ip := range []netip.Addr{v4, v6} {
		macs, err := l.Answers(ctx, ip)
		if err != nil {
			t.Fatal(err)
		}
		if len(macs) != 1 {
			t.Fatalf("%s answered by %v from the router, want exactly one MAC", ip, macs)
		}
		nd, ok := l.Network.NodeWithMAC(macs[0])
		if !ok {
			t.Fatalf("%s answered by %s, no lab node's eth0 MAC", ip, macs[0])
		}
		if got := lastAnnouncer(t, l, ip); got != nd.Name {
			t.Errorf("%s answered by %s (%s), but the last speaker to log announcing it is %q", ip, nd.Name, nd.MAC, got)
		}
		owner[ip] = nd.Name
	}
	statuses, err := lab.L2Statuses(ctx, c, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) == 0 {
		t.Fatal("no ServiceL2Status for demo/web")
	}
	for _, s := range statuses {
		if n := s.Status.Node; n != owner[v4] && n != owner[v6] {
			t.Errorf("ServiceL2Status %s names %q, but %s and %s answer for demo/web", s.Name, n, owner[v4], owner[v6])
		}
	}

	// The failover the demo suggests: stop the IPv4 owner's speaker,
	// another node answers; a second up starts it again and otherwise
	// leaves the running lab alone.
	victim := l.Process("speaker-" + owner[v4])
	if err := victim.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		macs, err := l.Answers(ctx, v4)
		if err != nil {
			t.Fatal(err)
		}
		if len(macs) == 1 {
			if nd, ok := l.Network.NodeWithMAC(macs[0]); ok && nd.Name != owner[v4] {
				t.Logf("%s moved from %s to %s", v4, owner[v4], nd.Name)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answered by %v after stopping %s's speaker", v4, macs, owner[v4])
		}
	}
	again, err := lab.Up(ctx, cfg)
	if !errors.Is(err, lab.ErrAlreadyUp) {
		t.Fatalf("second Up: err = %v, want ErrAlreadyUp", err)
	}
	if again.Kubeconfig != l.Kubeconfig {
		t.Errorf("second Up returned another lab: %+v", again)
	}
	if p := again.Process(victim.Name); p == nil || p.PID == victim.PID || !p.Alive() {
		t.Errorf("second Up did not start %s again: %+v", victim.Name, p)
	}
	if dead := again.Alive(); len(dead) != 0 {
		t.Errorf("after the second Up, stopped: %v", dead)
	}

	procs := again.Processes
	if len(procs) != 7 {
		t.Errorf("lab recorded %d processes, want etcd, kube-apiserver, controller, three speakers and a restarted one", len(procs))
	}
	if err := lab.Down(dir); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("%s (pid %d) still runs after Down", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Down left %s behind (stat: %v)", dir, err)
	}
	nsList, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(nsList), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			t.Errorf("Down left namespace %s", line)
		}
	}
	if err := exec.Command("ip", "link", "show", l.Network.HostIf()).Run(); err == nil {
		t.Errorf("Down left interface %s in the root namespace", l.Network.HostIf())
	}
}

// lastAnnouncer returns the node whose speaker logged "service announced"
// for ip last.
func lastAnnouncer(t *testing.T, l *lab.Lab, ip netip.Addr) string {
	t.Helper()
	var node string
	var at time.Time
	for _, nd := range l.Network.Nodes {
		p := l.Process("speaker-" + nd.Name)
		if p == nil {
			continue
		}
		b, err := os.ReadFile(p.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			var rec struct {
				Time    time.Time
				Msg, IP string
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "service announced" || rec.IP != ip.String() {
				continue
			}
			if rec.Time.After(at) {
				node, at = nd.Name, rec.Time
			}
		}
	}
	return node
}

// dumpLogs prints the tail of every process log, so that a failure in CI
// says why without a rerun.
func dumpLogs(t *testing.T, l *lab.Lab) {
	for _, p := range l.Processes {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- %s (%s) ---\n%s", p.Name, p.Log, b)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
