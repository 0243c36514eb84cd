package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/internal/routes"
)

// Session states, as BGPSessionState.status.state spells them.
const (
	StateIdle        = "Idle"
	StateConnect     = "Connect"
	StateActive      = "Active"
	StateOpenSent    = "OpenSent"
	StateOpenConfirm = "OpenConfirm"
	StateEstablished = "Established"
)

// Config configures a Speaker.
type Config struct {
	// Node is this node's name, for logs and metrics.
	Node string
	Log  *slog.Logger
	// Registry receives ironlb_bgp_session_up; nil registers nothing.
	Registry prometheus.Registerer
	// OnChange is called (from a GoBGP goroutine; it must not block) when
	// a session changes state, so the caller can write status.
	OnChange func()
}

// Speaker holds one GoBGP server per peer. One server per peer, not one
// for all: each peer gets its own path set (advertisements select peers,
// LOCAL_PREF is for iBGP only) and its own AS and router ID, with no
// export policies to keep in step.
type Speaker struct {
	cfg Config
	up  *prometheus.GaugeVec

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
}

// session is one peer's server and what it holds.
type session struct {
	cfg    PeerConfig
	srv    *server.BgpServer
	cancel context.CancelFunc // stops the WatchEvent goroutine
	// paths are the paths the server holds, by prefix, with the uuid
	// AddPath returned.
	paths map[netip.Prefix]held

	mu    sync.Mutex // guards the fields below, written from GoBGP's goroutine
	state string
	since time.Time
	// verified: the router's ASN was checked on the current session (always
	// true for a fixed peerASN, which GoBGP checks in the OPEN). Paths are
	// only given to a dynamic-ASN session once it is verified.
	verified bool
	// refused says why the last session was refused (dynamicASN of the
	// wrong kind), "" once one is accepted.
	refused string
}

type held struct {
	path routes.Path
	uuid []byte
	// stale paths are sent again even if unchanged (their next hop moved).
	stale bool
}

// Status is one session as the speaker reports it.
type Status struct {
	Peer             string
	Address          netip.Addr
	State            string
	EstablishedSince time.Time // zero unless Established
	PrefixesSent     int64
	// Refused says why the router's session was refused (its ASN is not
	// of the dynamicASN kind); "" when it was not.
	Refused string
}

// New returns a Speaker with no sessions.
func New(cfg Config) *Speaker {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func() {}
	}
	s := &Speaker{cfg: cfg, sessions: map[string]*session{}}
	s.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ironlb_bgp_session_up",
		Help: "1 while this node's session with the peer is Established, else 0; the series goes away with the peer.",
	}, []string{"peer", "node"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.up)
	}
	return s
}

