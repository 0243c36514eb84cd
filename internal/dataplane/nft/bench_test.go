package nft

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// requireKernel, set by `make bench-dataplane`, turns a missing root, nft
// or unshare into a failure instead of skipped benchmarks.
const requireKernel = "IRONLB_BENCH_DATAPLANE"

// TestMain runs the benchmarks, when asked for, in a copy of the test
// binary inside a fresh network namespace (as TestKernel does for itself),
// so the host's ruleset is never touched. Tests alone run as usual.
func TestMain(m *testing.M) {
	flag.Parse()
	bench := flag.Lookup("test.bench")
	if os.Getenv(inNetns) != "" || bench == nil || bench.Value.String() == "" {
		os.Exit(m.Run())
	}
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for a network namespace"
	}
	for _, tool := range []string{"nft", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = "needs " + tool
		}
	}
	if why != "" {
		if os.Getenv(requireKernel) != "" {
			fmt.Fprintf(os.Stderr, "nftables benchmarks: %s\n", why)
			os.Exit(1)
		}
		// The benchmarks skip themselves (inNetns is unset).
		os.Exit(m.Run())
	}
	cmd := exec.Command("unshare", append([]string{"--net", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), inNetns+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() > 0 {
			os.Exit(cmd.ProcessState.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "running the benchmarks in a new network namespace: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// benchRules is n LoadBalancer services of one TCP port each, eps ready
// node-local endpoints apiece: VIPs from 198.18.0.0/15 (benchmarking
// range), endpoints from 10.0.0.0/8, all distinct.
func benchRules(n, eps int) []forwarding.Rule {
	rules := make([]forwarding.Rule, n)
	for i := range n {
		r := forwarding.Rule{Key: forwarding.Key{
			VIP:      netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}),
			Protocol: forwarding.TCP, Port: 80,
		}}
		for j := range eps {
			k := i*eps + j
			r.Endpoints = append(r.Endpoints, netip.AddrPortFrom(
				netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}), 8080))
		}
		rules[i] = r
	}
	return rules
}

func benchSetup(b *testing.B) {
	b.Helper()
	if os.Getenv(inNetns) == "" {
		b.Skip("needs root, nft and unshare (run with make bench-dataplane)")
	}
}

func nftCmd(b *testing.B, args ...string) {
	b.Helper()
	if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
		b.Fatalf("nft %v: %v: %s", args, err, out)
	}
}

func deleteTable(b *testing.B) {
	b.Helper()
	nftCmd(b, "add", "table", "inet", Table)
	nftCmd(b, "delete", "table", "inet", Table)
}

