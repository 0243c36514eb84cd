package layer2

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// responder runs one wire on one interface: a goroutine that answers
// requests and a goroutine that sends the rest of each gratuitous burst.
// Both stop when stop is called.
type responder struct {
	proto  string // "arp" or "ndp", the log prefix
	ifname string
	index  int
	mac    string
	w      wire
	log    *slog.Logger

	// owned are the addresses answered for: add and remove (called under
	// the Announcer's lock) change it, the serving goroutine reads it once
	// per request. Not copied on write: adding 10,000 addresses one by one
	// would copy it 10,000 times.
	ownedMu sync.RWMutex
	owned   map[netip.Addr]struct{}

	mu      sync.Mutex
	pending map[netip.Addr]int // address -> gratuitous rounds still owed
	kick    chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	dead   chan struct{} // closed when serving ends, for whatever reason
	err    error         // why serving ended; read after dead is closed
}

func startResponder(log *slog.Logger, proto string, ifi *net.Interface, w wire, interval time.Duration, answered func(string, netip.Addr)) *responder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &responder{
		proto:   proto,
		ifname:  ifi.Name,
		index:   ifi.Index,
		mac:     ifi.HardwareAddr.String(),
		w:       w,
		log:     log,
		pending: make(map[netip.Addr]int),
		owned:   make(map[netip.Addr]struct{}),
		kick:    make(chan struct{}, 1),
		cancel:  cancel,
		dead:    make(chan struct{}),
	}
	h := handler{
		owns: r.owns,
		answered: func(ip netip.Addr) {
			if answered != nil {
				answered(r.ifname, ip)
			}
		},
		replyFailed: func(ip netip.Addr, err error) {
			r.log.Error(r.proto+" reply failed", "interface", r.ifname, "ip", ip, "err", err)
		},
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer close(r.dead)
		err := w.serve(h)
		if ctx.Err() == nil {
			r.err = err
			r.log.Error(r.proto+" responder failed", "interface", r.ifname, "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		r.burstLoop(ctx, interval)
	}()
	r.log.Debug(r.proto+" responder started", "interface", r.ifname)
	return r
}

func (r *responder) owns(ip netip.Addr) bool {
	r.ownedMu.RLock()
	defer r.ownedMu.RUnlock()
	_, ok := r.owned[ip]
	return ok
}

func (r *responder) empty() bool {
	r.ownedMu.RLock()
	defer r.ownedMu.RUnlock()
	return len(r.owned) == 0
}

func (r *responder) add(ip netip.Addr) {
	r.ownedMu.Lock()
	r.owned[ip] = struct{}{}
	r.ownedMu.Unlock()
}

func (r *responder) remove(ip netip.Addr) {
	r.ownedMu.Lock()
	delete(r.owned, ip)
	r.ownedMu.Unlock()
	r.mu.Lock()
	delete(r.pending, ip)
	r.mu.Unlock()
}

// failed reports whether serving has ended on its own.
func (r *responder) failed() bool {
	select {
	case <-r.dead:
		return true
	default:
		return false
	}
}

// queueBurst owes ip rounds more gratuitous rounds, one per interval.
func (r *responder) queueBurst(ip netip.Addr, rounds int) {
	if rounds <= 0 {
		return
	}
	r.mu.Lock()
	r.pending[ip] = rounds
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// takeRound returns the addresses due a round now and counts the round.
func (r *responder) takeRound() (due []netip.Addr, more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ip, n := range r.pending {
		if !r.owns(ip) {
			delete(r.pending, ip)
			continue
		}
		due = append(due, ip)
		if n <= 1 {
			delete(r.pending, ip)
		} else {
			r.pending[ip] = n - 1
		}
	}
	if len(r.pending) == 0 {
		// A map keeps the room it grew to: after a burst for 10,000
		// addresses, about 2 MB held for nothing.
		r.pending = make(map[netip.Addr]int)
	}
	return due, len(r.pending) > 0
}

func (r *responder) burstLoop(ctx context.Context, interval time.Duration) {
	var t *time.Ticker
	var tick <-chan time.Time
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			if t == nil {
				t = time.NewTicker(interval)
				tick = t.C
			}
		case <-tick:
			due, more := r.takeRound()
			for _, ip := range due {
				if ctx.Err() != nil {
					return
				}
				if err := r.w.announce(ip); err != nil {
					r.log.Error("gratuitous announcement failed", "interface", r.ifname, "ip", ip, "err", err)
				}
			}
			if !more {
				t.Stop()
				t, tick = nil, nil
			}
		}
	}
}

// stop ends both goroutines and closes the socket.
func (r *responder) stop() error {
	r.cancel()
	err := r.w.close()
	r.wg.Wait()
	r.log.Debug(r.proto+" responder stopped", "interface", r.ifname)
	return err
}
