package speaker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/election"
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
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1beta1.AddToScheme(scheme); err != nil {
		return err
	}
	direct, err := client.New(cfg.Rest, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("speaker: api client: %w", err)
	}
	bind, err := bindAddr(ctx, direct, cfg)
	if err != nil {
		return err
	}
	key, err := gossipKey(ctx, direct, cfg)
	if err != nil {
		return err
	}
	// Before memberlist starts: a dataplane that cannot work (no nft
	// binary, no privilege) stops the speaker with nothing to undo.
	fwd, err := newForwarder(cfg)
	if err != nil {
		return err
	}

	inNS := map[string]cache.Config{cfg.Namespace: {}}
	mgr, err := ctrl.NewManager(cfg.Rest, ctrl.Options{
		Scheme: scheme,
		Logger: logr.FromSlogHandler(cfg.Logger.Handler()),
		// managedFields are never read here and are a large share of
		// every cached object: 10,000 Services weigh much less without.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
			&v1beta1.IPAddressPool{}:   {Namespaces: inNS},
			&v1beta1.L2Advertisement{}: {Namespaces: inNS},
			&v1beta1.ServiceL2Status{}: {Namespaces: inNS, Transform: trimL2Status},
			// Every Service and EndpointSlice of the cluster: trimmed to
			// what a sync reads (trim.go).
			&corev1.Service{}:            {Transform: trimService},
			&discoveryv1.EndpointSlice{}: {Transform: newSliceTrimmer(cfg.NodeName).trim},
			&corev1.Pod{}:                {Namespaces: inNS, Label: labels.SelectorFromSet(SpeakerLabels)},
			// BGP configuration and status, and the BGPPeer password
			// Secrets: all in the speaker's namespace.
			&v1beta1.BGPPeer{}:          {Namespaces: inNS},
			&v1beta1.BGPAdvertisement{}: {Namespaces: inNS},
			&v1beta1.Community{}:        {Namespaces: inNS},
			&v1beta1.BGPSessionState{}:  {Namespaces: inNS},
			&v1beta1.ServiceBGPStatus{}: {Namespaces: inNS},
			&corev1.Secret{}:            {Namespaces: inNS},
		}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: orNone(cfg.HealthAddr),
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
	})
	if err != nil {
		return fmt.Errorf("speaker: manager: %w", err)
	}

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
		client:       mgr.GetClient(),
		events:       mgr.GetEventRecorder("ironlb-speaker"),
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
		store:        newStore(cfg.NodeName),
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
		obj  client.Object
		feed toolscache.ResourceEventHandler
	}{
		{&corev1.Service{}, s.store.serviceHandler()}, {&discoveryv1.EndpointSlice{}, s.store.sliceHandler()},
		{&corev1.Node{}, config}, {&corev1.Pod{}, config}, {&v1beta1.IPAddressPool{}, config}, {&v1beta1.L2Advertisement{}, config},
		{&v1beta1.BGPPeer{}, nil}, {&v1beta1.BGPAdvertisement{}, nil}, {&v1beta1.Community{}, nil}, {&corev1.Secret{}, nil},
	} {
		inf, err := mgr.GetCache().GetInformer(ctx, h.obj)
		if err != nil {
			return fmt.Errorf("speaker: informer for %T: %w", h.obj, err)
		}
		if h.feed != nil {
			reg, err := inf.AddEventHandler(h.feed)
			if err != nil {
				return fmt.Errorf("speaker: store handler for %T: %w", h.obj, err)
			}
			fed = append(fed, reg)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.markDirty() },
			UpdateFunc: func(any, any) { s.markDirty() },
			DeleteFunc: func(any) { s.markDirty() },
		}); err != nil {
			return fmt.Errorf("speaker: event handler for %T: %w", h.obj, err)
		}
	}
	// Another speaker letting go of an address this node waits for
	// (holdHandovers) shows as its ServiceL2Status changing. Only then is
	// that worth a sync: the statuses change with every handover.
	inf, err := mgr.GetCache().GetInformer(ctx, &v1beta1.ServiceL2Status{})
	if err != nil {
		return fmt.Errorf("speaker: informer for ServiceL2Status: %w", err)
	}
	onStatus := func() {
		if s.holding.Load() {
			s.markDirty()
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(any, any) { onStatus() },
		DeleteFunc: func(any) { onStatus() },
	}); err != nil {
		return fmt.Errorf("speaker: event handler for ServiceL2Status: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("synced", func(*http.Request) error {
		select {
		case <-s.synced:
			return nil
		default:
			return errors.New("first sync not done")
		}
	}); err != nil {
		return err
	}
	if cfg.MetricsAddr != "" && cfg.MetricsAddr != "0" {
		if err := mgr.Add(ironmetrics.Server(cfg.MetricsAddr, cfg.Registry, cfg.Profiling, cfg.Logger)); err != nil {
			return err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		// The cache holding everything is not enough: the first sync
		// must also find every Service in the store, whose handlers run
		// after the cache has them.
		if !mgr.GetCache().WaitForCacheSync(ctx) {
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
	})); err != nil {
		return err
	}
	cfg.Logger.Info("speaker starting", "node", cfg.NodeName, "namespace", cfg.Namespace,
		"memberlist", netip.AddrPortFrom(bind, uint16(cfg.MemberlistPort)).String(), "insecure_memberlist", cfg.Insecure)
	return mgr.Start(ctx)
}

