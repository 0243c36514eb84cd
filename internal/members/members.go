// Package members tracks which IronLB speakers are alive, using
// hashicorp/memberlist gossip between the nodes.
package members

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is memberlist's usual port, which MetalLB speakers use too.
const DefaultPort = 7946

// label is prefixed to every packet and stream, so that another memberlist
// cluster on the same port (a MetalLB install, a second IronLB) is rejected
// instead of merged.
const label = "ironlb"

// ErrNoKey is returned by Start when neither Key nor Insecure is set.
var ErrNoKey = errors.New("no gossip encryption key: set Config.Key to 16, 24 or 32 random bytes " +
	"read from the speaker's memberlist Secret (create it with e.g. " +
	"`kubectl create secret generic memberlist --from-literal=secretkey=\"$(openssl rand -base64 32)\"`), " +
	"or set Config.Insecure to gossip unencrypted and unauthenticated")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("members closed")

// Config configures a member. NodeName and BindAddr are required.
type Config struct {
	// NodeName names this member; it must be unique in the cluster and is
	// what Alive returns, so use the Kubernetes Node name.
	NodeName string
	// BindAddr is the node IP to listen on and to advertise.
	BindAddr netip.Addr
	// Port is the UDP and TCP port; zero means DefaultPort.
	Port int
	// Key is the AES key (16, 24 or 32 bytes) that encrypts and
	// authenticates all gossip. Required unless Insecure.
	Key []byte
	// Insecure runs without a Key: anyone who can reach Port can join the
	// cluster and take over IPs. Start logs a warning.
	Insecure bool
	// Timing tunes failure detection; zero fields take DefaultTiming's.
	Timing Timing
	// Logger receives our events and memberlist's own log lines; nil
	// discards them.
	Logger *slog.Logger
}

// Members is a running member of the speakers' gossip cluster.
type Members struct {
	ml        *memberlist.Memberlist
	transport *countingTransport
	self      netip.AddrPort
	logger    *slog.Logger

	changed chan struct{}

	mu     sync.Mutex // guards closed and the close of changed
	closed bool

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{} // closed by Close to end the ctx watcher
	done      chan struct{} // closed when the ctx watcher has returned
}

// Start validates cfg, listens on BindAddr:Port and starts gossiping. The
// member lives until Close or until ctx ends, whichever is first; neither
// announces the departure, so call Leave first when stopping on purpose.
// Call Join to find the other members.
func Start(ctx context.Context, cfg Config) (*Members, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeName == "" {
		return nil, errors.New("members: Config.NodeName is empty")
	}
	if !cfg.BindAddr.IsValid() {
		return nil, fmt.Errorf("members: node %s: Config.BindAddr is not set", cfg.NodeName)
	}
	switch {
	case cfg.Insecure && len(cfg.Key) > 0:
		return nil, fmt.Errorf("members: node %s: both Key and Insecure are set; choose one", cfg.NodeName)
	case cfg.Insecure:
		logger.Warn("gossip encryption disabled",
			"node", cfg.NodeName,
			"reason", "Insecure set: any host that reaches the memberlist port can join and take over IPs")
	case len(cfg.Key) == 0:
		return nil, fmt.Errorf("members: node %s: %w", cfg.NodeName, ErrNoKey)
	case len(cfg.Key) != 16 && len(cfg.Key) != 24 && len(cfg.Key) != 32:
		return nil, fmt.Errorf("members: node %s: key is %d bytes, want 16, 24 or 32", cfg.NodeName, len(cfg.Key))
	}
	port := cfg.Port
	if port == 0 {
		port = DefaultPort
	}
	addr := cfg.BindAddr.Unmap()
	self := netip.AddrPortFrom(addr, uint16(port))
	stdLogger := newStdLogger(logger)

	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{addr.String()},
		BindPort:  port,
		Logger:    stdLogger,
	})
	if err != nil {
		return nil, fmt.Errorf("members: node %s: listen on %s: %w", cfg.NodeName, self, err)
	}
	transport := &countingTransport{NetTransport: nt}

	m := &Members{
		transport: transport,
		self:      self,
		logger:    logger,
		changed:   make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = addr.String()
	mc.BindPort = port
	mc.AdvertiseAddr = addr.String()
	mc.AdvertisePort = port
	mc.Transport = transport
	mc.Label = label
	mc.Logger = stdLogger
	mc.Events = events{m}
	if !cfg.Insecure {
		mc.SecretKey = cfg.Key
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	applyTiming(mc, cfg.Timing.withDefaults())

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("members: node %s: start memberlist on %s: %w", cfg.NodeName, self, err)
	}
	m.ml = ml
	logger.Debug("members started", "node", cfg.NodeName)

	go func() {
		defer close(m.done)
		select {
		case <-ctx.Done():
			_ = m.Close()
		case <-m.stop:
		}
	}()
	return m, nil
}