// Apply makes the sessions match peers and the paths each holds match
// paths (by peer name). Only differences reach GoBGP: a new or changed
// peer is (re)configured, an unchanged path is left alone, a path whose
// attributes changed is replaced with one UPDATE. Failures are per peer
// and joined; other peers are still applied.
func (s *Speaker) Apply(ctx context.Context, peers []PeerConfig, paths map[string][]routes.Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("bgp: speaker closed")
	}
	want := map[string]PeerConfig{}
	for _, p := range peers {
		want[p.Name] = p
	}
	var errs []error
	for name, sess := range s.sessions {
		if _, ok := want[name]; !ok {
			errs = append(errs, s.stopSession(ctx, sess))
			delete(s.sessions, name)
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		pc := want[name]
		sess := s.sessions[name]
		if sess != nil && sess.cfg != pc {
			if sess.cfg.global() != pc.global() {
				// AS or router ID changed: only a new server has them.
				errs = append(errs, s.stopSession(ctx, sess))
				delete(s.sessions, name)
				sess = nil
			} else if err := s.reconfigure(ctx, sess, pc); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if sess == nil {
			var err error
			if sess, err = s.startSession(ctx, pc); err != nil {
				errs = append(errs, err)
				continue
			}
			s.sessions[name] = sess
		}
		errs = append(errs, s.applyPaths(ctx, sess, paths[name]))
	}
	return errors.Join(errs...)
}

// startSession starts a server that never listens (the speaker only dials
// out, so nothing on the node answers on port 179), rejects every route
// it is sent, and has one peer.
func (s *Speaker) startSession(ctx context.Context, pc PeerConfig) (*session, error) {
	srv := server.NewBgpServer(server.LoggerOption(&logger{log: s.cfg.Log, peer: pc.Name}))
	go srv.Serve()
	sess := &session{cfg: pc, srv: srv, paths: map[netip.Prefix]held{}, state: StateIdle, verified: !pc.dynamic()}
	fail := func(what string, err error) (*session, error) {
		srv.Stop()
		return nil, fmt.Errorf("bgp: peer %s (%s): %s: %w", pc.Name, pc.Address, what, err)
	}
	if !pc.RouterID.Is4() {
		return fail("router id", fmt.Errorf("%v is not an IPv4 address; set the BGPPeer's routerID or give the node an IPv4 InternalIP", pc.RouterID))
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: pc.MyASN, RouterId: pc.RouterID.String(), ListenPort: -1,
	}}); err != nil {
		return fail("starting", err)
	}
	// Routes from the router are never used: reject them on import so the
	// RIB holds only our own paths (and nothing reaches the node's table:
	// zebra is never enabled). GoBGP runs our own paths through the same
	// global import policy, so a bare default of reject would drop them
	// too: accept local paths, reject the rest.
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: "only-local", Statements: []*api.Statement{{
		Name:       "local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}}); err != nil {
		return fail("import policy", err)
	}
	if err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: "only-local"}},
		DefaultAction: api.RouteAction_REJECT,
	}}); err != nil {
		return fail("import policy", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	sess.cancel = cancel
	if err := srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer.GetState() != nil {
			s.stateChanged(wctx, sess, p.Peer.State.SessionState, p.Peer.State.PeerAsn)
		}
	}); err != nil {
		cancel()
		return fail("watching peer state", err)
	}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(pc)}); err != nil {
		cancel()
		return fail("adding peer", err)
	}
	s.up.WithLabelValues(pc.Name, s.cfg.Node).Set(0)
	return sess, nil
}

// reconfigure replaces the peer on a running server. Its paths stay in
// the server's RIB and are sent again once the new session is up. A
// delete and add, not UpdatePeer: a new password or timer only takes
// effect on a new connection anyway.
func (s *Speaker) reconfigure(ctx context.Context, sess *session, pc PeerConfig) error {
	if err := sess.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: sess.cfg.Address.String()}); err != nil {
		return fmt.Errorf("bgp: peer %s (%s): removing for reconfiguration: %w", pc.Name, sess.cfg.Address, err)
	}
	s.setState(sess, StateIdle)
	old := sess.cfg
	sess.mu.Lock()
	sess.cfg = pc
	sess.verified, sess.refused = !pc.dynamic(), ""
	sess.mu.Unlock()
	if err := sess.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(pc)}); err != nil {
		return fmt.Errorf("bgp: peer %s (%s): adding after reconfiguration: %w", pc.Name, pc.Address, err)
	}
	if old.NextHop4 != pc.NextHop4 || old.NextHop6 != pc.NextHop6 || old.Address.Is4() != pc.Address.Is4() {
		// Next hops are in the paths: force them to be sent again.
		for p, h := range sess.paths {
			h.stale = true
			sess.paths[p] = h
		}
	}
	return nil
}

func apiPeer(pc PeerConfig) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: pc.Address.String(),
			PeerAsn:         pc.PeerASN,
			LocalAsn:        pc.MyASN,
			AuthPassword:    pc.Password,
		},
		Transport: &api.Transport{RemotePort: uint32(pc.Port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(pc.ConnectRetry / time.Second),
			HoldTime:          uint64(pc.HoldTime / time.Second),
			KeepaliveInterval: uint64(pc.Keepalive / time.Second),
		}},
	}
	if pc.Source.IsValid() {
		p.Transport.LocalAddress = pc.Source.String()
	}
	if pc.EBGPMultiHop {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	if pc.GracefulRestart {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: 120}
	}
	v4, v6 := pc.families()
	add := func(afi api.Family_Afi) {
		as := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
		if pc.GracefulRestart {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, as)
	}
	if v4 {
		add(api.Family_AFI_IP)
	}
	if v6 {
		add(api.Family_AFI_IP6)
	}
	return p
}

