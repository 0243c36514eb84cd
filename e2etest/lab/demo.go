package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// UpConfig is the demo: a cluster lab (see StartCluster) and example
// objects applied to it.
type UpConfig struct {
	ClusterConfig
	// Examples are YAML files applied once the speakers run; Up waits
	// until every LoadBalancer Service in them is announced.
	Examples []string
}

// Keys under Lab.Extra that StartController fills in.
const (
	ExtraMetricsURL = "metricsURL"
	ExtraHealthURL  = "healthURL"
)

// Up starts a cluster lab, applies the examples and waits until each
// LoadBalancer Service in them has its addresses, a ServiceL2Status naming
// the node that announces it, and exactly one node answering ARP or NDP
// for each address as seen from the router.
//
// When cfg.Dir already holds a running lab, Up starts again the speakers
// found stopped (as after a failover test), waits as above without
// applying anything, and returns that lab with an error wrapping
// ErrAlreadyUp. A wait that then fails is only logged: the user may have
// changed the examples on purpose.
func Up(ctx context.Context, cfg UpConfig) (*Lab, error) {
	l, already, err := restartSpeakers(ctx, cfg)
	if err != nil {
		return l, err
	}
	if !already {
		l, err = StartCluster(ctx, cfg.ClusterConfig)
		if errors.Is(err, ErrAlreadyUp) {
			already = true
		} else if err != nil {
			return l, err
		}
	}
	c, err := l.Client()
	if err != nil {
		return l, err
	}
	if !already && len(cfg.Examples) > 0 {
		fmt.Fprintf(cfg.Log, "applying %s\n", strings.Join(cfg.Examples, " "))
		if _, err := ApplyFiles(ctx, c, cfg.Examples...); err != nil {
			return l, err
		}
	}
	err = l.waitExamples(ctx, c, cfg)
	if already {
		if err != nil {
			fmt.Fprintf(cfg.Log, "the running lab does not show the examples as expected: %v\n", err)
		}
		return l, fmt.Errorf("%w in %s", ErrAlreadyUp, cfg.Dir)
	}
	return l, err
}

// restartSpeakers starts again the speakers of the healthy lab in cfg.Dir
// that were stopped, and reports whether such a lab was found. A lab with
// anything else stopped is left for StartCluster to replace.
func restartSpeakers(ctx context.Context, cfg UpConfig) (*Lab, bool, error) {
	l, err := Load(cfg.Dir)
	if err != nil || l.Network == nil {
		return nil, false, nil
	}
	dead := l.Alive()
	if len(dead) == 0 || !slices.ContainsFunc(dead, func(n string) bool { return strings.HasPrefix(n, "speaker-") }) {
		return nil, false, nil
	}
	for _, name := range dead {
		if !strings.HasPrefix(name, "speaker-") {
			return nil, false, nil
		}
	}
	if l.ready(ctx) != nil {
		return nil, false, nil
	}
	for _, name := range dead {
		fmt.Fprintf(cfg.Log, "%s was stopped; starting it again\n", name)
		if err := l.StartSpeaker(ctx, cfg.Speaker, strings.TrimPrefix(name, "speaker-")); err != nil {
			return l, true, err
		}
	}
	return l, true, nil
}

// waitExamples waits until the examples' LoadBalancer Services are
// announced, then (briefly, as it is only for show) for the pools' status.
func (l *Lab) waitExamples(ctx context.Context, c client.Client, cfg UpConfig) error {
	objs, err := ReadObjects(cfg.Examples...)
	if err != nil {
		return err
	}
	var svcs, pools []client.ObjectKey
	for _, o := range objs {
		if o.GetKind() == "IPAddressPool" {
			pools = append(pools, client.ObjectKeyFromObject(o))
		}
		if o.GetKind() == "Service" && o.GetAPIVersion() == "v1" {
			if t, _, _ := unstructured.NestedString(o.Object, "spec", "type"); t == string(corev1.ServiceTypeLoadBalancer) {
				svcs = append(svcs, client.ObjectKeyFromObject(o))
			}
		}
	}
	if len(svcs) == 0 {
		return nil
	}
	fmt.Fprintf(cfg.Log, "waiting for addresses on %v\n", svcs)
	if err := WaitAssigned(ctx, c, 60*time.Second, svcs...); err != nil {
		return fmt.Errorf("%w (controller log: %s)", err, l.Process("controller").Log)
	}
	fmt.Fprintf(cfg.Log, "waiting for a ServiceL2Status and ARP/NDP answers for %v\n", svcs)
	for _, k := range svcs {
		if _, err := WaitL2Status(ctx, c, 30*time.Second, k); err != nil {
			return fmt.Errorf("%w (speaker logs: %s/speaker-*.log)", err, l.Dir)
		}
		var svc corev1.Service
		if err := c.Get(ctx, k, &svc); err != nil {
			return err
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil {
				return fmt.Errorf("Service %s ingress %q: %w", k, in.IP, err)
			}
			if _, err := l.WaitAnswer(ctx, 30*time.Second, ip); err != nil {
				return fmt.Errorf("%w (speaker logs: %s/speaker-*.log)", err, l.Dir)
			}
		}
	}
	if err := waitPoolsCounted(ctx, c, 10*time.Second, pools...); err != nil {
		fmt.Fprintf(cfg.Log, "pool status not written yet: %v\n", err)
	}
	return nil
}