func applyTiming(mc *memberlist.Config, t Timing) {
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.GossipInterval = t.GossipInterval
	mc.GossipNodes = t.GossipNodes
	mc.PushPullInterval = t.PushPullInterval
	mc.SuspicionMult = t.SuspicionMult
	mc.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	mc.IndirectChecks = t.IndirectChecks
	mc.RetransmitMult = t.RetransmitMult
	mc.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	mc.TCPTimeout = t.TCPTimeout
}

// Join contacts peers (the other speakers' addresses, from the API) and
// merges their view of the cluster. It is idempotent: peers already alive
// in the cluster and our own address are skipped, so call it again whenever
// the list changes. Peers are contacted concurrently, so a dead address
// costs at most one Timing.TCPTimeout. It returns how many of peers are
// now members; err lists the ones that could not be reached, so n > 0 with
// a non-nil err is a partial success.
func (m *Members) Join(peers []netip.AddrPort) (int, error) {
	if m.isClosed() {
		return 0, ErrClosed
	}
	known := make(map[netip.AddrPort]bool)
	for _, n := range m.ml.Members() {
		if ip, ok := netip.AddrFromSlice(n.Addr); ok {
			known[netip.AddrPortFrom(ip.Unmap(), n.Port)] = true
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		joined int
		errs   []error
	)
	for _, p := range peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		if p == m.self || known[p] {
			joined++
			continue
		}
		wg.Go(func() {
			_, err := m.ml.Join([]string{p.String()})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("join %s: %w", p, err))
				return
			}
			joined++
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return joined, fmt.Errorf("members: %d of %d peers unreachable: %w", len(errs), len(peers), errors.Join(errs...))
	}
	return joined, nil
}

// Alive returns the sorted names of the members currently alive, including
// ourselves until we Leave. A suspected member still counts as alive: it
// may refute, and moving its IPs early would be the spurious failover the
// suspicion timeout exists to prevent.
func (m *Members) Alive() []string {
	nodes := m.ml.Members() // excludes dead and left members
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names
}

// Changed delivers a value after the member set changes (join, leave,
// failure, recovery). Notifications coalesce: one value may stand for many
// changes, so read Alive after each. It is closed by Close.
func (m *Members) Changed() <-chan struct{} {
	return m.changed
}

// Stats reports the traffic this member has sent since Start.
func (m *Members) Stats() Stats {
	return m.transport.stats()
}

// Leave tells the other members we are going, and waits up to timeout for
// the message to go out; they drop us as soon as it arrives, without the
// suspicion wait a crash costs. Call Close afterwards.
func (m *Members) Leave(timeout time.Duration) error {
	if m.isClosed() {
		return ErrClosed
	}
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("members: leave: %w", err)
	}
	return nil
}

// Close stops gossiping and listening without announcing it (peers see a
// crash unless Leave was called first), waits for our goroutines and closes
// Changed. It is safe to call more than once.
func (m *Members) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		close(m.changed)
		m.mu.Unlock()
		if err := m.ml.Shutdown(); err != nil {
			m.closeErr = fmt.Errorf("members: shutdown: %w", err)
		}
		close(m.stop)
	})
	// The ctx watcher may itself be the caller; it must not wait for itself.
	select {
	case <-m.done:
	case <-m.stop:
	}
	return m.closeErr
}

func (m *Members) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// notify records a change without ever blocking memberlist, which calls
// its event delegate with its node lock held.
func (m *Members) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// events adapts memberlist's EventDelegate to logging and Changed.
type events struct{ m *Members }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.m.logger.Info("member joined", "node", n.Name, "addr", addrOf(n))
	e.m.notify()
}

// NotifyLeave cannot tell a graceful leave from a failure: memberlist
// records that in its own node state and hands us the embedded Node, whose
// State field it never updates.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.m.logger.Info("member gone", "node", n.Name, "addr", addrOf(n))
	e.m.notify()
}

func (e events) NotifyUpdate(n *memberlist.Node) {
	e.m.logger.Debug("member updated", "node", n.Name, "addr", addrOf(n))
	e.m.notify()
}

func addrOf(n *memberlist.Node) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(ip.Unmap(), n.Port)
}
