package speaker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/internal/dataplane/ipvs"
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
	// DataplaneIPVS makes one IPVS virtual service (NAT) per address,
	// protocol and port this node announces, with its own ready endpoints
	// as real servers, and binds the addresses to dummy ironlb-ipvs0.
	DataplaneIPVS = "ipvs"
)

// DefaultIPVSScheduler is the IPVS scheduler when Config names none.
const DefaultIPVSScheduler = "rr"

// fullSyncInterval is how often the dataplane is rebuilt or read back
// even when the per-sync check finds it intact: that check sees a deleted
// table, flushed fixed rules or a missing IPVS service, not an edit inside
// one service.
const fullSyncInterval = time.Minute

// syncer is what forwarder needs of a backend: make the kernel forward
// exactly rules, reading or rebuilding everything when full. changed,
// when not nil, lists every key whose rule may differ from the previous
// call's (nil: unknown), so that a backend can look at those alone.
type syncer interface {
	sync(ctx context.Context, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key, full bool) (syncResult, error)
}

// syncResult is a backend's account of one sync.
type syncResult struct {
	// full: the backend rebuilt (nftables) or read back (IPVS) everything.
	full bool
	// reason is why a sync was full: "first", "requested", or a repair.
	reason     string
	operations int
}

// nftSyncer adapts the nftables backend, which takes the changed keys.
type nftSyncer struct{ *nft.Syncer }

func (s nftSyncer) sync(ctx context.Context, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key, full bool) (syncResult, error) {
	r, err := s.Sync(ctx, rules, changed, full)
	return syncResult{full: r.Kind == nft.Full, reason: r.Reason, operations: r.Operations}, err
}

// ipvsSyncer adapts the IPVS backend, which takes every rule, in no
// order (it sorts what it needs to), and diffs them itself.
type ipvsSyncer struct{ *ipvs.Syncer }

func (s ipvsSyncer) sync(ctx context.Context, rules map[forwarding.Key]forwarding.Rule, _ []forwarding.Key, full bool) (syncResult, error) {
	r, err := s.Sync(ctx, slices.Collect(maps.Values(rules)), full)
	return syncResult{full: r.Kind == ipvs.Full, reason: r.Reason, operations: r.Operations}, err
}

func (r syncResult) kind() string {
	if r.full {
		return "full"
	}
	return "partial"
}

// forwarder programs forwarding for the addresses this node announces. A
// nil forwarder is the "none" dataplane.
type forwarder struct {
	syncer   syncer
	node     string
	log      *slog.Logger
	duration *prometheus.HistogramVec
	last     prometheus.Gauge
	rules    prometheus.Gauge
	lastFull time.Time
	// unlogged are the rule changes computed since the last successful
	// sync, logged once one programs them.
	unlogged []ruleChange
	// desiredRules are the rules last computed, from the Services in from
	// (see desired); contested says two Services claim one key.
	desiredRules map[forwarding.Key]forwarding.Rule
	from         map[string]*service
	contested    bool
	// failed says the last sync failed: what changed since the one
	// before is then unknown to the backend.
	failed bool
}

// ruleChange is a rule that appeared (no old), changed, or went (no new).
type ruleChange struct {
	old, new forwarding.Rule
	had, has bool
}

// newForwarder returns the forwarder for cfg.Dataplane, nil for none.
func newForwarder(cfg Config) (*forwarder, error) {
	switch cfg.Dataplane {
	case "", DataplaneNone:
		return nil, nil
	case DataplaneNFTables:
		s, err := nft.New()
		if err != nil {
			return nil, fmt.Errorf("speaker: dataplane nftables on node %s: %w", cfg.NodeName, err)
		}
		return newForwarderWith(nftSyncer{s}, cfg), nil
	case DataplaneIPVS:
		sched := cmp.Or(cfg.IPVSScheduler, DefaultIPVSScheduler)
		s, err := ipvs.New(sched)
		if err != nil {
			return nil, fmt.Errorf("speaker: dataplane ipvs (scheduler %s) on node %s: %w", sched, cfg.NodeName, err)
		}
		return newForwarderWith(ipvsSyncer{s}, cfg), nil
	}
	return nil, fmt.Errorf("speaker: dataplane %q: want %s, %s or %s", cfg.Dataplane, DataplaneNone, DataplaneNFTables, DataplaneIPVS)
}

