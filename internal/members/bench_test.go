package members

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Run with: go test -run '^$' -bench 'Detection' -benchtime=20x ./internal/members
// Each iteration starts a fresh 3-member cluster (untimed), stops node-2
// and measures until both survivors drop it from Alive, which is what the
// layer-2 election acts on. ns/op is meaningless here; read p50_ms and
// max_ms.

func BenchmarkCrashDetection(b *testing.B) {
	benchDetection(b, func(m *Members) {
		_ = m.Close() // no Leave: peers must detect the silence
	})
}

func BenchmarkLeaveDetection(b *testing.B) {
	benchDetection(b, func(m *Members) {
		if err := m.Leave(time.Second); err != nil {
			b.Errorf("leave: %v", err)
		}
		_ = m.Close()
	})
}

func benchDetection(b *testing.B, stop func(*Members)) {
	var took []time.Duration
	for b.Loop() {
		b.StopTimer()
		ms := startCluster(b, 3)
		// Let the join gossip settle, then stop at a random phase of the
		// probe and gossip tickers: startCluster returns just after a tick,
		// so a fixed sleep would always stop right after one and measure
		// the worst case of every wait instead of its spread.
		time.Sleep(500*time.Millisecond + rand.N(time.Second))
		b.StartTimer()
		// stop runs concurrently: Leave blocks until its message has been
		// retransmitted enough, which is later than peers act on it.
		start := time.Now()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			stop(ms[2])
		}()
		waitGone(b, 10*time.Second, "node-2", ms[:2]...)
		took = append(took, time.Since(start))
		b.StopTimer()
		<-stopped
		for _, m := range ms {
			_ = m.Close()
		}
		b.StartTimer()
	}
	reportLatency(b, took)
}

// reportLatency reports p50 and max of d in milliseconds.
func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	b.ReportMetric(ms(d[len(d)/2]), "p50_ms")
	b.ReportMetric(ms(d[len(d)-1]), "max_ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("n=%d samples: %v", len(d), d)
}

// BenchmarkTraffic measures the steady-state traffic of an N-member cluster
// for 10 s through the counting transport, to check the formula in Timing:
// 2/ProbeInterval UDP packets per node per second, plus push-pulls.
// Run with: go test -run '^$' -bench Traffic -benchtime=1x ./internal/members
func BenchmarkTraffic(b *testing.B) {
	const window = 10 * time.Second
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for b.Loop() {
				ms := startCluster(b, n)
				time.Sleep(time.Second) // let the join broadcasts die out
				before := make([]Stats, n)
				for i, m := range ms {
					before[i] = m.Stats()
				}
				time.Sleep(window)
				var total Stats
				for i, m := range ms {
					s := m.Stats()
					total.PacketsSent += s.PacketsSent - before[i].PacketsSent
					total.PacketBytesSent += s.PacketBytesSent - before[i].PacketBytesSent
					total.StreamsOpened += s.StreamsOpened - before[i].StreamsOpened
					total.StreamBytes += s.StreamBytes - before[i].StreamBytes
				}
				sec := window.Seconds()
				pi := DefaultTiming().ProbeInterval.Seconds()
				b.ReportMetric(float64(total.PacketsSent)/sec/float64(n), "pkts/s/node")
				b.ReportMetric(2/pi, "formula_pkts/s/node")
				b.ReportMetric(float64(total.PacketsSent)/sec, "pkts/s/cluster")
				b.ReportMetric(float64(total.PacketBytesSent)/float64(total.PacketsSent), "B/pkt")
				b.ReportMetric(float64(total.StreamsOpened)/sec, "pushpulls/s/cluster")
				b.ReportMetric(float64(total.StreamBytes)/max(1, float64(total.StreamsOpened)), "B/pushpull")
				b.ReportMetric(0, "ns/op")
				for _, m := range ms {
					_ = m.Close()
				}
			}
		})
	}
}
