// Command controller assigns addresses from IPAddressPools to LoadBalancer
// Services. See the README for its flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ironlb/ironlb/internal/controller"
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
	_ = flag.Parse(os.Args[1:]) // ExitOnError: never returns an error

	switch m := corev1.LoadBalancerIPMode(*ipMode); m {
	case corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy:
		o.IPMode = m
	default:
		fmt.Fprintf(os.Stderr, "--ip-mode: %q is neither VIP nor Proxy\n", *ipMode)
		os.Exit(2)
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "--log-level: %v\n", err)
		os.Exit(2)
	}
	o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	ctrllog.SetLogger(logr.FromSlogHandler(o.Logger.Handler()))

	rest, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		o.Logger.Error("loading kubeconfig", "kubeconfig", *kubeconfig, "err", err)
		os.Exit(1)
	}
	rest.QPS, rest.Burst = float32(*qps), *burst
	o.Rest = rest

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