// newSyncer is New, closed when the test or benchmark ends.
func newSyncer(tb testing.TB) *Syncer {
	tb.Helper()
	s, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func mustSync(b *testing.B, s *Syncer, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key, want Kind) Result {
	b.Helper()
	res, err := s.Sync(context.Background(), rules, changed, false)
	if err != nil {
		b.Fatalf("Sync: %v", err)
	}
	if res.Kind != want {
		b.Fatalf("Sync did a %s sync (%s), want %s", res.Kind, res.Reason, want)
	}
	return res
}

// selfCPU is this process's own CPU time, user and system: diffing,
// encoding the transaction, and (system) the kernel applying it, which
// runs in the sending process's sendmsg.
func selfCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// statusKiB reads a field such as VmRSS or VmHWM from /proc/self/status.
func statusKiB(b *testing.B, field string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// counts reads the table back once, outside the timer, and reports its
// size the way the kube-proxy figures count: rules, chains, named
// map elements (verdict map and backends maps), and the numgen entries
// (backends elements).
func counts(b *testing.B, nServices, eps int) {
	b.Helper()
	start := time.Now()
	out, err := exec.Command("nft", "-j", "list", "table", "inet", Table).Output()
	if err != nil {
		b.Fatalf("nft -j list table inet %s: %v", Table, err)
	}
	listTook := time.Since(start)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		b.Fatalf("parsing nft -j output: %v", err)
	}
	var rules, chains, elems int
	for _, obj := range doc.Nftables {
		if _, ok := obj["chain"]; ok {
			chains++
		}
		if _, ok := obj["rule"]; ok {
			rules++
		}
		if raw, ok := obj["map"]; ok {
			var m struct{ Elem []json.RawMessage }
			_ = json.Unmarshal(raw, &m)
			elems += len(m.Elem)
		}
	}
	// The three fixed chains (four rules), and one endpoint chain of one
	// rule for each endpoint count from 1 to eps: a full sync makes them
	// all, so that a Service losing an endpoint needs no new chain.
	if want := 3 + eps; chains != want {
		b.Errorf("%d chains in the kernel, want %d", chains, want)
	}
	if want := 4 + eps; rules != want {
		b.Errorf("%d rules in the kernel, want %d", rules, want)
	}
	if want := nServices * (1 + eps); elems != want {
		b.Errorf("%d map elements in the kernel, want %d", elems, want)
	}
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(float64(chains), "chains")
	b.ReportMetric(float64(elems), "map-elements")
	b.ReportMetric(float64(nServices*eps), "numgen-entries")
	b.ReportMetric(listTook.Seconds(), "nft-list-s(untimed)")
}

// syncFigures times each sync and reports, per sync: wall seconds, our
// CPU (go-cpu: user + system; sys alone is mostly the kernel's work on the
// netlink transaction, done in our sendmsg; no nft process runs), and the
// transaction's size.
type syncFigures struct {
	n               int
	wall, user, sys time.Duration
	ops             int
	u0, y0          time.Duration
	t0              time.Time
}

func (f *syncFigures) start(b *testing.B) {
	f.u0, f.y0 = selfCPU()
	f.t0 = time.Now()
	b.StartTimer()
}

func (f *syncFigures) stop(b *testing.B, res Result) {
	b.StopTimer()
	f.wall += time.Since(f.t0)
	u, y := selfCPU()
	f.user += u - f.u0
	f.sys += y - f.y0
	f.ops += res.Operations
	f.n++
}

func (f *syncFigures) report(b *testing.B) {
	n := float64(f.n)
	b.ReportMetric(f.wall.Seconds()/n, "s/sync")
	b.ReportMetric((f.user+f.sys).Seconds()/n, "go-cpu-s/sync")
	b.ReportMetric(f.sys.Seconds()/n, "sys-s/sync")
	b.ReportMetric(float64(f.ops)/n, "ops/sync")
}

// buildCost is how long our side alone takes to compute a full
// transaction and encode it as netlink messages (no kernel), and its size.
func buildCost(rules []forwarding.Rule) (bytes int, took time.Duration) {
	start := time.Now()
	want := make(map[forwarding.Key][]netip.AddrPort, len(rules))
	for _, r := range rules {
		want[r.Key] = r.Endpoints
	}
	tx := newNlTx(nil)
	(&Syncer{}).full(tx, want)
	tx.closeElems()
	return len(tx.batch.b), time.Since(start)
}

func reportMemory(b *testing.B) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(statusKiB(b, "VmRSS")/1024, "RSS-MiB")
	b.ReportMetric(statusKiB(b, "VmHWM")/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
}

// BenchmarkFullSync is the speaker's first sync after a restart, with 10
// endpoints per service: "absent" with table inet ironlb deleted, "present"
// with the same table already in the kernel (the speaker's new Syncer
// replaces it in one transaction). The Syncer is created outside the timer.
func BenchmarkFullSync(b *testing.B) {
	const eps = 10
	for _, n := range []int{1000, 10000} {
		rules := benchRules(n, eps)
		byKey := forwarding.Merge(rules)
		for _, table := range []string{"absent", "present"} {
			b.Run(fmt.Sprintf("services=%d/table=%s", n, table), func(b *testing.B) {
				benchSetup(b)
				b.StopTimer()
				deleteTable(b)
				if table == "present" {
					mustSync(b, newSyncer(b), byKey, nil, Full)
				}
				var f syncFigures
				for range b.N {
					s := newSyncer(b)
					if table == "absent" {
						deleteTable(b)
					}
					runtime.GC()
					f.start(b)
					res := mustSync(b, s, byKey, nil, Full)
					f.stop(b, res)
				}
				f.report(b)
				bytes, took := buildCost(rules)
				b.ReportMetric(float64(bytes)/1e6, "tx-MB")
				b.ReportMetric(took.Seconds(), "go-build-tx-s")
				reportMemory(b)
				counts(b, n, eps)
				deleteTable(b)
			})
		}
	}
}

// BenchmarkEndpointChange is one endpoint of one service replaced, with
// 10,000 services of 10 endpoints in place: a partial sync, which also
// checks that the table is intact (a count of the table's rules). With
// changes=unknown the Syncer compares every key, as when the speaker
// computed its rules again; with changes=known it is told the one key
// that changed, as after the speaker's in-place update.
func BenchmarkEndpointChange(b *testing.B) {
	const n, eps = 10000, 10
	for _, known := range []bool{false, true} {
		b.Run(fmt.Sprintf("services=%d/changes=%s", n, knownName(known)), func(b *testing.B) {
			benchSetup(b)
			b.StopTimer()
			deleteTable(b)
			rules := forwarding.Merge(benchRules(n, eps))
			keys := sortedKeys(rules)
			s := newSyncer(b)
			mustSync(b, s, rules, nil, Full)
			var f syncFigures
			changed := make([]forwarding.Key, 1)
			for i := range b.N {
				changed[0] = moveEndpoint(rules, keys, i)
				runtime.GC()
				f.start(b)
				res := mustSync(b, s, rules, knownOnly(known, changed), Partial)
				f.stop(b, res)
			}
			f.report(b)
			reportMemory(b)
			counts(b, n, eps)
			deleteTable(b)
		})
	}
}

func knownName(known bool) string {
	if known {
		return "known"
	}
	return "unknown"
}

// knownOnly is changed when known, else nil (unknown).
func knownOnly(known bool, changed []forwarding.Key) []forwarding.Key {
	if known {
		return changed
	}
	return nil
}

// discardTx encodes a transaction as netlink messages and sends none.
type discardTx struct{ *nlTx }

func (t discardTx) run(context.Context) error {
	t.closeElems()
	return t.err
}

// noKernel is a Syncer whose transactions are encoded but never sent and
// whose table is always intact, holding the rules counted in have: the Go
// side of a sync alone, no root, no kernel, nothing else on the CPU.
func noKernel(have map[string]int) *Syncer {
	return &Syncer{newTx: func() tx { return discardTx{newNlTx(nil)} },
		rules: func(context.Context) (map[string]int, error) { return have, nil }}
}

// moveEndpoint gives the first endpoint of one service (keys picks it,
// i decides which), in a new list as the speaker makes one, an address no
// other endpoint has (benchRules' are in 10.0.0.0/16), and returns its
// key.
func moveEndpoint(rules map[forwarding.Key]forwarding.Rule, keys []forwarding.Key, i int) forwarding.Key {
	k := keys[(i*7919)%len(keys)]
	r := rules[k]
	eps := slices.Clone(r.Endpoints)
	eps[0] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200 + byte(i>>16), byte(i >> 8), byte(i)}), 8080)
	r.Endpoints = eps
	rules[k] = r
	return k
}