// newForwarderWith returns a forwarder over any backend (a fake one in
// tests) and registers its metrics.
func newForwarderWith(s syncer, cfg Config) *forwarder {
	f := &forwarder{
		syncer: s, node: cfg.NodeName, log: cfg.Logger,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ironlb_dataplane_sync_duration_seconds",
			Help:    "Time to check and program the dataplane, by kind: full rebuilds the nftables table or reads all IPVS services back, partial changes what changed since the last sync (often nothing).",
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

// forward programs the dataplane for this node's share of the election
// and the Services it advertises over BGP. Failures are logged and retried
// shortly; they never stop announcing.
//
// mineSame says mine is what the last call had; the forwarder then
// derives the rules again only for the Services that changed.
func (s *speaker) forward(ctx context.Context, services map[string]*service, mine map[netip.Addr]election.Announcement, advertised map[string]bool, mineSame bool) {
	if s.dataplane == nil {
		return
	}
	if err := s.dataplane.apply(ctx, services, mine, advertised, mineSame); err != nil {
		s.log.Warn("dataplane sync failed", "node", s.cfg.NodeName, "err", err)
		time.AfterFunc(time.Second, s.markDirty)
	}
}

// apply forwards the addresses this node answers for in layer 2 (mine) and
// those of the Services it advertises over BGP (advertised, by key), and
// only those: that is where traffic arrives. Another node's table would
// only matter to traffic that still reaches it by a stale ARP entry.
func (f *forwarder) apply(ctx context.Context, services map[string]*service, mine map[netip.Addr]election.Announcement, advertised map[string]bool, mineSame bool) error {
	rules, changed := f.desired(services, mine, advertised, mineSame)
	if f.failed {
		// The keys the failed sync was told about are not in changed.
		changed = nil
	}
	start := time.Now()
	res, err := f.syncer.sync(ctx, rules, changed, start.Sub(f.lastFull) >= fullSyncInterval)
	took := time.Since(start)
	f.duration.WithLabelValues(res.kind()).Observe(took.Seconds())
	f.failed = err != nil
	if err != nil {
		return fmt.Errorf("programming %d forwarding rules: %w", len(rules), err)
	}
	if res.full {
		f.lastFull = start
	}
	f.last.Set(float64(time.Now().UnixNano()) / 1e9)
	f.rules.Set(float64(len(rules)))
	f.logChanges(res, took)
	return nil
}

// desired returns the rules to forward and, when it could bring the last
// ones up to date in place, the keys that changed (empty, not nil, when
// none did); nil when it computed them all again. The map is f's and
// later calls change it in place: the backends keep none of it. In place
// is for the common change: mine as it was, no BGP, and no key that two
// Services claim; then only the Services whose derived state is new (a
// new *service: the store keeps the old one when nothing changed) are
// looked at.
func (f *forwarder) desired(services map[string]*service, mine map[netip.Addr]election.Announcement, advertised map[string]bool, mineSame bool) (map[forwarding.Key]forwarding.Rule, []forwarding.Key) {
	if mineSame && len(advertised) == 0 && f.desiredRules != nil && !f.contested {
		if changed, ok := f.update(services, mine); ok {
			return f.desiredRules, changed
		}
	}
	old := f.desiredRules
	f.desiredRules, f.contested = forwardedRules(services, mine, advertised)
	f.from = maps.Clone(services)
	for k, r := range f.desiredRules {
		o, had := old[k]
		f.noteChange(o, r, had, true)
	}
	for k, o := range old {
		if _, has := f.desiredRules[k]; !has {
			f.noteChange(o, forwarding.Rule{}, true, false)
		}
	}
	return f.desiredRules, nil
}

// noteChange keeps a rule's change for logChanges, if it is one. While
// syncs keep failing the list is folded to one change per key, so that it
// never outgrows the rules.
func (f *forwarder) noteChange(old, new forwarding.Rule, had, has bool) {
	c := ruleChange{old: old, new: new, had: had, has: has}
	if c.none() {
		return
	}
	f.unlogged = append(f.unlogged, c)
	if len(f.unlogged) > 2*len(f.desiredRules)+64 {
		f.unlogged = foldChanges(f.unlogged)
	}
}

func (c ruleChange) key() forwarding.Key {
	if c.has {
		return c.new.Key
	}
	return c.old.Key
}

// none says c changes nothing.
func (c ruleChange) none() bool {
	return c.had == c.has && (!c.has || c.old.Service == c.new.Service && slices.Equal(c.old.Endpoints, c.new.Endpoints))
}

// foldChanges makes one change per key of a list of them: from the first
// old rule to the last new one.
func foldChanges(cs []ruleChange) []ruleChange {
	at := map[forwarding.Key]int{}
	out := make([]ruleChange, 0, len(cs))
	for _, c := range cs {
		if i, ok := at[c.key()]; ok {
			out[i].new, out[i].has = c.new, c.has
			continue
		}
		at[c.key()] = len(out)
		out = append(out, c)
	}
	return slices.DeleteFunc(out, ruleChange.none)
}

// update changes f.desiredRules for the Services that changed since f.from;
// false when a Service now claims a key another one holds (Merge decides
// those, over all Services).
func (f *forwarder) update(services map[string]*service, mine map[netip.Addr]election.Announcement) ([]forwarding.Key, bool) {
	var keys []string
	present := 0
	for k, sv := range services {
		old, had := f.from[k]
		if had {
			present++
		}
		if old != sv {
			keys = append(keys, k)
		}
	}
	if present < len(f.from) {
		for k := range f.from {
			if _, ok := services[k]; !ok {
				keys = append(keys, k)
			}
		}
	}
	// Empty, not nil, when nothing changed: nil would say unknown, and
	// cost the backend a pass over every rule.
	changed := []forwarding.Key{}
	// before are the rules of the changed keys as they were, to log.
	before := map[forwarding.Key]forwarding.Rule{}
	for _, k := range keys {
		for _, r := range ownRules(f.from[k], mine, nil) {
			if cur, ok := f.desiredRules[r.Key]; ok && cur.Service == k {
				delete(f.desiredRules, r.Key)
				before[r.Key] = cur
				changed = append(changed, r.Key)
			}
		}
		for _, r := range ownRules(services[k], mine, nil) {
			if cur, ok := f.desiredRules[r.Key]; ok && cur.Service != k {
				// Undo: the caller computes everything again, and logs
				// what differs from the rules as they were.
				for _, k := range changed {
					if o, ok := before[k]; ok {
						f.desiredRules[k] = o
					} else {
						delete(f.desiredRules, k)
					}
				}
				return nil, false
			}
			f.desiredRules[r.Key] = r
			changed = append(changed, r.Key)
		}
		if sv, ok := services[k]; ok {
			f.from[k] = sv
		} else {
			delete(f.from, k)
		}
	}
	noted := make(map[forwarding.Key]bool, len(changed))
	for _, k := range changed {
		if !noted[k] {
			noted[k] = true
			o, had := before[k]
			r, has := f.desiredRules[k]
			f.noteChange(o, r, had, has)
		}
	}
	return changed, true
}

// forwardedRules are the rules of the addresses in mine and of the
// Services in advertised, one per key, and whether two Services claim one
// key.
func forwardedRules(services map[string]*service, mine map[netip.Addr]election.Announcement, advertised map[string]bool) (map[forwarding.Key]forwarding.Rule, bool) {
	perService := make([][]forwarding.Rule, 0, len(services))
	n := 0
	for _, sv := range services {
		if rs := ownRules(sv, mine, advertised); len(rs) > 0 {
			perService = append(perService, rs)
			n += len(rs)
		}
	}
	m := forwarding.Merge(perService...)
	// A Service's own keys are distinct: fewer keys than rules means two
	// Services claim one.
	return m, len(m) < n
}

// ownRules are the rules of sv this node forwards: all of them when sv is
// advertised over BGP, else those of the addresses in mine. Shared with
// sv when they are all of them.
func ownRules(sv *service, mine map[netip.Addr]election.Announcement, advertised map[string]bool) []forwarding.Rule {
	if sv == nil {
		return nil
	}
	rs := sv.rules
	lost := func(r forwarding.Rule) bool { _, ok := mine[r.VIP]; return !ok }
	if !advertised[sv.Key] && slices.ContainsFunc(rs, lost) {
		rs = slices.DeleteFunc(slices.Clone(rs), lost)
	}
	return rs
}

// logChanges logs each rule that appeared, changed or went since the last
// successful sync, and repairs.
func (f *forwarder) logChanges(res syncResult, took time.Duration) {
	if res.full && res.reason != "first" && res.reason != "requested" {
		f.log.Warn("dataplane repaired", "node", f.node, "reason", res.reason, "took", took.String())
	}
	for _, c := range f.unlogged {
		if c.has {
			r := c.new
			f.log.Info("forwarding set", "service", r.Service, "ip", r.VIP.String(), "port", fmt.Sprintf("%s/%d", r.Protocol, r.Port),
				"node", f.node, "endpoints", fmt.Sprint(r.Endpoints))
		} else {
			o := c.old
			f.log.Info("forwarding removed", "service", o.Service, "ip", o.VIP.String(), "port", fmt.Sprintf("%s/%d", o.Protocol, o.Port), "node", f.node)
		}
	}
	f.unlogged = nil
	f.log.Debug("dataplane synced", "node", f.node, "kind", res.kind(), "operations", res.operations, "took", took.String())
}
