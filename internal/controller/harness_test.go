package controller_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
	"github.com/ironlb/ironlb/internal/controller"
)

// One real API server serves every test in this package. Tests stay out of
// each other's way by using their own namespaces and their own
// loadBalancerClass, so they run in parallel.
var (
	apiOnce sync.Once
	apiCfg  *rest.Config
	apiStop func()
)

type fakeTB struct {
	testing.TB
	cleanups []func()
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if apiStop != nil {
		apiStop()
	}
	os.Exit(code)
}

func sharedAPIServer(t *testing.T) *rest.Config {
	t.Helper()
	apiOnce.Do(func() {
		// The server outlives the first test that asks for it; TestMain stops it.
		tb := &fakeTB{TB: t}
		apiCfg = apiservertest.Start(tb)
		apiStop = func() {
			for _, fn := range tb.cleanups {
				fn()
			}
		}
	})
	if apiCfg == nil {
		t.Fatal("API server did not start")
	}
	return apiCfg
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1beta1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// env is one test's corner of the shared API server.
type env struct {
	t       *testing.T
	cfg     *rest.Config
	c       client.Client
	ns      string // namespace for the test's Services
	poolNS  string // namespace for the test's pools
	class   string // loadBalancerClass of the test's Services
	ctx     context.Context
	counter int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	t.Parallel()
	cfg := sharedAPIServer(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-")
	e := &env{t: t, cfg: cfg, c: c, ns: "svc-" + name, poolNS: "pools-" + name, class: "test.ironlb.io/" + name, ctx: context.Background()}
	for _, ns := range []string{e.ns, e.poolNS} {
		e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	return e
}

// controllerOptions are the options of a controller serving this test.
func (e *env) controllerOptions() controller.Options {
	return controller.Options{
		Config:      controller.Config{Namespace: e.poolNS, Class: e.class, Workers: 4},
		Rest:        e.cfg,
		MetricsAddr: "0",
		HealthAddr:  "0",
		Registry:    prometheus.NewRegistry(),
		Logger:      testLogger(e.t),
	}
}

// startController runs a controller until the returned stop is called or
// the test ends. stop waits for it to return.
func (e *env) startController(o controller.Options) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx, o) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("controller returned: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Errorf("controller did not stop within 30s")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) create(obj client.Object) {
	e.t.Helper()
	if err := e.c.Create(e.ctx, obj); err != nil {
		e.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (e *env) pool(name string, spec v1beta1.IPAddressPoolSpec) *v1beta1.IPAddressPool {
	e.t.Helper()
	p := &v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.poolNS}, Spec: spec}
	e.create(p)
	return p
}

// svcOpt adjusts a Service before it is created.
type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPort(proto corev1.Protocol, port int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: strings.ToLower(fmt.Sprintf("%s-%d", proto, port)), Protocol: proto, Port: port}}
	}
}

func (e *env) service(name string, opts ...svcOpt) *corev1.Service {
	e.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &e.class,
			Ports:             []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			Selector:          map[string]string{"app": name},
		},
	}
	for _, o := range opts {
		o(s)
	}
	e.create(s)
	return s
}

func (e *env) get(name string) *corev1.Service {
	e.t.Helper()
	var s corev1.Service
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &s); err != nil {
		e.t.Fatalf("getting service %s: %v", name, err)
	}
	return &s
}

// update re-reads a Service, applies fn and writes it, retrying conflicts.
func (e *env) update(name string, fn func(*corev1.Service)) {
	e.t.Helper()
	for range 10 {
		s := e.get(name)
		fn(s)
		err := e.c.Update(e.ctx, s)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatalf("updating service %s: %v", name, err)
		}
	}
	e.t.Fatalf("updating service %s: conflicts", name)
}

// eventually polls fn until it returns nil (see apiservertest.Eventually).
func (e *env) eventually(what string, timeout time.Duration, fn func() error) {
	e.t.Helper()
	apiservertest.Eventually(e.t, what, timeout, fn)
}

// ips returns a Service's ingress addresses.
func ips(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// waitIPs waits until the Service has exactly the addresses want (in
// order), or any n addresses when want is nil and n > 0.
func (e *env) waitIPs(name string, want ...string) *corev1.Service {
	e.t.Helper()
	var s *corev1.Service
	e.eventually("service "+name+" has "+strings.Join(want, ","), 20*time.Second, func() error {
		s = e.get(name)
		if got := ips(s); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("ingress %v", got)
		}
		return nil
	})
	return s
}

// waitAnyIP waits until the Service has n addresses and returns them.
func (e *env) waitAnyIP(name string, n int) []string {
	e.t.Helper()
	var got []string
	e.eventually(fmt.Sprintf("service %s has %d addresses", name, n), 20*time.Second, func() error {
		got = ips(e.get(name))
		if len(got) != n {
			return fmt.Errorf("ingress %v", got)
		}
		return nil
	})
	return got
}

// waitEvent waits for an Event on the object with the reason and a note
// containing every fragment.
func (e *env) waitEvent(ns, name, reason string, fragments ...string) {
	e.t.Helper()
	apiservertest.WaitEvent(e.t, e.c, ns, name, reason, fragments...)
}

func (e *env) getPool(name string) *v1beta1.IPAddressPool {
	e.t.Helper()
	var p v1beta1.IPAddressPool
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.poolNS, Name: name}, &p); err != nil {
		e.t.Fatalf("getting pool %s: %v", name, err)
	}
	return &p
}

func ptr[T any](v T) *T { return &v }

func clientKey(name string) client.ObjectKey { return client.ObjectKey{Name: name} }

// waitIn waits until the Service has one address inside each prefix, in
// order, and returns them.
func (e *env) waitIn(name string, prefixes ...string) []string {
	e.t.Helper()
	var got []string
	e.eventually(fmt.Sprintf("service %s has addresses in %v", name, prefixes), 20*time.Second, func() error {
		got = ips(e.get(name))
		if len(got) != len(prefixes) {
			return fmt.Errorf("ingress %v", got)
		}
		for i, p := range prefixes {
			ip, err := netip.ParseAddr(got[i])
			if err != nil || !netip.MustParsePrefix(p).Contains(ip) {
				return fmt.Errorf("ingress %v", got)
			}
		}
		return nil
	})
	return got
}
