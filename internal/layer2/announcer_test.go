package layer2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeWire records what a responder does and serves until closed.
type fakeWire struct {
	mu        sync.Mutex
	announced map[netip.Addr]int
	joined    map[netip.Addr]bool
	closed    chan struct{}
	failServe chan error // a value makes serve fail
	h         chan handler
}

func newFakeWire() *fakeWire {
	return &fakeWire{announced: map[netip.Addr]int{}, joined: map[netip.Addr]bool{},
		closed: make(chan struct{}), failServe: make(chan error, 1), h: make(chan handler, 1)}
}

func (w *fakeWire) serve(h handler) error {
	w.h <- h
	select {
	case <-w.closed:
		return net.ErrClosed
	case err := <-w.failServe:
		return err
	}
}
func (w *fakeWire) announce(ip netip.Addr) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.announced[ip]++
	return nil
}
func (w *fakeWire) join(ip netip.Addr) error {
	w.mu.Lock()
	w.joined[ip] = true
	w.mu.Unlock()
	return nil
}
func (w *fakeWire) leave(ip netip.Addr) error {
	w.mu.Lock()
	delete(w.joined, ip)
	w.mu.Unlock()
	return nil
}
func (w *fakeWire) close() error { close(w.closed); return nil }
func (w *fakeWire) count(ip netip.Addr) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.announced[ip]
}

type fakeSystem struct {
	mu     sync.Mutex
	links  []net.Interface
	wires  map[respKey][]*fakeWire
	opens  int
	broken map[string]error
}

func newFakeAnnouncer(t testing.TB, names ...string) (*Announcer, *fakeSystem) {
	fs := &fakeSystem{wires: map[respKey][]*fakeWire{}, broken: map[string]error{}}
	for i, n := range names {
		fs.links = append(fs.links, net.Interface{Index: i + 2, Name: n, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 2)},
			Flags: net.FlagUp | net.FlagBroadcast | net.FlagMulticast})
	}
	a := New(testLogger(t))
	a.interval = 10 * time.Millisecond
	a.links = func() ([]net.Interface, error) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return append([]net.Interface(nil), fs.links...), nil
	}
	a.enslaved = func(string) bool { return false }
	a.linkLocal = func(*net.Interface) bool { return true }
	a.open = func(ifi *net.Interface, ipv6 bool) (wire, error) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if err := fs.broken[ifi.Name]; err != nil {
			return nil, err
		}
		fs.opens++
		w := newFakeWire()
		k := respKey{ifi.Name, ipv6}
		fs.wires[k] = append(fs.wires[k], w)
		return w, nil
	}
	t.Cleanup(func() { a.Close() })
	return a, fs
}

func (fs *fakeSystem) wire(t *testing.T, ifname string, ipv6 bool) *fakeWire {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ws := fs.wires[respKey{ifname, ipv6}]
	if len(ws) == 0 {
		t.Fatalf("no wire opened on %s (ipv6 %v)", ifname, ipv6)
	}
	return ws[len(ws)-1]
}

func isClosedWire(w *fakeWire) bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

func TestAnnouncerStory(t *testing.T) {
	a, fs := newFakeAnnouncer(t, "eth0", "eth1")
	ctx := context.Background()

	// Gain: one responder per interface and family, lazily.
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}, v4b: {"eth0"}, v6: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if fs.opens != 2 {
		t.Fatalf("%d sockets opened, want 2 (arp and ndp on eth0)", fs.opens)
	}
	arp0, ndp0 := fs.wire(t, "eth0", false), fs.wire(t, "eth0", true)
	h := <-arp0.h
	if !h.owns(v4) || !h.owns(v4b) || h.owns(v6) {
		t.Error("arp responder owns the wrong addresses")
	}
	if !ndp0.joined[v6] {
		t.Error("ndp responder did not join the group of", v6)
	}

	// The burst: burstRounds announcements per gained pair, then quiet.
	waitFor(t, "burst done", time.Second, func() (bool, string) {
		return arp0.count(v4) == burstRounds && arp0.count(v4b) == burstRounds && ndp0.count(v6) == burstRounds, ""
	})
	time.Sleep(5 * a.interval)
	if n := arp0.count(v4); n != burstRounds {
		t.Errorf("%d announcements of %s, want %d", n, v4, burstRounds)
	}

	// Unchanged: nothing opened, nothing announced.
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}, v4b: {"eth0"}, v6: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if fs.opens != 2 || arp0.count(v4) != burstRounds {
		t.Errorf("unchanged Set opened %d sockets, announced %d times", fs.opens, arp0.count(v4))
	}

	// Lose one address: no longer answered at once; socket stays for the other.
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}, v6: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if h.owns(v4b) || !h.owns(v4) || isClosedWire(arp0) {
		t.Error("after losing v4b: wrong ownership or socket closed")
	}

	// Lose the last IPv6 address: its responder closes, and leaves the group.
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if !isClosedWire(ndp0) || ndp0.joined[v6] {
		t.Error("ndp responder not closed or group not left after last IPv6 address went")
	}

	// A responder whose socket fails is reopened on the next Set, and the
	// address is announced afresh.
	arp0.failServe <- errors.New("boom")
	waitFor(t, "responder marked failed", time.Second, func() (bool, string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.resp[respKey{"eth0", false}].failed(), ""
	})
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if fs.opens != 3 || fs.wire(t, "eth0", false) == arp0 {
		t.Errorf("failed responder not reopened (opens %d)", fs.opens)
	}

	// Close stops everything; Set afterwards fails.
	last := fs.wire(t, "eth0", false)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosedWire(last) {
		t.Error("Close left a socket open")
	}
	if err := a.Set(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close = %v, want ErrClosed", err)
	}
}

