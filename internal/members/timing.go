package members

import "time"

// Timing holds the failure-detector knobs handed to memberlist. The zero
// value of any field means "use DefaultTiming's value", so Timing{} is the
// tuned default and a caller can override a single knob.
//
// # Why these defaults
//
// The layer-2 election must move a crashed node's IPs in under 1 s at p50
// and 2 s at worst, and must not move them spuriously when every CPU is
// busy. memberlist (SWIM plus the Lifeguard extensions) declares a node dead
// after four steps, so detection latency on a survivor is roughly
//
//	T_detect ≈ T_wait + ProbeInterval + T_suspect + T_spread
//
// where:
//   - T_wait: until some survivor probes the dead node. Each node probes one
//     peer per ProbeInterval in shuffled round-robin order, so with N nodes
//     each survivor reaches a given peer every (N-1)·ProbeInterval and the
//     first of N-1 survivors gets there after about ProbeInterval on average
//     (2/3·ProbeInterval at N=3).
//   - ProbeInterval: a probe gives the direct ping ProbeTimeout, then
//     IndirectChecks relays and a TCP ping share the rest of the interval.
//   - T_suspect = SuspicionMult · max(1, log10 N) · ProbeInterval once
//     SuspicionMult-2 other nodes confirm the suspicion independently
//     (Lifeguard); without confirmations it starts at SuspicionMaxTimeoutMult
//     times that and shrinks as confirmations arrive.
//   - T_spread: the "dead" message rides the next gossip tick
//     (GossipInterval) and every probe.
//
// With ProbeInterval 200ms, ProbeTimeout 100ms and SuspicionMult 2 a crash on
// a 3-node cluster is detected in ≈ 133 + 200 + 400 + 25 ≈ 760 ms on
// average and ≈ 400 + 200 + 400 + 50 ≈ 1.05 s at worst, plus scheduling
// (measured p50 720 ms, max 1.16 s over 30 runs of
// BenchmarkCrashDetection). A one-second ProbeInterval (memberlist's LAN
// default) could never meet the target: its suspicion alone lasts 4 s.
//
// Robustness under load comes from three places. A live node that is
// suspected refutes by gossip within about two GossipIntervals (100 ms), so a
// false "dead" needs the node to be unresponsive for the whole probe plus
// suspicion window (≥ 600 ms), far above scheduler latency on a busy but
// unthrottled host (the speaker must not run under a CFS CPU limit, whose
// throttling stalls a whole process for most of a 100 ms period). The
// Lifeguard local-health multiplier (AwarenessMaxMultiplier) stretches the
// probe interval and timeout of a node that notices it is itself slow
// (missed nacks, having to refute), so a starved node stops accusing healthy
// ones. And the suspicion timeout grows with log10 N, so large clusters,
// where a suspicion and its refutation need more gossip hops, get a longer
// refutation window (800 ms at N=100, 1.2 s at N=1,000).
// SuspicionMult 2 means memberlist asks for no confirmations (k = mult-2 =
// 0): at N=3 a confirmation would have to come from the only other survivor
// probing the dead node itself, which costs up to a whole extra probe round
// and would push p50 past 1 s.
//
// A graceful Leave is a "dead" message about ourselves; peers act on it as
// soon as it arrives, so GossipInterval (50 ms) bounds the hand-over
// (measured p50 29 ms, max 53 ms by BenchmarkLeaveDetection). Gossip
// ticks send nothing when no message is queued, so the short interval costs
// timer wake-ups, not packets.
//
// # Traffic
//
// In steady state (no churn) each node, every ProbeInterval, sends one ping
// and, on average, answers one ping with an ack; gossip sends nothing because
// nothing is queued; every PushPullInterval·s(N) it opens one TCP push-pull
// that exchanges the full member list both ways, where s(N) = 1 for N ≤ 32
// and ceil(log2 N - 5) + 1 above. So, per node and for the whole cluster:
//
//	UDP packets/s per node   = 2 / ProbeInterval                     = 10
//	UDP packets/s cluster    = 2N / ProbeInterval                    = 10N
//	TCP push-pulls/s cluster = N / (PushPullInterval · s(N))
//	push-pull bytes          ≈ 2 · N · ~60 B (one node state each way)
//
//	N      per node   cluster UDP   push-pulls/s (cluster)   push-pull bytes/s (cluster)
//	100    10 pps     1,000 pps     100/(15s·3) = 2.2        2.2 · 12 kB  ≈ 27 kB/s
//	1,000  10 pps     10,000 pps    1000/(15s·6) = 11        11 · 120 kB ≈ 1.3 MB/s
//
// A ping or ack measured 81 bytes on the wire with the label and AES-GCM
// overhead and 6-character node names; real node names make it ~100-130
// bytes, so probing costs ≈ 1 kB/s per node whatever N is. Push-pull bytes
// above are an upper bound: memberlist compresses them (a 10-node exchange
// measured 192 bytes both ways). Each membership change (join, fail, leave)
// is additionally retransmitted RetransmitMult · ceil(log10(N+1)) times by
// every node that learns it, mostly piggybacked on probes or packed into
// compound gossip packets: at most 4·3 = 12 packets per node at N=100 and 16
// at N=1,000 per event.
//
// Measured by BenchmarkTraffic over 10 s of steady state (the counting
// transport sees every UDP packet and TCP stream a member sends): N=3 sent
// 9.4 packets/s per node (28 cluster-wide; formula 10 and 30), N=10 sent
// 11.0 per node (110 cluster-wide; formula 10 and 100) plus 0.8 push-pulls/s
// cluster-wide (formula 10/15 s = 0.67). The small gaps are timer skew
// below and leftover join gossip above.
type Timing struct {
	// ProbeInterval is how often each node probes one random peer.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct ping waits for its ack before
	// indirect probes are tried; it must be well under ProbeInterval.
	ProbeTimeout time.Duration
	// GossipInterval is how often queued broadcasts are sent to GossipNodes
	// random peers.
	GossipInterval time.Duration
	// GossipNodes is the gossip fan-out per GossipInterval.
	GossipNodes int
	// PushPullInterval is how often (before scaling by cluster size) a node
	// syncs its full state with one random peer over TCP (anti-entropy).
	PushPullInterval time.Duration
	// SuspicionMult scales the suspicion timeout:
	// SuspicionMult · max(1, log10 N) · ProbeInterval.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout when the
	// expected confirmations do not arrive.
	SuspicionMaxTimeoutMult int
	// IndirectChecks is how many peers are asked to probe on our behalf
	// after a direct ping times out.
	IndirectChecks int
	// RetransmitMult scales how many times each broadcast is retransmitted:
	// RetransmitMult · ceil(log10(N+1)).
	RetransmitMult int
	// AwarenessMaxMultiplier caps how far Lifeguard's local-health score
	// may stretch our own probe interval and timeout.
	AwarenessMaxMultiplier int
	// TCPTimeout bounds TCP work: joins, push-pulls and TCP fallback probes.
	TCPTimeout time.Duration
}

// DefaultTiming returns the timings tuned for sub-second failover; see
// Timing for the reasoning and the traffic they cost.
func DefaultTiming() Timing {
	return Timing{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		PushPullInterval:        15 * time.Second,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 4,
		IndirectChecks:          3,
		RetransmitMult:          4,
		AwarenessMaxMultiplier:  8,
		TCPTimeout:              2 * time.Second,
	}
}

// withDefaults fills every zero field from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	dur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	num := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	dur(&t.ProbeInterval, d.ProbeInterval)
	dur(&t.ProbeTimeout, d.ProbeTimeout)
	dur(&t.GossipInterval, d.GossipInterval)
	num(&t.GossipNodes, d.GossipNodes)
	dur(&t.PushPullInterval, d.PushPullInterval)
	num(&t.SuspicionMult, d.SuspicionMult)
	num(&t.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	num(&t.IndirectChecks, d.IndirectChecks)
	num(&t.RetransmitMult, d.RetransmitMult)
	num(&t.AwarenessMaxMultiplier, d.AwarenessMaxMultiplier)
	dur(&t.TCPTimeout, d.TCPTimeout)
	return t
}
