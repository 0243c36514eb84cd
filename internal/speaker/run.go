package speaker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
	"github.com/ironlb/ironlb/internal/kube"
	"github.com/ironlb/ironlb/internal/layer2"
	"github.com/ironlb/ironlb/internal/members"
	ironmetrics "github.com/ironlb/ironlb/internal/metrics"
)

// Config configures one speaker.
type Config struct {
	// NodeName is this node's Kubernetes name.
	NodeName string
	// Namespace holds the L2Advertisements, pools, the memberlist Secret,
	// the speaker Pods and the ServiceL2Status objects.
	Namespace string
	// BindAddr is the memberlist address; zero means the node's InternalIP.
	BindAddr netip.Addr
	// MemberlistPort is the memberlist port on every node.
	MemberlistPort int
	// SecretName names the Secret whose "secretkey" encrypts gossip.
	SecretName string
	// Insecure gossips without a key.
	Insecure bool
	// Timing tunes failure detection; zero is members' default.
	Timing members.Timing
	// Debounce coalesces bursts of changes into one election.
	Debounce time.Duration
	// Dataplane is DataplaneNone ("" too), DataplaneNFTables or
	// DataplaneIPVS: whether and how this speaker forwards the addresses
	// it announces to local endpoints.
	Dataplane string
	// IPVSScheduler is the IPVS scheduler for DataplaneIPVS (rr, wrr, lc
	// or mh); "" is DefaultIPVSScheduler.
	IPVSScheduler string
	// Rest reaches the API server.
	Rest *rest.Config
	// MetricsAddr and HealthAddr are listen addresses; "" or "0" disables.
	MetricsAddr, HealthAddr string
	// Profiling serves /debug/pprof/ on MetricsAddr.
	Profiling bool
	Registry  *prometheus.Registry
	Logger    *slog.Logger
}

// SecretKey is the key in the memberlist Secret that holds the gossip key.
const SecretKey = "secretkey"

