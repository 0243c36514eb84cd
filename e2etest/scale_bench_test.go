package e2etest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// BenchmarkControllerScale measures the real controller binary against a
// real API server: N pending LoadBalancer Services exist before it starts;
// how long until all have an address, what that costs in CPU and memory,
// and whether a restart moves any address (it must not).
//
// Run it once per size: go test -run '^$' -bench BenchmarkControllerScale -benchtime=1x ./e2etest/
func BenchmarkControllerScale(b *testing.B) {
	bin := controllerBinary(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var r scaleResult
			for range b.N {
				r = runScale(b, bin, n)
			}
			b.ReportMetric(r.toAssigned.Seconds(), "s-to-all-assigned")
			b.ReportMetric(r.cpu, "cpu-s")
			b.ReportMetric(r.cpu/float64(n)*1000, "cpu-s-per-1000-svc")
			b.ReportMetric(float64(r.rss)/(1<<20), "rss-MB")
			b.ReportMetric(float64(r.ipChanges), "ip-changes")
			b.ReportMetric(r.restartReady.Seconds(), "restart-ready-s")
			b.ReportMetric(r.restartRestored.Seconds(), "restart-restored-s")
			b.Logf("\n"+
				"  services              %8d\n"+
				"  created in            %8.1f s (%d goroutines)\n"+
				"  start to all assigned %8.1f s\n"+
				"  controller CPU        %8.1f s (%.2f s per 1000 Services)\n"+
				"  controller RSS        %8.1f MB\n"+
				"  restart: /readyz      %8.2f s\n"+
				"  restart: restored     %8.2f s\n"+
				"  IPs changed by restart%8d",
				n, r.created.Seconds(), creators, r.toAssigned.Seconds(), r.cpu, r.cpu/float64(n)*1000,
				float64(r.rss)/(1<<20), r.restartReady.Seconds(), r.restartRestored.Seconds(), r.ipChanges)
			if r.ipChanges != 0 {
				b.Errorf("a controller restart changed the addresses of %d Services", r.ipChanges)
			}
		})
	}
}

// creators is how many goroutines create the Services.
const creators = 32

type scaleResult struct {
	created, toAssigned           time.Duration
	cpu                           float64
	rss                           int64
	restartReady, restartRestored time.Duration
	ipChanges                     int
}

const benchNS = "bench"

func runScale(b *testing.B, bin string, n int) scaleResult {
	b.StopTimer()
	var r scaleResult
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Config{Dir: filepath.Join(b.TempDir(), "lab"), Root: repoRoot(b)})
	if l != nil {
		defer func() {
			if b.Failed() {
				for _, p := range l.Processes {
					b.Logf("%s log: %s", p.Name, tail(p.Log, 3000))
				}
			}
			if err := l.Stop(); err != nil {
				b.Errorf("stopping lab: %v", err)
			}
		}()
	}
	if err != nil {
		b.Fatalf("starting API server: %v", err)
	}
	cfg, err := l.Rest()
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c, err := l.Client()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		b.Fatalf("creating namespace %s: %v", benchNS, err)
	}
	// A /16 holds 65536 addresses: room for the largest N.
	pool := &v1beta1.IPAddressPool{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-pool", Namespace: lab.Namespace},
		Spec:       v1beta1.IPAddressPoolSpec{Addresses: []string{"10.200.0.0/16"}},
	}
	if err := c.Create(ctx, pool); err != nil {
		b.Fatalf("creating pool: %v", err)
	}

	start := time.Now()
	if err := createServices(ctx, cs, n); err != nil {
		b.Fatal(err)
	}
	r.created = time.Since(start)

	w := newWatcher(n)
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(benchNS))
	inf := f.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(w); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	defer func() {
		// Shutdown waits for the informers, which stop only on this close.
		close(stop)
		f.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		b.Fatal("Service informer did not sync")
	}
	if got := w.assignedCount(); got != 0 {
		b.Fatalf("%d Services have addresses before the controller started", got)
	}

	ports, err := lab.FreePorts("127.0.0.1", 2)
	if err != nil {
		b.Fatal(err)
	}
	args := []string{bin,
		"--kubeconfig=" + l.Kubeconfig,
		"--namespace=" + lab.Namespace,
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--health-addr=127.0.0.1:%d", ports[1]),
	}
	// IRONLB_CONTROLLER_ARGS adds flags, to compare settings (--workers=32).
	args = append(args, strings.Fields(os.Getenv("IRONLB_CONTROLLER_ARGS"))...)
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])

	b.StartTimer()
	start = time.Now()
	p, err := l.StartProcess("controller", nil, args...)
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-w.allAssigned:
	case <-p.Exited():
		b.Fatalf("controller exited before assigning all Services (%d of %d)", w.assignedCount(), n)
	case <-ctx.Done():
		b.Fatalf("waiting for all Services to be assigned (%d of %d): %v", w.assignedCount(), n, ctx.Err())
	}
	r.toAssigned = time.Since(start)
	b.StopTimer()
	if r.cpu, err = p.CPUSeconds(); err != nil {
		b.Fatal(err)
	}
	if r.rss, err = p.RSSBytes(); err != nil {
		b.Fatal(err)
	}

	// Restart: from here on the watcher flags any address that differs
	// from what each Service had, even if it comes back later.
	w.freeze()
	if err := p.Stop(30 * time.Second); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	p2, err := l.StartProcess("controller-restarted", nil, args...)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: time.Second}
	for r.restartReady == 0 || r.restartRestored == 0 {
		if !p2.Alive() {
			b.Fatalf("restarted controller exited; see %s", p2.Log)
		}
		if r.restartReady == 0 {
			if resp, err := hc.Get(readyz); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					r.restartReady = time.Since(start)
				}
			}
		}
		if r.restartRestored == 0 {
			if log, err := os.ReadFile(p2.Log); err == nil && bytes.Contains(log, []byte(`"msg":"allocations restored"`)) {
				r.restartRestored = time.Since(start)
			}
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("restarted controller: not ready and restored after 5 minutes (ready after %v, restored after %v)", r.restartReady, r.restartRestored)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Give a misbehaving controller time to move addresses.
	time.Sleep(5 * time.Second)
	list, err := cs.CoreV1().Services(benchNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatalf("listing Services after the restart: %v", err)
	}
	r.ipChanges = w.changes(list.Items)
	if err := p2.Stop(30 * time.Second); err != nil {
		b.Error(err)
	}
	return r
}