// applyPaths adds and deletes the difference between what the session
// holds and want.
func (s *Speaker) applyPaths(ctx context.Context, sess *session, want []routes.Path) error {
	v4, v6 := sess.cfg.families()
	sess.mu.Lock()
	verified := sess.verified
	sess.mu.Unlock()
	if !verified {
		// A dynamic-ASN session not (yet) checked holds no path, so none
		// can reach a router of the wrong kind.
		want = nil
	}
	wanted := map[netip.Prefix]routes.Path{}
	for _, p := range want {
		if (p.Prefix.Addr().Is4() && v4) || (p.Prefix.Addr().Is6() && v6) {
			wanted[p.Prefix] = p
		}
	}
	var errs []error
	for prefix, h := range sess.paths {
		if _, ok := wanted[prefix]; ok {
			continue
		}
		if err := sess.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: h.uuid}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: peer %s: withdrawing %s: %w", sess.cfg.Name, prefix, err))
			continue
		}
		delete(sess.paths, prefix)
		for _, svc := range h.path.Services {
			s.cfg.Log.Info("route withdrawn", "peer", sess.cfg.Name, "prefix", prefix.String(), "service", svc, "node", s.cfg.Node)
		}
	}
	prefixes := make([]netip.Prefix, 0, len(wanted))
	for p := range wanted {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, routes.ComparePrefix)
	for _, prefix := range prefixes {
		p := wanted[prefix]
		h, had := sess.paths[prefix]
		if had && !h.stale && samePath(h.path, p) {
			if !slices.Equal(h.path.Services, p.Services) {
				h.path.Services = p.Services // bookkeeping only: nothing to send
				sess.paths[prefix] = h
			}
			continue
		}
		ap, err := apiPath(sess.cfg, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp: peer %s: %w", sess.cfg.Name, err))
			continue
		}
		// A new local path for a prefix replaces the old one in GoBGP's
		// RIB: one UPDATE with the new attributes, no withdrawal first.
		resp, err := sess.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: ap})
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp: peer %s: advertising %s: %w", sess.cfg.Name, prefix, err))
			continue
		}
		sess.paths[prefix] = held{path: p, uuid: resp.Uuid}
		for _, svc := range p.Services {
			if !had || !slices.Contains(h.path.Services, svc) {
				s.cfg.Log.Info("route advertised", "peer", sess.cfg.Name, "prefix", prefix.String(), "service", svc, "node", s.cfg.Node)
			}
		}
	}
	return errors.Join(errs...)
}

// samePath: the attributes that go on the wire are equal.
func samePath(a, b routes.Path) bool {
	return a.Prefix == b.Prefix && a.LocalPref == b.LocalPref &&
		slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities)
}

// stateChanged records a session's new state, logs the edges into and out
// of Established, and tells the caller. A dynamic-ASN session is checked
// when it comes up: of the right kind, it is verified and the caller's
// next Apply gives it its paths; of the wrong kind, it is reset with a
// Cease NOTIFICATION (GoBGP retries after its idle hold time, 30 s) and
// never holds a path. When it goes down it loses its verification, and the
// next Apply withdraws its paths from the server, before any new session
// can come up.
func (s *Speaker) stateChanged(ctx context.Context, sess *session, st api.PeerState_SessionState, peerASN uint32) {
	state := stateName(st)
	sess.mu.Lock()
	cfg := sess.cfg
	changed := false
	refused := ""
	if cfg.dynamic() {
		switch {
		case state == StateEstablished:
			if refused = cfg.checkPeerASN(peerASN); refused != "" {
				sess.refused = refused
				state = StateIdle // never reported (or counted) as up
			} else {
				sess.verified, sess.refused, changed = true, "", true
			}
		case sess.verified:
			sess.verified, changed = false, true
		}
	}
	sess.mu.Unlock()
	if refused != "" {
		s.cfg.Log.Warn("bgp session refused", "peer", cfg.Name, "node", s.cfg.Node, "address", cfg.Address.String(),
			"reason", "dynamicASN", "err", refused)
		// Not from this goroutine: GoBGP's calls go through its own loop.
		go func() {
			if err := sess.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: cfg.Address.String(),
				Communication: "ironlb: " + refused}); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("bgp session reset failed", "peer", cfg.Name, "node", s.cfg.Node, "err", err)
			}
		}()
		changed = true
	}
	if s.setState(sess, state) || changed {
		s.cfg.OnChange()
	}
}

