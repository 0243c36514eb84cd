package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/internal/dataplane/nft"
	"github.com/ironlb/ironlb/internal/election"
	"github.com/ironlb/ironlb/internal/forwarding"
)

// Dataplanes the speaker can program (Config.Dataplane).
const (
	// DataplaneNone programs nothing: kube-proxy forwards, as with MetalLB.
	DataplaneNone = "none"
	// DataplaneNFTables DNATs the addresses this node announces to its
	// own ready endpoints in nftables table inet ironlb.
	DataplaneNFTables = "nftables"
)

// fullSyncInterval is how often the table is rebuilt even when the
// per-sync check finds it intact: that check sees a deleted table or
// flushed fixed rules, not an edit inside one service's chain.
const fullSyncInterval = time.Minute

// forwarder programs forwarding for the addresses this node announces. A
// nil forwarder is the "none" dataplane.
type forwarder struct {
	syncer   *nft.Syncer
	node     string
	log      *slog.Logger
	duration *prometheus.HistogramVec
	last     prometheus.Gauge
	rules    prometheus.Gauge
	lastFull time.Time
	// applied is what the last successful sync programmed, to log changes.
	applied []forwarding.Rule
}

// newForwarder returns the forwarder for cfg.Dataplane, nil for none.
func newForwarder(cfg Config) (*forwarder, error) {
	switch cfg.Dataplane {
	case "", DataplaneNone:
		return nil, nil
	case DataplaneNFTables:
	default:
		return nil, fmt.Errorf("speaker: dataplane %q: want %s or %s", cfg.Dataplane, DataplaneNone, DataplaneNFTables)
	}
	s, err := nft.New()
	if err != nil {
		return nil, fmt.Errorf("speaker: dataplane nftables on node %s: %w", cfg.NodeName, err)
	}
	return newForwarderWith(s, cfg), nil
}

// newForwarderWith returns a forwarder over any Syncer (a fake one in
// tests) and registers its metrics.
func newForwarderWith(s *nft.Syncer, cfg Config) *forwarder {
	f := &forwarder{
		syncer: s, node: cfg.NodeName, log: cfg.Logger,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ironlb_dataplane_sync_duration_seconds",
			Help:    "Time to check and program the dataplane, by kind: full rebuilds the table, partial rewrites what changed (often nothing).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"kind"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_dataplane_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful dataplane sync.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_dataplane_rules",
			Help: "Service address, protocol and port triples this node forwards to its own endpoints.",
		}),
	}
	cfg.Registry.MustRegister(f.duration, f.last, f.rules)
	return f
}

// forward programs the dataplane for this node's share of the election.
// Failures are logged and retried shortly; they never stop announcing.
func (s *speaker) forward(ctx context.Context, snap snapshot, mine map[netip.Addr]election.Announcement) {
	if s.dataplane == nil {
		return
	}
	if err := s.dataplane.apply(ctx, snap, mine); err != nil {
		s.log.Warn("dataplane sync failed", "node", s.cfg.NodeName, "err", err)
		time.AfterFunc(time.Second, s.markDirty)
	}
}

// apply forwards the addresses this node announces, and only those: the
// layer-2 owner is where the traffic arrives. Another node's table would
// only matter to traffic that still reaches it by a stale ARP entry.
func (f *forwarder) apply(ctx context.Context, snap snapshot, mine map[netip.Addr]election.Announcement) error {
	rules := forwarding.Desired(f.node, snap.services, snap.slices)
	rules = slices.DeleteFunc(rules, func(r forwarding.Rule) bool {
		_, ok := mine[r.VIP]
		return !ok
	})
	start := time.Now()
	res, err := f.syncer.Sync(ctx, rules, start.Sub(f.lastFull) >= fullSyncInterval)
	took := time.Since(start)
	f.duration.WithLabelValues(string(res.Kind)).Observe(took.Seconds())
	if err != nil {
		return fmt.Errorf("programming %d forwarding rules: %w", len(rules), err)
	}
	if res.Kind == nft.Full {
		f.lastFull = start
	}
	f.last.Set(float64(time.Now().UnixNano()) / 1e9)
	f.rules.Set(float64(len(rules)))
	f.logChanges(rules, res, took)
	f.applied = rules
	return nil
}

// logChanges logs each rule that appeared, changed or went, and repairs.
func (f *forwarder) logChanges(rules []forwarding.Rule, res nft.Result, took time.Duration) {
	if res.Kind == nft.Full && res.Reason != "first" && res.Reason != "requested" {
		f.log.Warn("dataplane repaired", "node", f.node, "reason", res.Reason, "took", took.String())
	}
	old := map[forwarding.Key]forwarding.Rule{}
	for _, r := range f.applied {
		old[r.Key] = r
	}
	for _, r := range rules {
		o, had := old[r.Key]
		delete(old, r.Key)
		if had && slices.Equal(o.Endpoints, r.Endpoints) {
			continue
		}
		f.log.Info("forwarding set", "service", r.Service, "ip", r.VIP.String(), "port", fmt.Sprintf("%s/%d", r.Protocol, r.Port),
			"node", f.node, "endpoints", fmt.Sprint(r.Endpoints))
	}
	for _, r := range old {
		f.log.Info("forwarding removed", "service", r.Service, "ip", r.VIP.String(), "port", fmt.Sprintf("%s/%d", r.Protocol, r.Port), "node", f.node)
	}
	f.log.Debug("dataplane synced", "node", f.node, "kind", string(res.Kind), "operations", res.Operations, "took", took.String())
}