// Run runs the speaker until ctx ends, then leaves the cluster and stops
// answering before it returns.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" {
		return errors.New("speaker: no node name: set --node-name or NODE_NAME")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MemberlistPort == 0 {
		cfg.MemberlistPort = members.DefaultPort
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 10 * time.Millisecond
	}
	kc, err := kube.New(cfg.Rest, corev1.AddToScheme, discoveryv1.AddToScheme, v1beta1.AddToScheme)
	if err != nil {
		return fmt.Errorf("speaker: api client: %w", err)
	}
	a := newAPI(kc, cfg.NodeName, cfg.Namespace)
	bind, err := bindAddr(ctx, a.nodeClient, cfg)
	if err != nil {
		return err
	}
	key, err := gossipKey(ctx, a.secretClient, cfg)
	if err != nil {
		return err
	}
	// Before memberlist starts: a dataplane that cannot work (no nft
	// binary, no privilege) stops the speaker with nothing to undo, and
	// so does a port already taken.
	fwd, err := newForwarder(cfg)
	if err != nil {
		return err
	}
	var metricsLn, healthLn net.Listener
	if on(cfg.MetricsAddr) {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("speaker: metrics listener on %s: %w", cfg.MetricsAddr, err)
		}
		defer metricsLn.Close()
	}
	if on(cfg.HealthAddr) {
		if healthLn, err = net.Listen("tcp", cfg.HealthAddr); err != nil {
			return fmt.Errorf("speaker: health listener on %s: %w", cfg.HealthAddr, err)
		}
		defer healthLn.Close()
	}
	events, stopEvents := kc.Recorder("ironlb-speaker", cfg.NodeName, cfg.Logger)
	defer stopEvents()

	// Not ctx: members would shut down the moment the signal arrives,
	// racing the Leave that shutdown sends first. The run loop owns it.
	m, err := members.Start(context.WithoutCancel(ctx), members.Config{
		NodeName: cfg.NodeName, BindAddr: bind, Port: cfg.MemberlistPort,
		Key: key, Insecure: cfg.Insecure, Timing: cfg.Timing, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("speaker: memberlist on %s:%d: %w", bind, cfg.MemberlistPort, err)
	}
	met := newMetrics(cfg.Registry)
	ann := layer2.New(cfg.Logger)
	ann.OnAnswer(func(ifname string, _ netip.Addr) { met.answers.WithLabelValues(ifname).Inc() })
	s := &speaker{
		cfg:          cfg,
		api:          a,
		events:       events,
		log:          cfg.Logger,
		members:      m,
		announcer:    ann,
		metrics:      met,
		dirty:        make(chan struct{}, 1),
		announced:    map[netip.Addr]election.Announcement{},
		problems:     map[string]bool{},
		announceErrs: map[string]bool{},
		synced:       make(chan struct{}),
		dataplane:    fwd,
		store:        newStore(),
		l2Writes:     newLatest(),
		bgpWrites:    newLatest(),
	}

	// Every change to anything the election reads asks for a sync.
	// Services and EndpointSlices also go to the store, which derives
	// again only what changed.
	// The other objects the election reads count their changes there.
	config := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.store.configChanged() },
		UpdateFunc: func(any, any) { s.store.configChanged() },
		DeleteFunc: func(any) { s.store.configChanged() },
	}
	var fed []toolscache.ResourceEventHandlerRegistration
	for _, h := range []struct {
		inf  toolscache.SharedIndexInformer
		feed toolscache.ResourceEventHandler
	}{
		{a.services, s.store.serviceHandler()}, {a.slices, s.store.sliceHandler()},
		{a.nodes, config}, {a.speakers, config}, {a.pools, config}, {a.l2Ads, config},
		{a.peers, nil}, {a.bgpAds, nil}, {a.communities, nil}, {a.secrets, nil},
	} {
		if h.feed != nil {
			reg, err := h.inf.AddEventHandler(h.feed)
			if err != nil {
				return fmt.Errorf("speaker: store handler: %w", err)
			}
			fed = append(fed, reg)
		}
		if _, err := h.inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.markDirty() },
			UpdateFunc: func(any, any) { s.markDirty() },
			DeleteFunc: func(any) { s.markDirty() },
		}); err != nil {
			return fmt.Errorf("speaker: event handler: %w", err)
		}
	}
	// Another speaker letting go of an address this node waits for
	// (holdHandovers) shows as its ServiceL2Status changing. Only then is
	// that worth a sync: the statuses change with every handover.
	onStatus := func() {
		if s.holding.Load() {
			s.markDirty()
		}
	}
	if _, err := a.l2Statuses.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(any, any) { onStatus() },
		DeleteFunc: func(any) { onStatus() },
	}); err != nil {
		return fmt.Errorf("speaker: event handler for ServiceL2Status: %w", err)
	}

	cfg.Logger.Info("speaker starting", "node", cfg.NodeName, "namespace", cfg.Namespace,
		"memberlist", netip.AddrPortFrom(bind, uint16(cfg.MemberlistPort)).String(), "insecure_memberlist", cfg.Insecure)
	serving, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	if metricsLn != nil {
		h := ironmetrics.Handler(prometheus.Gatherers{cfg.Registry, processRegistry()}, cfg.Profiling)
		go s.serve(serving, "metrics", metricsLn, h)
		cfg.Logger.Info("serving metrics", "addr", metricsLn.Addr().String(), "profiling", cfg.Profiling)
	}
	if healthLn != nil {
		go s.serve(serving, "health", healthLn, s.healthHandler())
	}
	// The informers outlive ctx until Run returns, so that shutdown reads
	// a cache that still follows the API server; a signal while they list
	// still ends the wait. The cache holding everything is not enough:
	// the first sync must also find every Service in the store, whose
	// handlers run after the cache has them.
	informers, stopInformers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInformers()
	if !a.start(informers, ctx) {
		return s.shutdown()
	}
	for _, reg := range fed {
		for !reg.HasSynced() {
			select {
			case <-ctx.Done():
				return s.shutdown()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	s.markDirty()
	return s.run(ctx)
}

// serve serves h on ln until ctx ends; a failure is logged, as the
// speaker's work goes on without it.
func (s *speaker) serve(ctx context.Context, what string, ln net.Listener, h http.Handler) {
	if err := ironmetrics.Serve(ctx, ln, h); err != nil {
		s.log.Error("server stopped", "node", s.cfg.NodeName, "server", what, "addr", ln.Addr().String(), "err", err)
	}
}

// healthHandler serves /healthz (the process answers) and /readyz (the
// first sync is done).
func (s *speaker) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.synced:
			_, _ = w.Write([]byte("ok"))
		default:
			http.Error(w, "first sync not done", http.StatusServiceUnavailable)
		}
	})
	return mux
}

