package controller_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

// addresses maps each of the test's Services to its addresses.
func (e *env) addresses() map[string]string {
	e.t.Helper()
	var list corev1.ServiceList
	if err := e.c.List(e.ctx, &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for i := range list.Items {
		out[list.Items[i].Name] = strings.Join(ips(&list.Items[i]), ",")
	}
	return out
}

// waitAllAssigned waits until every Service of the test has an address and
// no address is held twice.
func (e *env) waitAllAssigned(n int) map[string]string {
	e.t.Helper()
	var got map[string]string
	e.eventually(fmt.Sprintf("%d services assigned", n), 60*time.Second, func() error {
		got = e.addresses()
		owners := map[string]string{}
		for svc, ip := range got {
			if ip == "" {
				return fmt.Errorf("%s has no address", svc)
			}
			if other, ok := owners[ip]; ok {
				e.t.Fatalf("%s given to both %s and %s", ip, other, svc)
			}
			owners[ip] = svc
		}
		if len(got) != n {
			return fmt.Errorf("%d services, want %d", len(got), n)
		}
		return nil
	})
	return got
}

// TestRestartKeepsEveryAddress stops the controller, changes things while it
// is down, and checks that the new one moves nothing: pending Services must
// not take the addresses of Services that already hold them, even in a pool
// with no spare room.
func TestRestartKeepsEveryAddress(t *testing.T) {
	e := newEnv(t)
	// 30 addresses: exactly what the Services below need.
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.160.0.1-10.160.0.30"}})
	stop := e.startController(e.controllerOptions())
	for i := range 20 {
		e.service(fmt.Sprintf("old-%02d", i))
	}
	before := e.waitAllAssigned(20)
	stop()

	// While it is down: two Services go, twelve pending ones arrive. Only
	// twelve addresses are free (10 spare + 2 freed).
	for _, n := range []string{"old-03", "old-11"} {
		if err := e.c.Delete(e.ctx, e.get(n)); err != nil {
			t.Fatal(err)
		}
		delete(before, n)
	}
	for i := range 12 {
		e.service(fmt.Sprintf("new-%02d", i))
	}
	e.startController(e.controllerOptions())
	after := e.waitAllAssigned(30)
	for svc, ip := range before {
		if after[svc] != ip {
			t.Errorf("%s moved from %s to %s across a restart", svc, ip, after[svc])
		}
	}
}

// TestTwoReplicasNeverDoubleAssign runs two replicas with leader election and
// hands the lease back and forth while Services keep arriving.
func TestTwoReplicasNeverDoubleAssign(t *testing.T) {
	e := newEnv(t)
	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.170.0.0/26"}})
	replica := func() func() {
		o := e.controllerOptions()
		o.LeaderElect = true
		o.LeaseDuration = 3 * time.Second
		return e.startController(o)
	}
	stopA := replica()
	stopB := replica()
	n := 0
	more := func(k int) {
		for range k {
			e.service(fmt.Sprintf("s-%02d", n))
			n++
		}
	}
	more(15)
	e.waitAllAssigned(n)
	stopA() // releases the lease if it held it; B carries on
	more(15)
	e.waitAllAssigned(n)
	stopC := replica()
	stopB()
	more(15)
	final := e.waitAllAssigned(n)
	stopC()
	if len(final) != 45 {
		t.Fatalf("%d services, want 45", len(final))
	}
}

// TestBinaryWithMinimalFlags runs the real bin/controller with exactly
// --kubeconfig and --namespace, as the README promises, and checks it
// assigns, serves health and metrics, and gives the lease back on SIGTERM.
func TestBinaryWithMinimalFlags(t *testing.T) {
	e := newEnv(t)
	bin := filepath.Join(apiservertest.Root(), "bin", "controller")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make build` (make test does): %v", bin, err)
	}
	for _, name := range []string{"ironlb-system"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := e.c.Create(e.ctx, ns); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	pool := &v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "binary-test", Namespace: "ironlb-system"},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"10.180.0.0/24"}}}
	e.create(pool)

	kc := filepath.Join(t.TempDir(), "kubeconfig")
	apiservertest.WriteKubeconfig(t, e.cfg, kc)
	cmd := exec.Command(bin, "--kubeconfig="+kc, "--namespace=ironlb-system")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case logs <- sc.Text():
			default:
			}
		}
		close(logs)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			for line := range logs {
				t.Log(line)
			}
		}
	})

	// An unclassed Service: the binary's defaults handle it.
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: e.ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	e.create(s)
	e.waitIPs("plain", "10.180.0.0")

	for _, path := range []string{"http://127.0.0.1:8081/healthz", "http://127.0.0.1:8081/readyz"} {
		if body := httpGet(t, path); !strings.Contains(body, "ok") {
			t.Errorf("%s answered %q", path, body)
		}
	}
	e.eventually("metrics show the pool", 10*time.Second, func() error {
		body := httpGet(t, "http://127.0.0.1:7472/metrics")
		want := `ironlb_allocator_addresses_assigned{family="ipv4",pool="binary-test"} 1`
		if !strings.Contains(body, want) {
			return fmt.Errorf("no %q in metrics", want)
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("controller exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("controller still running 20s after SIGTERM")
	}
	var lease coordinationv1.Lease
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: "ironlb-system", Name: "ironlb-controller"}, &lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %q after SIGTERM", *h)
	}
	var sawAllocated bool
	for line := range logs {
		if strings.Contains(line, `"msg":"ip allocated"`) && strings.Contains(line, `"service":"`+e.ns+`/plain"`) {
			sawAllocated = true
		}
	}
	if !sawAllocated {
		t.Error(`no JSON log line "ip allocated" with service key`)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}
