package layer2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors wrapped in an *AnnounceError.
var (
	// ErrClosed is returned by Set after Close.
	ErrClosed = errors.New("layer2: announcer closed")
	// ErrNoInterface means a wanted interface does not exist.
	ErrNoInterface = errors.New("no such interface")
	// ErrInvalidAddr means the address cannot be answered for (invalid,
	// unspecified, multicast, loopback, link-local or broadcast).
	ErrInvalidAddr = errors.New("address cannot be announced")
)

// AnnounceError says which address could not be announced on which
// interface, and why.
type AnnounceError struct {
	Interface string // empty when the address itself is invalid
	Addr      netip.Addr
	Err       error
}

func (e *AnnounceError) Error() string {
	if e.Interface == "" {
		return fmt.Sprintf("layer2: announce %s: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("layer2: announce %s on interface %s: %v", e.Addr, e.Interface, e.Err)
}

func (e *AnnounceError) Unwrap() error { return e.Err }

// Gratuitous burst on gain: one round at once (inside Set), then
// burstRounds-1 more, burstInterval apart. A round is a gratuitous ARP
// request plus a gratuitous ARP reply (IPv4), or one unsolicited Neighbor
// Advertisement (IPv6).
const (
	burstRounds   = 3
	burstInterval = 500 * time.Millisecond
)

// respKey names one responder: one per interface and protocol.
type respKey struct {
	ifname string
	ipv6   bool
}

// Announcer answers ARP and NDP for a set of addresses on chosen interfaces.
// It never adds the addresses to an interface and changes no sysctl.
//
// Each interface has at most one ARP and one NDP responder, opened when the
// first address needs it and closed when the last one goes. A responder owns
// two goroutines: one answers requests, one sends the rest of the
// gratuitous bursts. Close stops them all.
type Announcer struct {
	log      *slog.Logger
	rounds   int
	interval time.Duration
	answered atomic.Pointer[func(ifname string, ip netip.Addr)]

	// Seams to the system, replaced in tests.
	links     func() ([]net.Interface, error)
	enslaved  func(ifname string) bool
	linkLocal func(ifi *net.Interface) bool
	open      func(ifi *net.Interface, ipv6 bool) (wire, error)

	mu     sync.Mutex
	closed bool
	cur    map[pair]struct{}
	resp   map[respKey]*responder
}

// New returns an Announcer that answers for nothing yet. log may be nil.
func New(log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Announcer{
		log:       log,
		rounds:    burstRounds,
		interval:  burstInterval,
		links:     net.Interfaces,
		enslaved:  sysfsEnslaved,
		linkLocal: hasLinkLocal,
		open:      openWire,
		cur:       make(map[pair]struct{}),
		resp:      make(map[respKey]*responder),
	}
}

// OnAnswer sets f to be called, from a responder goroutine, for every
// request answered (ARP reply or solicited Neighbor Advertisement sent). It
// must be quick; a Prometheus counter's Inc is. nil removes the hook.
func (a *Announcer) OnAnswer(f func(ifname string, ip netip.Addr)) {
	if f == nil {
		a.answered.Store(nil)
		return
	}
	a.answered.Store(&f)
}

func (a *Announcer) countAnswer(ifname string, ip netip.Addr) {
	if f := a.answered.Load(); f != nil {
		(*f)(ifname, ip)
	}
}

// Set makes the announcer answer exactly for want: address -> interface
// names. An empty list means every interface that is up, not loopback, has
// an Ethernet MAC and is not a bridge port or bond slave (read from
// /sys/class/net); IPv4 also needs the broadcast flag, IPv6 the multicast
// flag and a link-local address. The list is expanded again on every call,
// so calling Set again picks up new interfaces.
//
// Set diffs against what it answers now. Newly gained (address, interface)
// pairs get a gratuitous burst (see burstRounds); lost pairs stop being
// answered before Set returns. Every failing pair is reported in the joined
// error as an *AnnounceError and never stops the others; a failed pair is
// retried on the next call. A responder whose interface vanished, changed
// index or MAC, or whose socket failed is reopened. With nothing changed Set
// costs one interface listing and a map diff.
func (a *Announcer) Set(ctx context.Context, want map[netip.Addr][]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	var errs []error
	report := func(ifname string, ip netip.Addr, err error) {
		a.log.Error("address not announced", "interface", ifname, "ip", ip, "err", err)
		errs = append(errs, &AnnounceError{Interface: ifname, Addr: ip, Err: err})
	}

	links, err := a.links()
	if err != nil {
		return fmt.Errorf("layer2: list interfaces: %w", err)
	}
	byName := make(map[string]*net.Interface, len(links))
	for i := range links {
		byName[links[i].Name] = &links[i]
	}

	// Drop responders that cannot be trusted any more; their pairs come
	// back as gains below.
	for k, r := range a.resp {
		ifi := byName[k.ifname]
		if r.failed() || ifi == nil || ifi.Index != r.index || ifi.HardwareAddr.String() != r.mac {
			a.dropResponder(k, r)
		}
	}

	auto := func(ipv6 bool) []string {
		var out []string
		for i := range links {
			ifi := &links[i]
			// Flags first (optimistically), then sysfs and addresses.
			c := candidate{ifi: *ifi, linkLocal: true}
			if !autoInterface(c, ipv6) {
				continue
			}
			c.enslaved = a.enslaved(ifi.Name)
			if ipv6 {
				_, open := a.resp[respKey{ifi.Name, true}]
				c.linkLocal = open || a.linkLocal(ifi)
			}
			if autoInterface(c, ipv6) {
				out = append(out, ifi.Name)
			}
		}
		return out
	}
	desired, bad := desiredPairs(want, auto)
	for _, ip := range bad {
		report("", ip, ErrInvalidAddr)
	}

	gained, lost := diffPairs(a.cur, desired)
	for _, p := range lost {
		delete(a.cur, p)
		k := respKey{p.ifname, p.addr.Is6()}
		r := a.resp[k]
		if r == nil {
			continue
		}
		r.remove(p.addr)
		if err := r.w.leave(p.addr); err != nil {
			report(p.ifname, p.addr, err)
		}
		if r.empty() {
			delete(a.resp, k)
			if err := r.stop(); err != nil && !isClosed(err) {
				report(p.ifname, p.addr, fmt.Errorf("close %s socket: %w", r.proto, err))
			}
		}
	}

	openFailed := make(map[respKey]error)
	for _, p := range gained {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		k := respKey{p.ifname, p.addr.Is6()}
		if err, ok := openFailed[k]; ok {
			report(p.ifname, p.addr, err)
			continue
		}
		r := a.resp[k]
		if r == nil {
			ifi := byName[p.ifname]
			if ifi == nil {
				openFailed[k] = ErrNoInterface
				report(p.ifname, p.addr, ErrNoInterface)
				continue
			}
			w, err := a.open(ifi, k.ipv6)
			if err != nil {
				openFailed[k] = err
				report(p.ifname, p.addr, err)
				continue
			}
			proto := "arp"
			if k.ipv6 {
				proto = "ndp"
			}
			r = startResponder(a.log, proto, ifi, w, a.interval, a.countAnswer)
			a.resp[k] = r
		}
		if err := r.w.join(p.addr); err != nil {
			report(p.ifname, p.addr, err)
			if r.empty() {
				delete(a.resp, k)
				r.stop()
			}
			continue
		}
		r.add(p.addr)
		a.cur[p] = struct{}{}
		// Answering works even if the announcement fails: keep the pair.
		if err := r.w.announce(p.addr); err != nil {
			report(p.ifname, p.addr, err)
		}
		r.queueBurst(p.addr, a.rounds-1)
	}
	return errors.Join(errs...)
}

// dropResponder stops r and forgets the pairs it served.
func (a *Announcer) dropResponder(k respKey, r *responder) {
	delete(a.resp, k)
	for p := range a.cur {
		if p.ifname == k.ifname && p.addr.Is6() == k.ipv6 {
			delete(a.cur, p)
		}
	}
	r.stop()
}

// Close stops answering everywhere and releases sockets and goroutines.
// Set fails with ErrClosed afterwards; Close may be called again.
func (a *Announcer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	var errs []error
	for k, r := range a.resp {
		delete(a.resp, k)
		if err := r.stop(); err != nil && !isClosed(err) {
			errs = append(errs, fmt.Errorf("layer2: close %s socket on interface %s: %w", r.proto, k.ifname, err))
		}
	}
	clear(a.cur)
	return errors.Join(errs...)
}

func openWire(ifi *net.Interface, ipv6 bool) (wire, error) {
	if ipv6 {
		return listenNDP(ifi)
	}
	return dialARP(ifi)
}

// sysfsEnslaved reports whether ifname is a bridge port or bond slave. It
// reads /sys/class/net, which shows the network namespace sysfs was mounted
// in: right for a speaker on the host network.
func sysfsEnslaved(ifname string) bool {
	for _, f := range []string{"brport", "bonding_slave"} {
		if _, err := os.Stat("/sys/class/net/" + ifname + "/" + f); err == nil {
			return true
		}
	}
	return false
}

func hasLinkLocal(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}