// BenchmarkEndpointCountChange is one service of 10,000 losing its last
// endpoint and getting it back, in turn: each change moves the service to
// the endpoint chain of another endpoint count, as an endpoint going
// unready does in a cluster.
func BenchmarkEndpointCountChange(b *testing.B) {
	const n, eps = 10000, 10
	benchSetup(b)
	b.StopTimer()
	deleteTable(b)
	rules := forwarding.Merge(benchRules(n, eps))
	k := sortedKeys(rules)[0]
	all := rules[k].Endpoints
	s := newSyncer(b)
	mustSync(b, s, rules, nil, Full)
	var f syncFigures
	for i := range b.N {
		r := rules[k]
		r.Endpoints = all
		if i%2 == 0 {
			r.Endpoints = all[: len(all)-1 : len(all)-1]
		}
		rules[k] = r
		runtime.GC()
		f.start(b)
		res := mustSync(b, s, rules, []forwarding.Key{k}, Partial)
		f.stop(b, res)
	}
	f.report(b)
	deleteTable(b)
}

// BenchmarkEndpointChangeGo is BenchmarkEndpointChange's Go side: one
// endpoint of one service replaced among 10,000 services of 10 endpoints,
// diffed and encoded as netlink messages that are never sent. It runs
// anywhere, and is what a sync costs this process before the kernel's
// share.
func BenchmarkEndpointChangeGo(b *testing.B) {
	const n, eps = 10000, 10
	// The fixed chains, and the endpoint chains a full sync makes: one
	// for each count up to eps.
	have := map[string]int{chainServices: 2, "prerouting": 1, "output": 1}
	for c := 1; c <= eps; c++ {
		have[epsOf(forwarding.Key{Protocol: forwarding.TCP}, c).name()] = 1
	}
	for _, known := range []bool{false, true} {
		b.Run(fmt.Sprintf("services=%d/changes=%s", n, knownName(known)), func(b *testing.B) {
			rules := forwarding.Merge(benchRules(n, eps))
			keys := sortedKeys(rules)
			s := noKernel(have)
			mustSync(b, s, rules, nil, Full)
			changed := make([]forwarding.Key, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				changed[0] = moveEndpoint(rules, keys, i)
				if res := mustSync(b, s, rules, knownOnly(known, changed), Partial); res.Operations != 2 {
					b.Fatalf("%d operations, want 2", res.Operations)
				}
			}
		})
	}
}
