package e2etest

import (
	"context"
	"errors"
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

// TestLabUpDown brings the demo up in a temporary directory on fresh
// ports (so that it never meets a running `make demo`), checks that the
// example Service got addresses from the example pool, through the API and
// through kubectl, and that Down leaves no process behind.
func TestLabUpDown(t *testing.T) {
	root := repoRoot(t)
	ctrl := controllerBinary(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to check what users see: %v", err)
	}
	examples, err := filepath.Glob(filepath.Join(root, "e2etest", "testdata", "demo", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no demo examples in e2etest/testdata/demo: %v", err)
	}
	ports, err := lab.FreePorts("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	cfg := lab.UpConfig{
		Config:      lab.Config{Dir: dir, Root: root, Log: testWriter{t}},
		Controller:  ctrl,
		MetricsAddr: "127.0.0.1:" + itoa(ports[0]),
		HealthAddr:  "127.0.0.1:" + itoa(ports[1]),
		Examples:    examples,
	}
	l, err := lab.Up(ctx, cfg)
	if l != nil {
		t.Cleanup(func() {
			if t.Failed() {
				dumpLogs(t, l)
			}
			_ = l.Stop()
		})
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}

	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &svc); err != nil {
		t.Fatalf("getting demo/web: %v", err)
	}
	pool := []struct{ first, last netip.Addr }{
		{netip.MustParseAddr("192.168.100.100"), netip.MustParseAddr("192.168.100.120")},
		{netip.MustParseAddr("fd00:100::100"), netip.MustParseAddr("fd00:100::120")},
	}
	var ips []string
	families := map[bool]bool{}
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
		families[ip.Is4()] = true
		ips = append(ips, in.IP)
	}
	if len(families) != 2 {
		t.Errorf("demo/web ingress %v: want one IPv4 and one IPv6 address", ips)
	}

	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", l.Kubeconfig, "get", "svc", "-n", "demo", "web").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get svc: %v\n%s", err, out)
	}
	for _, ip := range ips {
		if !strings.Contains(string(out), ip) {
			t.Errorf("kubectl get svc does not show %s:\n%s", ip, out)
		}
	}

	// A second up finds the running lab and leaves it alone.
	again, err := lab.Up(ctx, cfg)
	if !errors.Is(err, lab.ErrAlreadyUp) {
		t.Errorf("second Up: err = %v, want ErrAlreadyUp", err)
	} else if again.Kubeconfig != l.Kubeconfig || len(again.Processes) != len(l.Processes) {
		t.Errorf("second Up returned another lab: %+v", again)
	}

	procs := l.Processes
	if len(procs) != 3 {
		t.Errorf("lab recorded %d processes, want etcd, kube-apiserver and controller", len(procs))
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
