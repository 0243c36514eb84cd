package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ironlb/ironlb/internal/election"
	"github.com/ironlb/ironlb/internal/kube"
	"github.com/ironlb/ironlb/internal/layer2"
	"github.com/ironlb/ironlb/internal/members"
	"github.com/ironlb/ironlb/internal/routes"
)

// Event reasons on Services, stable CamelCase.
const (
	ReasonNodeAssigned   = "nodeAssigned"
	ReasonNotAnnounced   = "NotAnnounced"
	ReasonAnnounceFailed = "AnnounceFailed"
)

// resyncInterval bounds how long a healed partition or a failed write
// waits for the next sync when nothing else changes.
const resyncInterval = 5 * time.Second

// speaker is one node's running speaker: the sync loop's state.
type speaker struct {
	cfg       Config
	api       *api
	events    *kube.Recorder
	log       *slog.Logger
	members   *members.Members
	announcer *layer2.Announcer
	metrics   *metrics
	dirty     chan struct{}

	// What the last sync applied, to log and record only changes.
	announced    map[netip.Addr]election.Announcement
	problems     map[string]bool
	announceErrs map[string]bool
	quorumLost   bool
	// held are addresses won but not yet answered, since when: their
	// previous owner still lists them (holdHandovers). holding says
	// whether there are any, for the status watch.
	held     map[netip.Addr]time.Time
	holding  atomic.Bool
	peers    string
	lastJoin time.Time
	joining  atomic.Bool // a Join runs in the background
	synced   chan struct{}
	// store holds the Services, derived again only when they change.
	store *store
	// dataplane forwards what this node announces; nil for none.
	dataplane *forwarder
	// bgp holds the BGP sessions; made by the first sync (see bgp.go).
	bgp *bgpState
	// l2Writes and bgpWrites write the per-Service status objects (see
	// latest); the run loop runs them.
	l2Writes, bgpWrites *latest
	// lastElection is what the last election saw and returned.
	lastElection lastElection
	// writtenAlive is the live set the last status write was handed;
	// writeFailed says it failed, so the next sync writes again.
	writtenAlive []string
	writeFailed  atomic.Bool
}

// markDirty asks for a sync without blocking.
func (s *speaker) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// run syncs after every change, coalescing bursts, until ctx ends; then it
// leaves the cluster and stops answering, in that order, so that another
// node takes over before this one falls silent.
func (s *speaker) run(ctx context.Context) error {
	for name, w := range map[string]*latest{"servicel2status": s.l2Writes, "servicebgpstatus": s.bgpWrites} {
		go w.run(ctx, func(err error) {
			s.log.Warn("writing status failed", "node", s.cfg.NodeName, "kind", name, "err", err)
			s.writeFailed.Store(true)
			time.AfterFunc(time.Second, s.markDirty)
		})
	}
	first := true
	// A periodic sync retries failed writes and, above all, rejoins
	// speakers memberlist declared dead: once a partition heals, nothing
	// else would bring them back.
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	var lastEnd time.Time
	var lastTook time.Duration
	for {
		membership, full := false, first
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.dirty:
		case <-s.members.Changed():
			membership = true
		case <-resync.C:
			full = true
		}
		// Coalesce a burst of changes (a Service and its EndpointSlice, a
		// node and its memberlist event) into one election. While objects
		// keep changing (10,000 Services being created), also leave as
		// long between syncs as the last one took: a sync costs time in
		// proportion to the Services, and one per change would spend all
		// the CPU on recomputing. A speaker that came or went is never
		// held back: that is a failover.
		wait := s.cfg.Debounce
		if d := time.Until(lastEnd.Add(lastTook)); !membership && d > wait {
			wait = d
		}
		t := time.NewTimer(wait)
	drain:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return s.shutdown()
			case <-s.dirty:
			case <-s.members.Changed():
				if !membership {
					membership = true
					t.Reset(s.cfg.Debounce)
				}
			case <-t.C:
				break drain
			}
		}
		start := time.Now()
		err := s.sync(ctx, full)
		lastEnd, lastTook = time.Now(), time.Since(start)
		s.metrics.syncDuration.Observe(lastTook.Seconds())
		if err != nil {
			s.log.Warn("sync failed", "node", s.cfg.NodeName, "err", err)
			// Retry soon; a later change retries sooner.
			time.AfterFunc(time.Second, s.markDirty)
		}
		if first {
			first = false
			close(s.synced)
		}
	}
}

