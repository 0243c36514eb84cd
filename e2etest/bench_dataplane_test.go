package e2etest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// BenchmarkDataplaneVsKubeProxy measures IronLB's nftables dataplane and
// kube-proxy's nftables mode side by side, in one lab, against one API
// server and the same LoadBalancer Services of ten endpoints each:
//
//   - IronLB's speaker on node1 (the only node an L2Advertisement selects,
//     so it forwards every Service; the ten endpoints are on node1);
//   - kube-proxy v1.37.2 (built by hack/build-k8s.sh) on node2, which
//     programs every Service whatever node it runs on.
//
// For 1,000 and then 10,000 Services it reports each one's full sync (the
// process restarted with its table in place, and with it deleted), one
// endpoint change (the time from the EndpointSlice update to the sync
// that carries it, and that sync's own cost) and RSS (the median and the
// largest of 13 readings over the minute after the Services settle, as
// each process runs: set GOGC or MEMORY_LIMIT in the environment to see
// them under a collector setting or the DaemonSet's limit). Both report their
// syncs in their own metrics (ironlb_dataplane_sync_duration_seconds,
// kubeproxy_sync_{full,partial}_proxy_rules_duration_seconds and the
// last-sync timestamps), read from outside; nothing is timed by listing
// the ruleset. kube-proxy waits at least its --min-sync-period (1 s by
// default) between syncs; that is part of its change latency, as it is in
// a cluster.
//
// Run: make bench-dataplane (sets IRONLB_KUBE_PROXY). To iterate on the
// speaker alone, IRONLB_KUBE_PROXY=none leaves kube-proxy out, and
// IRONLB_BENCH_SIZES (say "10000") picks the sizes, and IRONLB_BENCH_PROFILE
// names a directory for the speaker's heap profile after each settle and
// its CPU profile over the endpoint changes.
func BenchmarkDataplaneVsKubeProxy(b *testing.B) {
	kp := os.Getenv("IRONLB_KUBE_PROXY")
	if kp == "" {
		b.Skip("IRONLB_KUBE_PROXY names no kube-proxy binary: run make bench-dataplane")
	}
	sizes := []int{1000, 10000}
	if env := os.Getenv("IRONLB_BENCH_SIZES"); env != "" {
		sizes = nil
		for _, f := range strings.Fields(env) {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 || n > 30000 {
				b.Fatalf("IRONLB_BENCH_SIZES: %q is not a number of Services up to 30000", f)
			}
			sizes = append(sizes, n)
		}
	}
	speakerArgs := []string{"--dataplane=nftables", "--profiling", "--log-level=debug"}
	l := ownLab(b, 240, "dpk", func(c *lab.ClusterConfig) { c.SpeakerArgs = speakerArgs })
	ctx := context.Background()
	c, err := l.Client()
	if err != nil {
		b.Fatal(err)
	}
	d := &dpBench{b: b, lab: l, c: c, kubeProxy: kp, speakerArgs: speakerArgs}
	if kp == "none" {
		d.kubeProxy = ""
	}
	d.setup(ctx)
	d.startKubeProxy(ctx, false)

	// One benchmark, no sub-benchmarks: the testing package runs a parent
	// benchmark's body more than once, and this lab is built once.
	created := 0
	for _, n := range sizes {
		d.createServices(ctx, created, n)
		created = n
		d.settle(ctx, n, time.Now())

		var rows []string
		report := func(what string, ironlb, kubeProxy float64, unit string) {
			ratio := "-"
			if ironlb > 0 {
				ratio = fmt.Sprintf("%.1fx", kubeProxy/ironlb)
			}
			rows = append(rows, fmt.Sprintf("| %s | %.3f %s | %.3f %s | %s |", what, ironlb, unit, kubeProxy, unit, ratio))
			metric := strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "").Replace(what)
			b.ReportMetric(ironlb, fmt.Sprintf("ironlb-%s-%s@%d", metric, unit, n))
			b.ReportMetric(kubeProxy, fmt.Sprintf("kube-proxy-%s-%s@%d", metric, unit, n))
		}
		ilbRSS, ilbMax, kpRSS, kpMax := d.memory()
		for _, deleted := range []bool{false, true} {
			table := "present"
			if deleted {
				table = "deleted"
			}
			ilb := d.ironlbFullSync(ctx, deleted)
			kpf := d.kubeProxyFullSync(ctx, deleted)
			report("full sync, table "+table, ilb, kpf, "s")
		}
		d.settle(ctx, n, time.Time{})
		d.quiet(ctx)
		// kube-proxy can take minutes per change at 10,000 Services.
		runs := 3
		if d.kubeProxy == "" {
			runs = 9
		}
		d.profile("heap?gc=1", fmt.Sprintf("heap-%d.pprof", n))
		profiled := make(chan struct{})
		go func() {
			defer close(profiled)
			d.profile("profile?seconds=20", fmt.Sprintf("cpu-%d.pprof", n))
		}()
		lat, cost, kpLat, kpCost, missed := d.endpointChanges(ctx, runs)
		<-profiled
		if dir := os.Getenv("IRONLB_BENCH_PROFILE"); dir != "" {
			if log, err := os.ReadFile(d.lab.Process("speaker-node1").Log); err == nil {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("speaker-%d.log", n)), log, 0o644)
			}
		}
		report("endpoint change landed (p50)", ms(lat), ms(kpLat), "ms")
		report("that sync's own cost (p50)", ms(cost), ms(kpCost), "ms")
		report(fmt.Sprintf("endpoint changes of %d not synced in 5 minutes", runs), float64(missed[0]), float64(missed[1]), "runs")
		report("RSS in the minute after the first settle, median", float64(ilbRSS)/(1<<20), float64(kpRSS)/(1<<20), "MiB")
		report("RSS in the minute after the first settle, max", float64(ilbMax)/(1<<20), float64(kpMax)/(1<<20), "MiB")
		logTable(b, fmt.Sprintf("%d LoadBalancer Services x 10 endpoints\n| | IronLB speaker | kube-proxy nftables | kube-proxy / IronLB |\n|---|---|---|---|\n%s",
			n, strings.Join(rows, "\n")))
	}
}

