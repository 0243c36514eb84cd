package members

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// detectBound is a generous bound for tests on a shared, busy machine; the
// latency itself is measured by BenchmarkCrashDetection.
const detectBound = 3 * time.Second

func TestThreeMembersSeeEachOther(t *testing.T) {
	ms := startCluster(t, 3)
	want := []string{"node-0", "node-1", "node-2"}
	for _, m := range ms {
		if got := m.Alive(); !slices.Equal(got, want) {
			t.Errorf("%s: Alive() = %v, want %v", m.ml.LocalNode().Name, got, want)
		}
	}
}

func TestJoinIsIdempotent(t *testing.T) {
	ms := startCluster(t, 3)
	peers := []netip.AddrPort{ms[0].self, ms[1].self, ms[2].self}
	n, err := ms[1].Join(peers)
	if err != nil || n != 3 {
		t.Fatalf("Join(all, again) = %d, %v; want 3, nil", n, err)
	}
	if got := len(ms[1].Alive()); got != 3 {
		t.Errorf("after rejoin: %d alive, want 3", got)
	}
}

func TestJoinReportsUnreachablePeers(t *testing.T) {
	m := startMember(t, "lonely", Config{})
	dead := netip.AddrPortFrom(loopbackAddr(), DefaultPort)
	n, err := m.Join([]netip.AddrPort{dead})
	if n != 0 || err == nil || !strings.Contains(err.Error(), dead.String()) {
		t.Fatalf("Join(unreachable) = %d, %v; want 0 and an error naming %s", n, err, dead)
	}
}

func TestChangedFiresOnJoin(t *testing.T) {
	a := startMember(t, "a", Config{})
	b := startMember(t, "b", Config{})
	drain(a)
	if _, err := b.Join([]netip.AddrPort{a.self}); err != nil {
		t.Fatal(err)
	}
	expectChanged(t, a, detectBound)
	expectChanged(t, b, detectBound)
}

func TestCrashIsDetected(t *testing.T) {
	ms := startCluster(t, 3)
	survivors := ms[:2]
	for _, m := range survivors {
		drain(m)
	}
	if err := ms[2].Close(); err != nil { // no Leave: a crash
		t.Fatal(err)
	}
	took := waitGone(t, detectBound, "node-2", survivors...)
	t.Logf("crash detected by both survivors after %v", took)
	for _, m := range survivors {
		expectChanged(t, m, time.Second)
		if got, want := m.Alive(), []string{"node-0", "node-1"}; !slices.Equal(got, want) {
			t.Errorf("Alive() = %v, want %v", got, want)
		}
	}
}

func TestLeaveIsSeenQuickly(t *testing.T) {
	ms := startCluster(t, 3)
	survivors := ms[:2]
	for _, m := range survivors {
		drain(m)
	}
	start := time.Now()
	if err := ms[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	returned := time.Since(start)
	waitGone(t, detectBound, "node-2", survivors...)
	t.Logf("leave seen by both survivors %v after Leave was called (Leave returned after %v)",
		time.Since(start), returned)
	for _, m := range survivors {
		expectChanged(t, m, time.Second)
	}
	if got := ms[2].Alive(); slices.Contains(got, "node-2") {
		t.Errorf("after Leave, own Alive() = %v still lists us", got)
	}
	if err := ms[2].Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCrashedMemberRecovers(t *testing.T) {
	ms := startCluster(t, 3)
	victim := ms[2]
	addr := victim.self.Addr()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, detectBound, "node-2", ms[:2]...)
	drain(ms[0])

	// The restarted speaker comes back on the same node IP, as it would.
	back, err := Start(context.Background(), Config{NodeName: "node-2", BindAddr: addr, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Close() })
	if _, err := back.Join([]netip.AddrPort{ms[0].self}); err != nil {
		t.Fatal(err)
	}
	expectChanged(t, ms[0], detectBound)
	waitFor(t, detectBound, "node-2 alive again", func() bool {
		return slices.Contains(ms[0].Alive(), "node-2") && slices.Contains(ms[1].Alive(), "node-2")
	})
}

func TestWrongKeyCannotJoin(t *testing.T) {
	a := startMember(t, "a", Config{})
	b := startMember(t, "b", Config{Key: []byte("fedcba9876543210fedcba9876543210")})
	if n, err := b.Join([]netip.AddrPort{a.self}); err == nil || n != 0 {
		t.Fatalf("Join with the wrong key = %d, %v; want 0 and an error", n, err)
	}
	// Give any stray packet time to land, then check neither side merged.
	time.Sleep(500 * time.Millisecond)
	if got := a.Alive(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a.Alive() = %v, want [a]", got)
	}
	if got := b.Alive(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("b.Alive() = %v, want [b]", got)
	}
}

func TestStartRefusesMissingKey(t *testing.T) {
	_, err := Start(context.Background(), Config{NodeName: "a", BindAddr: loopbackAddr()})
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("Start without key: err = %v, want ErrNoKey", err)
	}
	// The message must tell the operator both ways out.
	for _, hint := range []string{"Key", "Secret", "Insecure"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not mention %q", err, hint)
		}
	}
}

func TestStartValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{BindAddr: loopbackAddr(), Key: testKey}, "NodeName"},
		{"no address", Config{NodeName: "a", Key: testKey}, "BindAddr"},
		{"short key", Config{NodeName: "a", BindAddr: loopbackAddr(), Key: []byte("short")}, "5 bytes"},
		{"key and insecure", Config{NodeName: "a", BindAddr: loopbackAddr(), Key: testKey, Insecure: true}, "choose one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Start(context.Background(), tc.cfg)
			if err == nil {
				_ = m.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestInsecureWarnsAndWorks(t *testing.T) {
	rec := &recorder{}
	a := startMember(t, "a", Config{Insecure: true, Logger: slog.New(rec)})
	rw, ok := rec.find(slog.LevelWarn, "gossip encryption disabled")
	if !ok {
		t.Fatal("no warning logged for Insecure")
	}
	if attr(rw, "node") != "a" {
		t.Errorf("warning node = %q, want a", attr(rw, "node"))
	}
	b := startMember(t, "b", Config{Insecure: true})
	if _, err := b.Join([]netip.AddrPort{a.self}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, detectBound, "a sees b", func() bool { return len(a.Alive()) == 2 })
	if _, ok := rec.find(slog.LevelInfo, "member joined"); !ok {
		t.Error("no \"member joined\" logged")
	}
}

func TestContextEndCloses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Start(ctx, Config{NodeName: "a", BindAddr: loopbackAddr(), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, open := <-m.Changed():
		if open {
			// A value may have been pending; the close must follow.
			<-m.Changed()
		}
	case <-time.After(detectBound):
		t.Fatal("Changed not closed after ctx ended")
	}
	if _, err := m.Join(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after close: err = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