// processRegistry holds the Go runtime's and the process's own metrics.
func processRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// bindAddr is the configured memberlist address, or the node's InternalIP.
func bindAddr(ctx context.Context, nodes kube.Resource[*corev1.Node, *corev1.NodeList], cfg Config) (netip.Addr, error) {
	if cfg.BindAddr.IsValid() {
		return cfg.BindAddr, nil
	}
	n, err := nodes.Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("speaker: reading node %s for its address (or set --bind-addr): %w", cfg.NodeName, err)
	}
	ip, ok := internalIP(n)
	if !ok {
		return netip.Addr{}, fmt.Errorf("speaker: node %s has no InternalIP; set --bind-addr", cfg.NodeName)
	}
	return ip, nil
}

// gossipKey reads the memberlist key from its Secret. Without one the
// speaker refuses to start, unless told to gossip in the clear.
func gossipKey(ctx context.Context, secrets kube.Resource[*corev1.Secret, *corev1.SecretList], cfg Config) ([]byte, error) {
	if cfg.Insecure {
		cfg.Logger.Warn("memberlist gossip is not encrypted: anyone who reaches the memberlist port can join and take over addresses",
			"node", cfg.NodeName, "reason", "--insecure-memberlist")
		return nil, nil
	}
	sec, err := secrets.Get(ctx, cfg.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("speaker: reading memberlist key from secret %s/%s (create it with "+
			"`kubectl -n %s create secret generic %s --from-literal=%s=$(openssl rand -base64 32)`, or run with --insecure-memberlist): %w",
			cfg.Namespace, cfg.SecretName, cfg.Namespace, cfg.SecretName, SecretKey, err)
	}
	raw, ok := sec.Data[SecretKey]
	if !ok || len(raw) == 0 {
		return nil, fmt.Errorf("speaker: secret %s/%s has no %q key", cfg.Namespace, cfg.SecretName, SecretKey)
	}
	return memberlistKey(raw), nil
}

// memberlistKey turns the Secret's value into an AES-256 key. Any length
// of secret works: it is hashed, so a base64 string from openssl is fine.
func memberlistKey(raw []byte) []byte {
	sum := sha256.Sum256(bytes.TrimSpace(raw))
	return sum[:]
}

// snapshot reads everything the election needs from the cache, and the
// Services from the store. The objects are the cache's own: never change
// them.
func (s *speaker) snapshot() snapshot {
	a := s.api
	var snap snapshot
	snap.services, snap.electionChanged = s.store.services()
	snap.nodes = kube.Items[corev1.Node](a.nodes)
	snap.speakers = kube.Items[corev1.Pod](a.speakers)
	snap.pools = kube.Items[v1beta1.IPAddressPool](a.pools)
	snap.advertisements = kube.Items[v1beta1.L2Advertisement](a.l2Ads)
	snap.bgpPeers = kube.Items[v1beta1.BGPPeer](a.peers)
	snap.bgpAdvertisements = kube.Items[v1beta1.BGPAdvertisement](a.bgpAds)
	snap.communities = kube.Items[v1beta1.Community](a.communities)
	snap.secrets = kube.Items[corev1.Secret](a.secrets)
	return snap
}

func ptr[T any](v T) *T { return &v }

// on says whether a listen address is set: "" and "0" disable.
func on(addr string) bool { return addr != "" && addr != "0" }