const (
	benchDPNS        = "bench-dp"
	kubeProxyMetrics = 10249
	benchDPNodeLabel = "bench.ironlb.io/forwards"
)

type dpBench struct {
	b           testing.TB
	lab         *lab.Lab
	c           client.Client
	kubeProxy   string
	speakerArgs []string
}

// setup makes the namespace, a pool big enough for 10,000 Services and an
// L2Advertisement that selects node1 alone.
func (d *dpBench) setup(ctx context.Context) {
	var node corev1.Node
	if err := d.c.Get(ctx, client.ObjectKey{Name: "node1"}, &node); err != nil {
		d.b.Fatal(err)
	}
	patch := client.MergeFrom(node.DeepCopy())
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels[benchDPNodeLabel] = "true"
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchDPNS}},
		&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: benchDPNS, Namespace: lab.Namespace},
			Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.18.0.0/17"}}},
		&v1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: benchDPNS, Namespace: lab.Namespace},
			Spec: v1beta1.L2AdvertisementSpec{IPAddressPools: []string{benchDPNS},
				NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{benchDPNodeLabel: "true"}}}}},
	}
	if err := d.c.Patch(ctx, &node, patch); err != nil {
		d.b.Fatal(err)
	}
	// node1's speaker alone: a restarted speaker then has its quorum at
	// its first election, so its first sync is the full one with every
	// Service in it, not an empty table filled by the next partial sync
	// once memberlist has joined the others.
	for _, n := range []string{"node2", "node3"} {
		if err := d.lab.Process("speaker-" + n).Stop(10 * time.Second); err != nil {
			d.b.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + n, Namespace: lab.Namespace}}
		if err := d.c.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
			d.b.Fatal(err)
		}
	}
	for _, o := range objs {
		if err := d.c.Create(ctx, o); err != nil {
			d.b.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// startKubeProxy starts kube-proxy in node2's namespace, after deleting
// its tables if asked.
func (d *dpBench) startKubeProxy(ctx context.Context, deleteTables bool) {
	if d.kubeProxy == "" {
		return
	}
	nd, _ := d.lab.Network.Node("node2")
	if deleteTables {
		for _, fam := range []string{"ip", "ip6"} {
			_, _ = d.lab.Network.Exec(ctx, "node2", "nft", "delete", "table", fam, "kube-proxy")
		}
	}
	_, err := d.lab.StartProcess("kube-proxy", nil, "ip", "netns", "exec", nd.NS, d.kubeProxy,
		"--kubeconfig="+d.lab.Kubeconfig,
		"--hostname-override=node2",
		"--proxy-mode=nftables",
		"--metrics-bind-address="+netip.AddrPortFrom(nd.Mgmt, kubeProxyMetrics).String(),
		"--healthz-bind-address="+netip.AddrPortFrom(nd.Mgmt, 10256).String(),
		// Conntrack sysctls are not namespaced; leave the host's alone.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
	)
	if err != nil {
		d.b.Fatal(err)
	}
}

// createServices creates Services dp-<from>..dp-<to-1>, each with an
// EndpointSlice of ten ready endpoints on node1, with 16 goroutines.
func (d *dpBench) createServices(ctx context.Context, from, to int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				name := fmt.Sprintf("dp-%05d", i)
				es := &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: benchDPNS, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
				}
				for j := range 10 {
					k := i*10 + j
					es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
						Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 128+k>>16, k>>8&255, k&255)},
						NodeName:   ptr("node1"),
						Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
					})
				}
				for _, o := range []client.Object{es, benchService(benchDPNS, name, "")} {
					if err := d.c.Create(ctx, o); err != nil {
						errs <- fmt.Errorf("creating %s: %w", name, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		d.b.Fatal(err)
	}
}

// settle waits until every Service has its address, the speaker forwards
// all n, and kube-proxy has no change pending and, when since is set, has
// synced after it.
func (d *dpBench) settle(ctx context.Context, n int, since time.Time) {
	deadline := time.Now().Add(15 * time.Minute)
	wait := func(what string, ok func() (bool, string)) {
		for {
			done, state := ok()
			if done {
				return
			}
			if time.Now().After(deadline) {
				d.b.Fatalf("waiting for %s: %s", what, state)
			}
			time.Sleep(time.Second)
		}
	}
	wait("addresses", func() (bool, string) {
		var list corev1.ServiceList
		if err := d.c.List(ctx, &list, client.InNamespace(benchDPNS)); err != nil {
			return false, err.Error()
		}
		got := 0
		for _, s := range list.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				got++
			}
		}
		return got == n, fmt.Sprintf("%d of %d Services have an address", got, n)
	})
	wait("the speaker", func() (bool, string) {
		v, err := d.metric("node1", lab.SpeakerMetricsPort, "ironlb_dataplane_rules")
		return err == nil && int(v) == n, fmt.Sprintf("speaker forwards %v (%v)", v, err)
	})
	wait("kube-proxy", func() (bool, string) {
		if d.kubeProxy == "" {
			return true, ""
		}
		pending := 0.0
		for _, m := range []string{"kubeproxy_sync_proxy_rules_service_changes_pending", "kubeproxy_sync_proxy_rules_endpoint_changes_pending"} {
			v, err := d.metric("node2", kubeProxyMetrics, m)
			if err != nil {
				return false, err.Error()
			}
			pending += v
		}
		last, err := d.metric("node2", kubeProxyMetrics, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`)
		return err == nil && pending == 0 && (since.IsZero() || last > unixSeconds(since)),
			fmt.Sprintf("%v changes pending, last sync %v (%v)", pending, last, err)
	})
}

// quiet waits until the speaker has synced nothing for two seconds (at
// most a minute): a change measured while it still works through a restart
// measures the restart.
func (d *dpBench) quiet(ctx context.Context) {
	const name = "ironlb_speaker_sync_duration_seconds_count"
	last, _ := d.metric("node1", lab.SpeakerMetricsPort, name)
	since := time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(250 * time.Millisecond)
		n, err := d.metric("node1", lab.SpeakerMetricsPort, name)
		if err != nil || n != last {
			last, since = n, time.Now()
			continue
		}
		if time.Since(since) >= 2*time.Second {
			return
		}
	}
	fmt.Printf("the speaker did not go quiet for 2 s within a minute (%v syncs); its log ends:\n%s\n", last, d.logTail("node1"))
}

// ironlbFullSync restarts node1's speaker, after deleting its table if
// asked, and returns its first (full) sync's duration from its metrics.
func (d *dpBench) ironlbFullSync(ctx context.Context, deleteTable bool) float64 {
	if err := d.lab.Process("speaker-node1").Stop(10 * time.Second); err != nil {
		d.b.Fatal(err)
	}
	if deleteTable {
		if out, err := d.lab.Network.Exec(ctx, "node1", "nft", "delete", "table", "inet", "ironlb"); err != nil {
			d.b.Fatalf("deleting table inet ironlb: %v\n%s", err, out)
		}
	}
	if err := d.lab.StartSpeaker(ctx, speakerBinary(d.b), "node1", d.speakerArgs...); err != nil {
		d.b.Fatal(err)
	}
	sum, err := d.metric("node1", lab.SpeakerMetricsPort, `ironlb_dataplane_sync_duration_seconds_sum{kind="full"}`)
	if err != nil {
		d.b.Fatalf("speaker reports no full sync after its restart: %v", err)
	}
	return sum
}

// kubeProxyFullSync restarts kube-proxy, after deleting its tables if
// asked, and returns its first full sync's duration from its metrics.
func (d *dpBench) kubeProxyFullSync(ctx context.Context, deleteTables bool) float64 {
	if d.kubeProxy == "" {
		return 0
	}
	if err := d.lab.Process("kube-proxy").Stop(10 * time.Second); err != nil {
		d.b.Fatal(err)
	}
	d.startKubeProxy(ctx, deleteTables)
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		count, err := d.metric("node2", kubeProxyMetrics, `kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"}`)
		if err == nil && count >= 1 {
			sum, err := d.metric("node2", kubeProxyMetrics, `kubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv4"}`)
			if err != nil {
				d.b.Fatal(err)
			}
			return sum / count
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.b.Fatal("kube-proxy made no full sync in 10 minutes")
	return 0
}

// endpointChanges flips one endpoint of dp-00000 between ready and not
// ready runs times. For each it takes, from each process's metrics, the
// time from the update call to the first sync after it, and the cost of
// the partial syncs in between; it returns the medians, and how many runs
// each did not sync within 5 minutes.
func (d *dpBench) endpointChanges(ctx context.Context, runs int) (lat, cost, kpLat, kpCost time.Duration, missed [2]int) {
	type probe struct {
		node, last, sum, count string
		port                   int
		lat, cost              []time.Duration
	}
	probes := []*probe{
		{node: "node1", port: lab.SpeakerMetricsPort, last: "ironlb_dataplane_last_sync_timestamp_seconds",
			sum: `ironlb_dataplane_sync_duration_seconds_sum{kind="partial"}`, count: `ironlb_dataplane_sync_duration_seconds_count{kind="partial"}`},
		{node: "node2", port: kubeProxyMetrics, last: `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`,
			sum: `kubeproxy_sync_partial_proxy_rules_duration_seconds_sum{ip_family="IPv4"}`, count: `kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"}`},
	}
	if d.kubeProxy == "" {
		probes = probes[:1]
	}
	speakerSync := func() (sum, count float64) {
		sum, _ = d.metric("node1", lab.SpeakerMetricsPort, "ironlb_speaker_sync_duration_seconds_sum")
		count, _ = d.metric("node1", lab.SpeakerMetricsPort, "ironlb_speaker_sync_duration_seconds_count")
		return sum, count
	}
	for i := range runs {
		var es discoveryv1.EndpointSlice
		if err := d.c.Get(ctx, client.ObjectKey{Namespace: benchDPNS, Name: "dp-00000"}, &es); err != nil {
			d.b.Fatal(err)
		}
		// Flip it: a write of what is already there changes nothing and
		// no one syncs for it. (Setting it by the run's number did that to
		// the first change at 10,000 after three at 1,000, which then timed
		// the next periodic sync: 2-4.5 s.)
		ready := es.Endpoints[0].Conditions.Ready
		es.Endpoints[0].Conditions.Ready = ptr(ready != nil && !*ready)
		sums, counts := map[*probe]float64{}, map[*probe]float64{}
		for _, p := range probes {
			sums[p], _ = d.metric(p.node, p.port, p.sum)
			counts[p], _ = d.metric(p.node, p.port, p.count)
		}
		syncSum, syncCount := speakerSync()
		t0 := time.Now()
		if err := d.c.Update(ctx, &es); err != nil {
			d.b.Fatal(err)
		}
		for _, p := range probes {
			// kube-proxy's syncs take tens of seconds at 10,000 Services.
			deadline := time.Now().Add(5 * time.Minute)
			for {
				// The sync count with the timestamp, from one scrape: a
				// second sync since the change (a periodic one, say)
				// would make the timestamp a later one's.
				v, err := d.metrics(p.node, p.port, p.last, p.count)
				if err == nil && v[0] > unixSeconds(t0) {
					p.lat = append(p.lat, time.Duration((v[0]-unixSeconds(t0))*float64(time.Second)))
					if v[1]-counts[p] > 1 {
						fmt.Printf("%s: %v partial syncs since the change; its latency is the last one's\n", p.node, v[1]-counts[p])
					}
					break
				}
				if time.Now().After(deadline) {
					// Say so and go on: the other figures still hold.
					// A figure, not a failure of ours: counted in the table.
					d.b.Logf("%s did not sync in 5 minutes after an endpoint change; its log ends:\n%s", p.node, d.logTail(p.node))
					p.lat = append(p.lat, -1)
					missed[slices.Index(probes, p)]++
					break
				}
				// Not faster: the timestamp says when the sync ended, so
				// polling only delays reading it. Rendering the speaker's
				// 10,000 ironlb_layer2_announced series every 50 ms took
				// most of its CPU in a profile, slowing what it measured.
				time.Sleep(250 * time.Millisecond)
			}
			s, _ := d.metric(p.node, p.port, p.sum)
			n, _ := d.metric(p.node, p.port, p.count)
			if n > counts[p] {
				p.cost = append(p.cost, time.Duration((s-sums[p])/(n-counts[p])*float64(time.Second)))
			}
		}
		if l := probes[0].lat[len(probes[0].lat)-1]; l > 500*time.Millisecond {
			fmt.Printf("endpoint change %d took the speaker %v; its log ends:\n%s\n", i, l, d.logTail("node1"))
		}
		if sum, count := speakerSync(); count > syncCount {
			fmt.Printf("endpoint change %d: speaker synced after %v; %v speaker syncs took %.1f ms in all\n", i, probes[0].lat[len(probes[0].lat)-1],
				count-syncCount, (sum-syncSum)*1000)
		}
		time.Sleep(2 * time.Second) // past kube-proxy's minimum sync period
	}
	// The median of the runs that synced at all (a run that did not is
	// reported as an error above).
	med := func(s []time.Duration) time.Duration {
		s = slices.DeleteFunc(s, func(d time.Duration) bool { return d < 0 })
		if len(s) == 0 {
			return 0
		}
		slices.Sort(s)
		return s[len(s)/2]
	}
	if len(probes) == 1 {
		return med(probes[0].lat), med(probes[0].cost), 0, 0, missed
	}
	return med(probes[0].lat), med(probes[0].cost), med(probes[1].lat), med(probes[1].cost), missed
}

// metric reads one sample (name with its labels, as exposed) from the
// /metrics of a process listening on a node's management address.
func (d *dpBench) metric(node string, port int, name string) (float64, error) {
	v, err := d.metrics(node, port, name)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// metrics reads several samples from one scrape.
func (d *dpBench) metrics(node string, port int, names ...string) ([]float64, error) {
	nd, _ := d.lab.Network.Node(node)
	// Uncompressed: gzip is work for the process measured.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	resp, err := hc.Get(fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(nd.Mgmt, uint16(port))))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(names))
	for i, name := range names {
		v, ok := metricValue(string(body), name)
		if !ok {
			return nil, fmt.Errorf("no %s on %s:%d", name, node, port)
		}
		out[i] = v
	}
	return out, nil
}

// logTail is the end of the log of the process measured on node.
func (d *dpBench) logTail(node string) string {
	name := "speaker-node1"
	if node == "node2" {
		name = "kube-proxy"
	}
	b, _ := os.ReadFile(d.lab.Process(name).Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

func (d *dpBench) rss(process string) int64 {
	if process == "kube-proxy" && d.kubeProxy == "" {
		return 0
	}
	v, err := d.lab.Process(process).RSSBytes()
	if err != nil {
		d.b.Fatal(err)
	}
	return v
}

// profile saves one of the speaker's /debug/pprof profiles to
// $IRONLB_BENCH_PROFILE/file, when that is set.
func (d *dpBench) profile(what, file string) {
	dir := os.Getenv("IRONLB_BENCH_PROFILE")
	if dir == "" {
		return
	}
	nd, _ := d.lab.Network.Node("node1")
	hc := &http.Client{Timeout: time.Minute}
	resp, err := hc.Get(fmt.Sprintf("http://%s/debug/pprof/%s", netip.AddrPortFrom(nd.Mgmt, lab.SpeakerMetricsPort), what))
	if err != nil {
		d.b.Errorf("profile %s: %v", what, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), body, 0o644)
	}
	if err != nil {
		d.b.Errorf("profile %s: %v", what, err)
	}
}

// memory samples the RSS of the speaker and of kube-proxy every 5 s for a
// minute and returns each one's median and largest sample, in bytes. A
// Go process's RSS rises and falls with its collector's cycles, and right
// after a burst of work the runtime has not yet returned what it freed:
// one reading says little.
func (d *dpBench) memory() (ilbMedian, ilbMax, kpMedian, kpMax int64) {
	var ilb, kp, anon []int64
	cpu0, err := d.lab.Process("speaker-node1").CPUSeconds()
	if err != nil {
		d.b.Fatal(err)
	}
	for i := range 13 {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		ilb = append(ilb, d.rss("speaker-node1"))
		kp = append(kp, d.rss("kube-proxy"))
		anon = append(anon, d.anon("speaker-node1"))
	}
	cpu1, err := d.lab.Process("speaker-node1").CPUSeconds()
	if err != nil {
		d.b.Fatal(err)
	}
	// Nothing changes in that minute: the CPU is the periodic syncs' and
	// the collector's.
	fmt.Printf("speaker RSS MiB every 5 s: %s (anonymous: %s); CPU %.2f s in the minute\n", mibs(ilb), mibs(anon), cpu1-cpu0)
	med := func(v []int64) int64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	return med(ilb), slices.Max(ilb), med(kp), slices.Max(kp)
}

func mibs(v []int64) string {
	var out []string
	for _, b := range v {
		out = append(out, fmt.Sprintf("%.0f", float64(b)/(1<<20)))
	}
	return strings.Join(out, " ")
}

// anon is a process's anonymous RSS (heap, stacks), without the pages of
// its executable that VmRSS also counts.
func (d *dpBench) anon(process string) int64 {
	v, err := d.lab.Process(process).StatusBytes("RssAnon")
	if err != nil {
		d.b.Fatal(err)
	}
	return v
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