// L2Statuses returns the ServiceL2Status objects for a Service: one per
// node announcing some of its addresses.
func L2Statuses(ctx context.Context, c client.Client, svc client.ObjectKey) ([]v1beta1.ServiceL2Status, error) {
	var list v1beta1.ServiceL2StatusList
	if err := c.List(ctx, &list, client.InNamespace(Namespace), client.MatchingLabels{
		"ironlb.io/service-name":      svc.Name,
		"ironlb.io/service-namespace": svc.Namespace,
	}); err != nil {
		return nil, fmt.Errorf("listing ServiceL2Status of %s: %w", svc, err)
	}
	return list.Items, nil
}

// WaitL2Status waits until a ServiceL2Status names a node announcing svc,
// and returns the nodes named.
func WaitL2Status(ctx context.Context, c client.Client, d time.Duration, svc client.ObjectKey) ([]string, error) {
	var nodes []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		items, err := L2Statuses(ctx, c, svc)
		if err != nil {
			return false, err
		}
		nodes = nodes[:0]
		for _, s := range items {
			if s.Status.Node != "" {
				nodes = append(nodes, s.Status.Node)
			}
		}
		return len(nodes) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for a ServiceL2Status of %s: %w", svc, err)
	}
	slices.Sort(nodes)
	return nodes, nil
}

// Answers asks from the router who has ip, by ARP for IPv4 and NDP for
// IPv6, and returns the distinct MACs (lower case) that answered.
func (l *Lab) Answers(ctx context.Context, ip netip.Addr) ([]string, error) {
	if l.Network == nil {
		return nil, errors.New("the lab has no network")
	}
	var argv []string
	if ip.Is4() {
		argv = []string{"arping", "-r", "-c", "2", "-C", "3", "-w", "1", "-i", "eth0", ip.String()}
	} else {
		argv = []string{"ndisc6", "-m", "-q", "-r", "2", "-w", "500", ip.String(), "eth0"}
	}
	// Both exit non-zero when nobody answers: that is an empty answer.
	out, _ := l.Network.Exec(ctx, "router", argv...)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var macs []string
	for _, f := range strings.Fields(strings.ToLower(string(out))) {
		if strings.Count(f, ":") == 5 && len(f) == 17 && !slices.Contains(macs, f) {
			macs = append(macs, f)
		}
	}
	return macs, nil
}

// WaitAnswer waits until exactly one lab node answers the router for ip
// and returns that node.
func (l *Lab) WaitAnswer(ctx context.Context, d time.Duration, ip netip.Addr) (Node, error) {
	var nd Node
	var last []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		macs, err := l.Answers(ctx, ip)
		if err != nil {
			return false, err
		}
		last = macs
		if len(macs) != 1 {
			return false, nil
		}
		var ok bool
		nd, ok = l.Network.NodeWithMAC(macs[0])
		return ok, nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("waiting for one node to answer for %s (last answers: %v): %w", ip, last, err)
	}
	return nd, nil
}

// NodeWithMAC returns the node whose eth0 has mac.
func (n *Network) NodeWithMAC(mac string) (Node, bool) {
	for _, nd := range n.Nodes {
		if strings.EqualFold(nd.MAC, mac) {
			return nd, true
		}
	}
	return Node{}, false
}

// waitPoolsCounted waits until each pool's status has a Ready condition
// and counts at least one assigned address.
func waitPoolsCounted(ctx context.Context, c client.Client, d time.Duration, keys ...client.ObjectKey) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		for _, k := range keys {
			var p v1beta1.IPAddressPool
			if err := c.Get(ctx, k, &p); err != nil {
				return false, fmt.Errorf("getting IPAddressPool %s: %w", k, err)
			}
			if p.Status.Assigned == 0 || meta.FindStatusCondition(p.Status.Conditions, v1beta1.ConditionReady) == nil {
				return false, nil
			}
		}
		return true, nil
	})
}

// StartController starts the controller binary against the lab's API
// server and waits until its /readyz answers.
func (l *Lab) StartController(ctx context.Context, bin, metricsAddr, healthAddr string, extraArgs ...string) error {
	args := append([]string{bin,
		"--kubeconfig=" + l.Kubeconfig,
		"--namespace=" + Namespace,
		"--metrics-addr=" + metricsAddr,
		"--health-addr=" + healthAddr,
	}, extraArgs...)
	p, err := l.StartProcess("controller", nil, args...)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.Extra[ExtraMetricsURL] = "http://" + metricsAddr + "/metrics"
	l.Extra[ExtraHealthURL] = "http://" + healthAddr + "/readyz"
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	return WaitHTTPOK(ctx, "http://"+healthAddr+"/readyz", 60*time.Second, p)
}

// WaitHTTPOK polls url until it answers 200, p exits, or d passes.
func WaitHTTPOK(ctx context.Context, url string, d time.Duration, p *Process) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		if !p.Alive() {
			return false, fmt.Errorf("%s exited; see %s", p.Name, p.Log)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s of %s: %w", url, p.Name, err)
	}
	return nil
}

// WaitAssigned waits until each Service has one ingress address per IP
// family it asks for.
func WaitAssigned(ctx context.Context, c client.Client, d time.Duration, keys ...client.ObjectKey) error {
	var last client.ObjectKey
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		for _, k := range keys {
			var svc corev1.Service
			if err := c.Get(ctx, k, &svc); err != nil {
				return false, fmt.Errorf("getting Service %s: %w", k, err)
			}
			if len(svc.Status.LoadBalancer.Ingress) < max(1, len(svc.Spec.IPFamilies)) {
				last = k
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for an address on Service %s: %w", last, err)
	}
	return nil
}
