// Command controller assigns addresses from IPAddressPools to LoadBalancer
// Services. See the README for its flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/ironlb/ironlb/internal/controller"
	"github.com/ironlb/ironlb/internal/startup"
)

func main() {
	// Our own flag set: controller-runtime registers --kubeconfig on the
	// global one, with another meaning.
	flag := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	var (
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty means in-cluster")
		o          controller.Options
		qps        = flag.Float64("kube-api-qps", 2000, "queries per second to the API server")
		burst      = flag.Int("kube-api-burst", 4000, "burst of queries to the API server")
		level      = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.StringVar(&o.Namespace, "namespace", "ironlb-system", "namespace of the IPAddressPools and the leader Lease")
	flag.StringVar(&o.Class, "lb-class", "ironlb.io/ironlb", "spec.loadBalancerClass this controller answers to")
	flag.BoolVar(&o.Unclassed, "unclassed", true, "also handle LoadBalancer Services that set no loadBalancerClass")
	flag.BoolVar(&o.LeaderElect, "leader-elect", true, "run as one of several replicas, active only while holding the Lease")
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 0, "how long a dead leader blocks the others (default 15s)")
	flag.StringVar(&o.MetricsAddr, "metrics-addr", ":7472", "address of the Prometheus /metrics endpoint; 0 disables")
	flag.StringVar(&o.HealthAddr, "health-addr", ":8081", "address of /healthz and /readyz; 0 disables")
	ipMode := flag.String("ip-mode", "VIP", "status.loadBalancer.ingress[].ipMode: Proxy when the speakers run with --dataplane=nftables or ipvs, VIP otherwise")
	flag.IntVar(&o.Workers, "workers", 32, "Services reconciled at once (the allocator is serialised; workers overlap API writes)")
	flag.BoolVar(&o.Profiling, "profiling", false, "also serve Go's CPU, heap and goroutine profiles under /debug/pprof/ on the metrics address")
	_ = flag.Parse(os.Args[1:]) // ExitOnError: never returns an error

	switch m := corev1.LoadBalancerIPMode(*ipMode); m {
	case corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy:
		o.IPMode = m
	default:
		fmt.Fprintf(os.Stderr, "--ip-mode: %q is neither VIP nor Proxy\n", *ipMode)
		os.Exit(2)
	}

	logger, err := startup.Logger(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o.Logger = logger
	if soft := startup.MemoryLimit(); soft > 0 {
		logger.Info("memory limit", "soft_limit_bytes", soft)
	}
	if o.Rest, err = startup.Rest(*kubeconfig, *qps, *burst); err != nil {
		logger.Error("controller not started", "err", err)
		os.Exit(1)
	}

	// Go and process metrics come with controller-runtime's registry, which
	// is served alongside this one.
	o.Registry = prometheus.NewRegistry()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := controller.Run(ctx, o); err != nil {
		o.Logger.Error("controller stopped", "err", err)
		os.Exit(1)
	}
}
