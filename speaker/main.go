// Command speaker runs on every node: it elects with the other speakers
// which node announces each service IP and answers ARP and NDP for the IPs
// this node won. See the README for its flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/internal/members"
	"github.com/ironlb/ironlb/internal/speaker"
	"github.com/ironlb/ironlb/internal/startup"
)

func main() {
	// Our own flag set: controller-runtime registers --kubeconfig on the
	// global one.
	flag := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	var (
		cfg        speaker.Config
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty means in-cluster")
		bind       = flag.String("bind-addr", "", "memberlist address (default: the node's InternalIP)")
		qps        = flag.Float64("kube-api-qps", 100, "queries per second to the API server")
		burst      = flag.Int("kube-api-burst", 200, "burst of queries to the API server")
		level      = flag.String("log-level", "info", "debug, info, warn or error")
		def        = members.DefaultTiming()
	)
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&cfg.Namespace, "namespace", "ironlb-system", "namespace of the advertisements, pools, memberlist Secret and speaker Pods")
	flag.IntVar(&cfg.MemberlistPort, "memberlist-port", members.DefaultPort, "memberlist UDP and TCP port")
	flag.StringVar(&cfg.SecretName, "memberlist-secret", "memberlist", "Secret whose \""+speaker.SecretKey+"\" key encrypts gossip")
	flag.BoolVar(&cfg.Insecure, "insecure-memberlist", false, "gossip without encryption when there is no Secret (not for production)")
	flag.DurationVar(&cfg.Timing.ProbeInterval, "memberlist-probe-interval", def.ProbeInterval, "how often each speaker probes another")
	flag.DurationVar(&cfg.Timing.ProbeTimeout, "memberlist-probe-timeout", def.ProbeTimeout, "how long a probe waits for its ack")
	flag.IntVar(&cfg.Timing.SuspicionMult, "memberlist-suspicion-mult", def.SuspicionMult, "suspicion timeout in probe intervals (scaled by log10 of the cluster size)")
	flag.StringVar(&cfg.Dataplane, "dataplane", speaker.DataplaneNone, "none: kube-proxy forwards; nftables: DNAT the addresses this node announces to its own ready endpoints, keeping the client's IP (table inet ironlb); ipvs: the same with one IPVS NAT virtual service per address, protocol and port, the addresses bound to dummy interface ironlb-ipvs0 (sets arp_ignore=1, arp_announce=2)")
	flag.StringVar(&cfg.IPVSScheduler, "ipvs-scheduler", speaker.DefaultIPVSScheduler, "IPVS scheduler with --dataplane=ipvs: rr (round robin), wrr (weighted round robin), lc (least connections) or mh (Maglev hashing)")
	flag.DurationVar(&cfg.Debounce, "debounce", 0, "coalesce changes for this long before an election (default 10ms)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", ":7473", "address of the Prometheus /metrics endpoint; 0 disables")
	flag.StringVar(&cfg.HealthAddr, "health-addr", ":8082", "address of /healthz and /readyz; 0 disables")
	flag.BoolVar(&cfg.Profiling, "profiling", false, "also serve Go's CPU, heap and goroutine profiles under /debug/pprof/ on the metrics address")
	_ = flag.Parse(os.Args[1:]) // ExitOnError: never returns an error

	logger, err := startup.Logger(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg.Logger = logger
	if cfg.Profiling {
		// Heap profiles fine enough to tell apart structures of a few
		// hundred kilobytes (the default samples every 512 KiB).
		runtime.MemProfileRate = 16 << 10
	}
	// Most of a speaker's heap is its cache of Services and the state
	// derived from it, which lives as long as they do; what each sync
	// allocates is small. Go's default lets the heap double before a
	// collection, and on every node. At 40% growth a speaker with 10,000
	// Services holds tens of megabytes less for a few more collections a
	// minute (README, make bench-dataplane). Calico's Felix, also a
	// dataplane agent on every node, defaults to 40 for the same reason.
	gc := startup.GCPercent(40)
	soft := startup.MemoryLimit()
	logger.Info("go runtime", "node", cfg.NodeName, "gc_percent", gc, "soft_limit_bytes", soft)
	if *bind != "" {
		ip, err := netip.ParseAddr(*bind)
		if err != nil {
			cfg.Logger.Error("bad --bind-addr", "err", err)
			os.Exit(2)
		}
		cfg.BindAddr = ip
	}
	if cfg.Rest, err = startup.Rest(*kubeconfig, *qps, *burst); err != nil {
		logger.Error("speaker not started", "err", err)
		os.Exit(1)
	}
	cfg.Registry = prometheus.NewRegistry()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := speaker.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("speaker stopped", "node", cfg.NodeName, "err", err)
		os.Exit(1)
	}
}