func (s *speaker) shutdown() error {
	start := time.Now()
	// BGP needs no handover (the routers hold the other nodes' paths):
	// withdraw at once, alongside the layer-2 leave.
	bgpClosed := make(chan error, 1)
	go func() { bgpClosed <- s.closeBGP() }()
	var errs []error
	if err := s.members.Leave(time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := s.announcer.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := <-bgpClosed; err != nil {
		errs = append(errs, err)
	}
	if err := s.members.Close(); err != nil {
		errs = append(errs, err)
	}
	for ip := range s.announced {
		s.metrics.announced.DeleteLabelValues(ip.String())
	}
	s.log.Info("speaker stopped", "node", s.cfg.NodeName, "took", time.Since(start).String())
	return errors.Join(errs...)
}

// sync runs one election from the cache and applies this node's share.
// Status objects are written when what this node announces changed, when
// the last write failed, and when full (the first sync and the periodic
// one, which repairs what others did to them).
func (s *speaker) sync(ctx context.Context, full bool) error {
	w := stopwatch{last: time.Now()}
	// Before the snapshot: a change counted after it is seen by the next
	// sync, which then elects again.
	config := s.store.configGeneration()
	snap := s.snapshot()
	w.lap("snapshot")
	s.join(snap)
	alive := s.members.Alive()
	s.metrics.membersAlive.Set(float64(len(alive)))
	services := snap.services

	// An endpoint that changes without changing which nodes have a ready
	// one (most do), on a node that announces what it did: the election
	// would return what it returned, and layer 2 has nothing to do. Only
	// the dataplane below has. The periodic sync always elects.
	last := s.lastElection
	same := !full && last.valid && last.config == config && !snap.electionChanged &&
		slices.Equal(last.alive, alive) && len(s.held) == 0
	var (
		res     election.Result
		mine    map[netip.Addr]election.Announcement
		changed bool
	)
	if same {
		res, mine = last.res, s.announced
		w.lap("elect-skipped")
	} else {
		in := input(snap, alive)
		res = election.Elect(in)
		s.lastElection = lastElection{valid: true, config: config, alive: alive, res: res}
		w.lap("elect")
		s.metrics.speakersExpected.Set(float64(in.ExpectedSpeakers))

		mine = map[netip.Addr]election.Announcement{}
		for _, a := range res.For(s.cfg.NodeName) {
			mine[a.IP] = a
		}
		listed := s.holdHandovers(mine, alive)
		w.lap("handover")
		want := map[netip.Addr][]string{}
		for ip, a := range mine {
			want[ip] = a.Interfaces
		}
		// Stop answering for what we lost first, then answer for what we
		// won.
		applyErr := s.announcer.Set(ctx, want)
		s.reportAnnounceErrors(applyErr, mine, services)
		changed = s.logChanges(mine, listed, services)
		s.announced = mine
		w.lap("announce")
	}
	// Without BGP configured, now or before, there is nothing to compute:
	// the routes input is as large as the election's. BGP needs no
	// quorum: every eligible node advertises.
	var bgpPools, bgpServices map[string]bool
	var paths *routes.Result
	if len(snap.bgpPeers) > 0 || len(snap.bgpAdvertisements) > 0 || s.bgp != nil {
		bgpIn := routesInput(snap, s.cfg.NodeName)
		res := routes.Compute(bgpIn)
		paths, bgpPools, bgpServices = &res, routes.AdvertisedPools(bgpIn), res.Services()
	}
	w.lap("routes")
	// Forwarding first, so that traffic a new route brings finds it.
	s.forward(ctx, snap.services, mine, bgpServices, same)
	w.lap("forward")
	if paths != nil {
		s.syncBGP(ctx, snap, *paths)
		w.lap("bgp")
	}
	s.reportProblems(res, alive, services, bgpPools)
	if changed || full || !slices.Equal(alive, s.writtenAlive) || s.writeFailed.Swap(false) {
		s.writtenAlive = alive
		s.l2Writes.set(func(ctx context.Context) error { return s.writeStatuses(ctx, mine, alive) })
	}
	w.lap("report")
	s.log.Debug("synced", append([]any{"node", s.cfg.NodeName, "full", full, "services", len(services), "announced", len(mine)}, w.laps...)...)
	return nil
}

// lastElection is an election's result and what it was computed from,
// besides the Services: the store says when those changed.
type lastElection struct {
	valid  bool
	config uint64
	alive  []string
	res    election.Result
}

// stopwatch times the stages of a sync, for its debug log line.
type stopwatch struct {
	last time.Time
	laps []any
}

func (w *stopwatch) lap(stage string) {
	now := time.Now()
	w.laps = append(w.laps, stage, now.Sub(w.last).String())
	w.last = now
}

// join asks memberlist to contact the speakers it does not see, when the
// set of peers changed or some are missing (at most every few seconds). It
// runs in the background: contacting a dead node can take memberlist's TCP
// timeout, and the election must not wait for it.
func (s *speaker) join(snap snapshot) {
	peers := peerAddrs(snap, s.cfg.NodeName, s.cfg.MemberlistPort)
	key := fmt.Sprint(peers)
	alive := len(s.members.Alive())
	if key == s.peers && (alive > len(peers) || time.Since(s.lastJoin) < resyncInterval/2) {
		return
	}
	if len(peers) == 0 || !s.joining.CompareAndSwap(false, true) {
		return
	}
	s.peers, s.lastJoin = key, time.Now()
	go func() {
		defer s.joining.Store(false)
		if n, err := s.members.Join(peers); err != nil {
			s.log.Debug("memberlist join incomplete", "node", s.cfg.NodeName, "joined", n, "err", err)
		}
	}()
}

// peerAddrs are the memberlist addresses of the other speakers: the
// InternalIP of each node that runs a speaker Pod.
func peerAddrs(snap snapshot, self string, port int) []netip.AddrPort {
	nodeIP := map[string]netip.Addr{}
	for i := range snap.nodes {
		if ip, ok := internalIP(&snap.nodes[i]); ok {
			nodeIP[snap.nodes[i].Name] = ip
		}
	}
	var out []netip.AddrPort
	for i := range snap.speakers {
		n := snap.speakers[i].Spec.NodeName
		if ip, ok := nodeIP[n]; ok && n != self {
			ap := netip.AddrPortFrom(ip, uint16(port))
			if !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// internalIP is a node's first InternalIP, IPv4 preferred.
func internalIP(n *corev1.Node) (netip.Addr, bool) {
	var found netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		if ip.Is4() {
			return ip, true
		}
		if !found.IsValid() {
			found = ip
		}
	}
	return found, found.IsValid()
}

// logChanges logs what this node gained and lost and records a
// nodeAssigned Event on each Service it now answers for. It says whether
// anything changed.
func (s *speaker) logChanges(mine map[netip.Addr]election.Announcement, listed map[netip.Addr]bool, services map[string]*service) bool {
	changed := len(mine) != len(s.announced)
	for ip, a := range mine {
		old, had := s.announced[ip]
		if had && slices.Equal(old.Interfaces, a.Interfaces) && slices.Equal(old.Services, a.Services) {
			continue
		}
		changed = true
		s.metrics.announced.WithLabelValues(ip.String()).Set(1)
		ifaces := strings.Join(a.Interfaces, ",")
		if ifaces == "" {
			ifaces = "*"
		}
		for _, key := range a.Services {
			s.log.Info("service announced", "service", key, "ip", ip.String(), "node", s.cfg.NodeName, "interface", ifaces, "protocol", protocol(ip))
			// A speaker restarted on the node that announced all along
			// (its status says so) has no news to tell.
			if sv := services[key]; sv != nil && !had && !listed[ip] {
				s.events.Eventf(sv.ref(), corev1.EventTypeNormal, ReasonNodeAssigned,
					"announcing %s from node %s with protocol layer2 (%s) on interfaces %s", ip, s.cfg.NodeName, protocol(ip), ifaces)
			}
		}
	}
	if !changed {
		return false // same size, nothing gained: nothing lost either
	}
	for ip, a := range s.announced {
		if _, still := mine[ip]; still {
			continue
		}
		s.metrics.announced.DeleteLabelValues(ip.String())
		for _, key := range a.Services {
			s.log.Info("service withdrawn", "service", key, "ip", ip.String(), "node", s.cfg.NodeName, "protocol", protocol(ip))
		}
	}
	return true
}

func protocol(ip netip.Addr) string {
	if ip.Is4() {
		return "arp"
	}
	return "ndp"
}

// reportAnnounceErrors turns per-interface failures (an interface missing
// on this node, say) into log lines, and into one Event per new failure
// naming the interface.
func (s *speaker) reportAnnounceErrors(err error, mine map[netip.Addr]election.Announcement, services map[string]*service) {
	now := map[string]bool{}
	for _, e := range unwrapAll(err) {
		var ae *layer2.AnnounceError
		if !errors.As(e, &ae) {
			s.log.Warn("announce failed", "node", s.cfg.NodeName, "err", e)
			continue
		}
		key := ae.Addr.String() + "/" + ae.Interface + "/" + ae.Err.Error()
		now[key] = true
		if s.announceErrs[key] {
			continue
		}
		s.log.Warn("announce failed", "node", s.cfg.NodeName, "ip", ae.Addr.String(), "interface", ae.Interface, "err", ae.Err)
		for _, svcKey := range mine[ae.Addr].Services {
			if sv := services[svcKey]; sv != nil {
				s.events.Eventf(sv.ref(), corev1.EventTypeWarning, ReasonAnnounceFailed,
					"node %s cannot answer for %s on interface %q: %v; fix the L2Advertisement's interfaces or the node", s.cfg.NodeName, ae.Addr, ae.Interface, ae.Err)
			}
		}
	}
	s.announceErrs = now
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// reportProblems logs and records what stops a Service from being
// announced, once per new problem. Every speaker sees the same problems;
// only the first alive node (by name) records Events, so 100 nodes do not
// write 100 copies. Quorum loss is each node's own and logged by each.
//
// A pool no L2Advertisement selects is only a problem when no
// BGPAdvertisement selects it either (bgpPools).
func (s *speaker) reportProblems(res election.Result, alive []string, services map[string]*service, bgpPools map[string]bool) {
	reporter := len(alive) > 0 && alive[0] == s.cfg.NodeName
	now := map[string]bool{}
	quorum := true
	for _, p := range res.Problems {
		if p.Kind == election.NoQuorum {
			quorum = false
			if !s.quorumLost {
				s.log.Warn("announcing stopped", "node", s.cfg.NodeName, "reason", string(p.Kind), "err", p.Message)
			}
			continue
		}
		if p.Kind == election.PoolNotAdvertised && bgpPools[p.Pool] {
			continue
		}
		key := fmt.Sprintf("%s/%s/%s/%s", p.Kind, p.Service, addrString(p.IP), p.Reason)
		now[key] = true
		if s.problems[key] {
			continue
		}
		s.log.Warn("service not announced", "service", p.Service, "ip", addrString(p.IP), "pool", p.Pool, "reason", string(p.Reason), "err", p.Message)
		if sv := services[p.Service]; sv != nil && reporter {
			s.events.Eventf(sv.ref(), corev1.EventTypeWarning, ReasonNotAnnounced, "%s: %s", p.Kind, p.Message)
		}
	}
	if quorum && s.quorumLost {
		s.log.Info("announcing resumed", "node", s.cfg.NodeName, "alive", len(alive))
	}
	s.quorumLost = !quorum
	if quorum {
		s.metrics.quorum.Set(1)
	} else {
		s.metrics.quorum.Set(0)
	}
	s.problems = now
}

func addrString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