// createServices creates n pending LoadBalancer Services with creators
// goroutines.
func createServices(ctx context.Context, cs kubernetes.Interface, n int) error {
	var next atomic.Int64
	errs := make(chan error, creators)
	var wg sync.WaitGroup
	for range creators {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i), Namespace: benchNS},
					Spec: corev1.ServiceSpec{
						Type:  corev1.ServiceTypeLoadBalancer,
						Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
						// The default NodePort range holds 2768 ports, fewer
						// than the largest N; IronLB does not need them.
						AllocateLoadBalancerNodePorts: ptr(false),
					},
				}
				if _, err := cs.CoreV1().Services(benchNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating Service %s/%s: %w", benchNS, svc.Name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when no goroutine failed
}

// watcher follows the Services' addresses through an informer.
type watcher struct {
	n           int
	mu          sync.Mutex
	ips         map[string]string // name -> sorted ingress IPs
	assigned    int               // entries of ips that are not empty
	frozen      map[string]string // addresses when the restart began
	moved       map[string]bool   // Services whose addresses differed since
	allAssigned chan struct{}
	done        bool
}

func newWatcher(n int) *watcher {
	return &watcher{n: n, ips: map[string]string{}, moved: map[string]bool{}, allAssigned: make(chan struct{})}
}

func ingressKey(svc *corev1.Service) string {
	var ips []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, in.IP)
	}
	slices.Sort(ips)
	return strings.Join(ips, ",")
}

func (w *watcher) observe(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	key := ingressKey(svc)
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.ips[svc.Name]; (old == "") != (key == "") {
		if key == "" {
			w.assigned--
		} else {
			w.assigned++
		}
	}
	w.ips[svc.Name] = key
	if w.frozen != nil && w.frozen[svc.Name] != key {
		w.moved[svc.Name] = true
	}
	if !w.done && w.assigned == w.n {
		w.done = true
		close(w.allAssigned)
	}
}

func (w *watcher) OnAdd(obj any, _ bool) { w.observe(obj) }
func (w *watcher) OnUpdate(_, obj any)   { w.observe(obj) }
func (w *watcher) OnDelete(any)          {}

func (w *watcher) assignedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.assigned
}

// freeze records every Service's addresses as the ones to keep.
func (w *watcher) freeze() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frozen = maps.Clone(w.ips)
}

// changes counts Services whose addresses differ, now or at any moment
// the watcher saw since freeze, from what they had at freeze.
func (w *watcher) changes(now []corev1.Service) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	moved := maps.Clone(w.moved)
	for i := range now {
		if w.frozen[now[i].Name] != ingressKey(&now[i]) {
			moved[now[i].Name] = true
		}
	}
	return len(moved)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
