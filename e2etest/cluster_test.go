package e2etest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

// The layer-2 tests share one cluster lab: three node namespaces with a
// speaker each, a router and a client, the controller and a real API
// server. They run one after another (they stop and start speakers), each
// in its own Service namespace and pool.
var (
	clusterOnce sync.Once
	clusterLab  *lab.Lab
	clusterErr  error
)

// needRoot fails (not skips) without root or the lab's tools: CI runs as
// root with them installed by `make test`, so a skip would hide a broken
// environment.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the lab needs root (network namespaces); run as root, as CI does")
	}
	for _, tool := range []string{"ip", "arping", "ndisc6", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the lab needs %s: run `make packages`", tool)
		}
	}
}

func cluster(t *testing.T) *lab.Lab {
	t.Helper()
	needRoot(t)
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		idx, err := lab.FreeIndex(ctx, 100)
		if err != nil {
			clusterErr = err
			return
		}
		dir, err := os.MkdirTemp("", "ironlb-e2e-lab-")
		if err != nil {
			clusterErr = err
			return
		}
		clusterLab, clusterErr = lab.StartCluster(ctx, lab.ClusterConfig{
			Config:     lab.Config{Dir: dir, Root: repoRoot(t)},
			Prefix:     fmt.Sprintf("ilbt%d", idx),
			Index:      idx,
			Controller: controllerBinary(t),
			Speaker:    speakerBinary(t),
			PodServer:  podServerBinary(t),
		})
		if clusterErr == nil {
			cleanups = append(cleanups, func() { _ = clusterLab.Stop() })
		} else if clusterLab != nil {
			_ = clusterLab.Stop()
		}
	})
	if clusterErr != nil {
		t.Fatalf("starting the cluster lab: %v", clusterErr)
	}
	return clusterLab
}

// l2env is one test's corner of the cluster.
type l2env struct {
	t   *testing.T
	lab *lab.Lab
	c   client.Client
	ctx context.Context
	ns  string
}

func newL2Env(t *testing.T, poolSpec v1beta1.IPAddressPoolSpec, adv v1beta1.L2AdvertisementSpec) *l2env {
	t.Helper()
	l := cluster(t)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	e := &l2env{t: t, lab: l, c: c, ctx: context.Background(), ns: "t-" + name}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	pool := &v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace}, Spec: poolSpec}
	// Each test's pool is for its own namespace only, so tests never take
	// each other's addresses.
	pool.Spec.ServiceAllocation = &v1beta1.ServiceAllocation{Namespaces: []string{e.ns}}
	e.create(pool)
	if adv.IPAddressPools == nil {
		adv.IPAddressPools = []string{name}
	}
	e.create(&v1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace}, Spec: adv})
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), pool)
		_ = c.Delete(context.Background(), &v1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace}})
		var svcs corev1.ServiceList
		_ = c.List(context.Background(), &svcs, client.InNamespace(e.ns))
		for i := range svcs.Items {
			_ = c.Delete(context.Background(), &svcs.Items[i])
		}
	})
	return e
}

func (e *l2env) create(obj client.Object) {
	e.t.Helper()
	if err := e.c.Create(e.ctx, obj); err != nil {
		e.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// service creates a LoadBalancer Service with an EndpointSlice whose ready
// endpoints sit on the given nodes, and waits for its addresses.
func (e *l2env) service(name string, local bool, family corev1.IPFamily, readyOn ...string) []string {
	e.t.Helper()
	p := corev1.IPFamilyPolicySingleStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			Selector:                      map[string]string{"app": name},
			IPFamilyPolicy:                &p,
			IPFamilies:                    []corev1.IPFamily{family},
			AllocateLoadBalancerNodePorts: ptr(false),
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	e.create(svc)
	e.endpoints(name, readyOn...)
	var ips []string
	e.eventually("service "+name+" has an address", 20*time.Second, func() error {
		var s corev1.Service
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &s); err != nil {
			return err
		}
		ips = nil
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		if len(ips) == 0 {
			return fmt.Errorf("no address")
		}
		return nil
	})
	return ips
}

// endpoints writes the Service's EndpointSlice: one ready endpoint on each
// node named, the pod namespace behind that node.
func (e *l2env) endpoints(svc string, readyOn ...string) {
	e.t.Helper()
	var pods []dpPod
	for _, n := range readyOn {
		pod, ok := e.lab.Network.PodOn(n)
		if !ok {
			e.t.Fatalf("no pod on %s", n)
		}
		pods = append(pods, dpPod{pod.Name, n, pod.IP, pod.IPv6})
	}
	dpEndpoints(e, svc, pods...)
}

func (e *l2env) eventually(what string, timeout time.Duration, fn func() error) {
	e.t.Helper()
	apiservertest.Eventually(e.t, what, timeout, fn)
}

// owner returns the node the ServiceL2Status names for a Service.
func (e *l2env) owner(svc string) (string, error) {
	var list v1beta1.ServiceL2StatusList
	if err := e.c.List(e.ctx, &list, client.InNamespace(lab.Namespace),
		client.MatchingLabels{"ironlb.io/service-name": svc, "ironlb.io/service-namespace": e.ns}); err != nil {
		return "", err
	}
	if len(list.Items) != 1 {
		return "", fmt.Errorf("%d ServiceL2Status objects for %s/%s", len(list.Items), e.ns, svc)
	}
	return list.Items[0].Status.Node, nil
}

func (e *l2env) waitOwner(svc string, not string) string {
	e.t.Helper()
	var node string
	e.eventually("ServiceL2Status for "+svc, 20*time.Second, func() error {
		var err error
		node, err = e.owner(svc)
		if err == nil && (node == "" || node == not) {
			err = fmt.Errorf("owner %q", node)
		}
		return err
	})
	return node
}

// arpMACs asks from the router who has ip and returns the distinct MACs
// that answered.
func (e *l2env) arpMACs(ip string) []string {
	out, _ := e.lab.Network.Exec(e.ctx, "router", "arping", "-r", "-c", "2", "-C", "3", "-w", "1", "-i", "eth0", ip)
	var macs []string
	for _, f := range strings.Fields(string(out)) {
		f = strings.ToLower(f)
		if strings.Count(f, ":") == 5 && !contains(macs, f) {
			macs = append(macs, f)
		}
	}
	return macs
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

var cleanups []func()

func objMeta(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// ownLab starts a cluster lab for one test or benchmark alone, on the first
// free management subnet from index from, with namespaces named prefix<idx>.
// tune, when not nil, adjusts the configuration (dataplane, extra args).
// The lab is stopped when tb ends.
func ownLab(tb testing.TB, from int, prefix string, tune func(*lab.ClusterConfig)) *lab.Lab {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	idx, err := lab.FreeIndex(ctx, from)
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ironlb-e2e-"+prefix+"-")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := lab.ClusterConfig{
		Config:     lab.Config{Dir: dir, Root: repoRoot(tb)},
		Prefix:     fmt.Sprintf("%s%d", prefix, idx),
		Index:      idx,
		Controller: controllerBinary(tb),
		Speaker:    speakerBinary(tb),
	}
	if tune != nil {
		tune(&cfg)
	}
	l, err := lab.StartCluster(ctx, cfg)
	if l != nil {
		tb.Cleanup(func() {
			if err := l.Stop(); err != nil {
				tb.Errorf("stopping lab %s: %v", cfg.Prefix, err)
			}
		})
	}
	if err != nil {
		tb.Fatalf("starting lab %s: %v", cfg.Prefix, err)
	}
	return l
}
