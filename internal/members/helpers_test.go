package members

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// testKey is a fixed 32-byte AES key; the tests need agreement, not secrecy.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// loopbackAddr returns a random 127.x.y.z address. Every member gets its own
// address on the default port, so tests never race for free ports, and
// random addresses keep concurrent test binaries apart.
func loopbackAddr() netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(rand.IntN(254) + 1), byte(rand.IntN(256)), byte(rand.IntN(254) + 1)})
}

// tb is what the helpers need from *testing.T and *testing.B.
type tb interface {
	Helper()
	Fatalf(string, ...any)
	Cleanup(func())
}

// startMember starts a member named name with cfg's remaining fields, on a
// fresh loopback address, and closes it when the test ends.
func startMember(t tb, name string, cfg Config) *Members {
	t.Helper()
	cfg.NodeName = name
	if cfg.Key == nil && !cfg.Insecure {
		cfg.Key = testKey
	}
	var lastErr error
	for range 5 { // a random address may, rarely, be taken
		cfg.BindAddr = loopbackAddr()
		m, err := Start(context.Background(), cfg)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil
}

// startCluster starts n members node-0 … node-(n-1), joins them through
// node-0 and waits until every member sees all n.
func startCluster(t tb, n int) []*Members {
	t.Helper()
	ms := make([]*Members, n)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("node-%d", i)
		ms[i] = startMember(t, names[i], Config{})
	}
	for _, m := range ms[1:] {
		if _, err := m.Join([]netip.AddrPort{ms[0].self}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "all members see all", func() bool {
		for _, m := range ms {
			if !slices.Equal(m.Alive(), names) {
				return false
			}
		}
		return true
	})
	return ms
}

// waitFor polls cond every 2ms until it holds, failing after timeout; it
// returns how long it took.
func waitFor(t tb, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// waitGone waits until none of ms lists name as alive and returns the time
// taken: the detection latency as the election would see it.
func waitGone(t tb, timeout time.Duration, name string, ms ...*Members) time.Duration {
	t.Helper()
	return waitFor(t, timeout, name+" dropped by every survivor", func() bool {
		for _, m := range ms {
			if slices.Contains(m.Alive(), name) {
				return false
			}
		}
		return true
	})
}

// drain empties m's Changed channel, so the next receive is a new change.
func drain(m *Members) {
	for {
		select {
		case <-m.Changed():
		default:
			return
		}
	}
}

// expectChanged fails unless m's Changed fires within timeout.
func expectChanged(t tb, m *Members, timeout time.Duration) {
	t.Helper()
	select {
	case <-m.Changed():
	case <-time.After(timeout):
		t.Fatalf("%s: Changed did not fire within %v", m.ml.LocalNode().Name, timeout)
	}
}

// recorder is a slog.Handler that keeps records for assertions.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// find returns the first record at level whose message is msg.
func (r *recorder) find(level slog.Level, msg string) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Level == level && rec.Message == msg {
			return rec, true
		}
	}
	return slog.Record{}, false
}

// attr returns the string value of key in rec.
func attr(rec slog.Record, key string) string {
	var v string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}