func (s *Speaker) setState(sess *session, state string) bool {
	sess.mu.Lock()
	old := sess.state
	if old == state {
		sess.mu.Unlock()
		return false
	}
	sess.state = state
	if state == StateEstablished {
		sess.since = time.Now()
	} else {
		sess.since = time.Time{}
	}
	name, addr := sess.cfg.Name, sess.cfg.Address
	sess.mu.Unlock()
	switch {
	case state == StateEstablished:
		s.up.WithLabelValues(name, s.cfg.Node).Set(1)
		s.cfg.Log.Info("bgp session established", "peer", name, "node", s.cfg.Node, "state", state, "address", addr.String())
	case old == StateEstablished:
		s.up.WithLabelValues(name, s.cfg.Node).Set(0)
		s.cfg.Log.Info("bgp session down", "peer", name, "node", s.cfg.Node, "state", state, "address", addr.String())
	}
	return true
}

func stateName(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	default:
		return StateIdle
	}
}

// Sessions reports every session, sorted by peer. PrefixesSent is what
// GoBGP says it advertised on the session.
func (s *Speaker) Sessions(ctx context.Context) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sess.mu.Lock()
		st := Status{Peer: sess.cfg.Name, Address: sess.cfg.Address, State: sess.state, EstablishedSince: sess.since, Refused: sess.refused}
		sess.mu.Unlock()
		if st.State == StateEstablished {
			_ = sess.srv.ListPeer(ctx, &api.ListPeerRequest{Address: sess.cfg.Address.String(), EnableAdvertised: true}, func(p *api.Peer) {
				for _, as := range p.AfiSafis {
					if as.State != nil {
						st.PrefixesSent += int64(as.State.Advertised)
					}
				}
			})
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int {
		if a.Peer < b.Peer {
			return -1
		} else if a.Peer > b.Peer {
			return 1
		}
		return 0
	})
	return out
}

// stopSession withdraws the session's paths, then stops its server, which
// sends the router a Cease NOTIFICATION: the router drops our paths at
// once instead of at hold-time expiry (the withdrawals also cover a
// router that keeps paths across a graceful restart).
func (s *Speaker) stopSession(ctx context.Context, sess *session) error {
	var errs []error
	sess.cancel() // before StopBgp: a watcher can outlive the server (gobgp #3366)
	for prefix, h := range sess.paths {
		if err := sess.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: h.uuid}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: peer %s: withdrawing %s: %w", sess.cfg.Name, prefix, err))
		}
		for _, svc := range h.path.Services {
			s.cfg.Log.Info("route withdrawn", "peer", sess.cfg.Name, "prefix", prefix.String(), "service", svc, "node", s.cfg.Node)
		}
	}
	sess.paths = nil
	if err := sess.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("bgp: peer %s: stopping: %w", sess.cfg.Name, err))
	}
	s.setState(sess, StateIdle)
	s.up.DeleteLabelValues(sess.cfg.Name, s.cfg.Node)
	return errors.Join(errs...)
}

// Close withdraws every path and closes every session. The Speaker cannot
// be used afterwards.
func (s *Speaker) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var wg sync.WaitGroup
	errs := make([]error, 0, len(s.sessions))
	var emu sync.Mutex
	for name, sess := range s.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.stopSession(ctx, sess)
			emu.Lock()
			errs = append(errs, err)
			emu.Unlock()
		}()
		delete(s.sessions, name)
	}
	wg.Wait()
	return errors.Join(errs...)
}