// bindAddr is the configured memberlist address, or the node's InternalIP.
func bindAddr(ctx context.Context, c client.Client, cfg Config) (netip.Addr, error) {
	if cfg.BindAddr.IsValid() {
		return cfg.BindAddr, nil
	}
	var n corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: cfg.NodeName}, &n); err != nil {
		return netip.Addr{}, fmt.Errorf("speaker: reading node %s for its address (or set --bind-addr): %w", cfg.NodeName, err)
	}
	ip, ok := internalIP(&n)
	if !ok {
		return netip.Addr{}, fmt.Errorf("speaker: node %s has no InternalIP; set --bind-addr", cfg.NodeName)
	}
	return ip, nil
}

// gossipKey reads the memberlist key from its Secret. Without one the
// speaker refuses to start, unless told to gossip in the clear.
func gossipKey(ctx context.Context, c client.Client, cfg Config) ([]byte, error) {
	if cfg.Insecure {
		cfg.Logger.Warn("memberlist gossip is not encrypted: anyone who reaches the memberlist port can join and take over addresses",
			"node", cfg.NodeName, "reason", "--insecure-memberlist")
		return nil, nil
	}
	var sec corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.SecretName}, &sec); err != nil {
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
func (s *speaker) snapshot(ctx context.Context) (snapshot, error) {
	var (
		snap  snapshot
		nodes corev1.NodeList
		pools v1beta1.IPAddressPoolList
		ads   v1beta1.L2AdvertisementList
		pods  corev1.PodList
		peers v1beta1.BGPPeerList
		bads  v1beta1.BGPAdvertisementList
		comms v1beta1.CommunityList
		secs  corev1.SecretList
	)
	ns := client.InNamespace(s.cfg.Namespace)
	for _, l := range []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{&nodes, nil}, {&pools, []client.ListOption{ns}},
		{&ads, []client.ListOption{ns}}, {&pods, []client.ListOption{ns, client.MatchingLabels(SpeakerLabels)}},
		{&peers, []client.ListOption{ns}}, {&bads, []client.ListOption{ns}}, {&comms, []client.ListOption{ns}},
		{&secs, []client.ListOption{ns}},
	} {
		// Shared with the cache, not copied: a sync only reads them.
		if err := s.client.List(ctx, l.list, append(l.opts, client.UnsafeDisableDeepCopy)...); err != nil {
			return snap, fmt.Errorf("listing %T: %w", l.list, err)
		}
	}
	snap.services, snap.electionChanged = s.store.services()
	snap.nodes = nodes.Items
	snap.pools, snap.advertisements, snap.speakers = pools.Items, ads.Items, pods.Items
	snap.bgpPeers, snap.bgpAdvertisements, snap.communities, snap.secrets = peers.Items, bads.Items, comms.Items, secs.Items
	return snap, nil
}

func orNone(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}

func ptr[T any](v T) *T { return &v }