func TestAnnouncerErrorsDoNotStopOthers(t *testing.T) {
	a, fs := newFakeAnnouncer(t, "eth0", "bad0")
	fs.broken["bad0"] = errors.New("socket: permission denied")
	err := a.Set(context.Background(), map[netip.Addr][]string{
		v4:  {"bad0", "eth0", "gone0"},
		v4b: {"bad0"},
		v6:  {"eth0"},
		{}:  {"eth0"},
	})
	var msgs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ae *AnnounceError
		if !errors.As(e, &ae) {
			t.Errorf("%v is not an *AnnounceError", e)
		}
		msgs = append(msgs, e.Error())
	}
	want := []string{
		"layer2: announce invalid IP: address cannot be announced",
		"layer2: announce 192.0.2.10 on interface bad0: socket: permission denied",
		"layer2: announce 192.0.2.10 on interface gone0: no such interface",
		"layer2: announce 192.0.2.11 on interface bad0: socket: permission denied",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	if !errors.Is(err, ErrNoInterface) || !errors.Is(err, ErrInvalidAddr) {
		t.Error("errors.Is does not find the sentinels")
	}
	h := <-fs.wire(t, "eth0", false).h
	if !h.owns(v4) {
		t.Error("eth0 does not answer for v4 although only other interfaces failed")
	}
	// Failed pairs are retried: once bad0 works, the next Set announces there.
	delete(fs.broken, "bad0")
	if err := a.Set(context.Background(), map[netip.Addr][]string{v4: {"bad0", "eth0"}, v6: {"eth0"}}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if (<-fs.wire(t, "bad0", false).h).owns(v4) != true {
		t.Error("bad0 not answering after retry")
	}
}

func TestAnnouncerInterfaceReplaced(t *testing.T) {
	a, fs := newFakeAnnouncer(t, "eth0")
	want := map[netip.Addr][]string{v4: {"eth0"}}
	if err := a.Set(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	old := fs.wire(t, "eth0", false)
	fs.mu.Lock()
	fs.links[0].Index = 42 // deleted and created again
	fs.mu.Unlock()
	if err := a.Set(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if !isClosedWire(old) || fs.wire(t, "eth0", false) == old {
		t.Error("responder on a replaced interface was not reopened")
	}
	// Interface vanished: error, and the responder is gone.
	fs.mu.Lock()
	fs.links = nil
	fs.mu.Unlock()
	if err := a.Set(context.Background(), want); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Set with vanished interface = %v", err)
	}
	if len(a.resp) != 0 {
		t.Errorf("%d responders left", len(a.resp))
	}
}

func TestAnnouncerCanceledContext(t *testing.T) {
	a, _ := newFakeAnnouncer(t, "eth0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Set(ctx, map[netip.Addr][]string{v4: {"eth0"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Set = %v, want context.Canceled", err)
	}
}

func BenchmarkSetUnchanged(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("addresses=%d", n), func(b *testing.B) {
			a, _ := newFakeAnnouncer(b, "eth0", "eth1")
			want := map[netip.Addr][]string{}
			base := netip.MustParseAddr("10.0.0.0")
			for range n {
				base = base.Next()
				want[base] = nil
			}
			if err := a.Set(context.Background(), want); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := a.Set(context.Background(), want); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
