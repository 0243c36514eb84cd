package lab

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// UpConfig is a lab with the IronLB controller and example objects.
type UpConfig struct {
	Config
	// Controller is the controller binary.
	Controller string
	// MetricsAddr and HealthAddr are the controller's listen addresses.
	MetricsAddr, HealthAddr string
	// Examples are YAML files applied once the controller runs; Up waits
	// until every LoadBalancer Service in them has its addresses.
	Examples []string
}

// Keys under Lab.Extra that Up fills in.
const (
	ExtraMetricsURL = "metricsURL"
	ExtraHealthURL  = "healthURL"
)

// Up starts a lab (see Start), then the controller, applies the examples
// and waits until their LoadBalancer Services have addresses. An error
// wrapping ErrAlreadyUp comes with the lab that already runs in cfg.Dir.
func Up(ctx context.Context, cfg UpConfig) (*Lab, error) {
	l, err := Start(ctx, cfg.Config)
	if err != nil {
		return l, err
	}
	if err := l.StartController(ctx, cfg.Controller, cfg.MetricsAddr, cfg.HealthAddr); err != nil {
		return l, err
	}
	if len(cfg.Examples) == 0 {
		return l, nil
	}
	// A new client: the first one was made before the CRDs existed.
	c, err := l.Client()
	if err != nil {
		return l, err
	}
	fmt.Fprintf(cfg.Log, "applying %v\n", cfg.Examples)
	objs, err := ApplyFiles(ctx, c, cfg.Examples...)
	if err != nil {
		return l, err
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
	fmt.Fprintf(cfg.Log, "waiting for addresses on %v\n", svcs)
	if err := WaitAssigned(ctx, c, 60*time.Second, svcs...); err != nil {
		return l, fmt.Errorf("%w (controller log: %s)", err, l.Process("controller").Log)
	}
	// Pool status is written after the Services'; wait for it (briefly, as
	// it is only for show) so that the first listing is complete.
	if err := waitPoolsCounted(ctx, c, 10*time.Second, pools...); err != nil {
		fmt.Fprintf(cfg.Log, "pool status not written yet: %v\n", err)
	}
	return l, nil
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
