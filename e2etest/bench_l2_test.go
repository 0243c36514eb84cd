package e2etest

import (
	"bufio"
	"context"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// The layer-2 benchmarks measure, on a network-namespace cluster of their
// own (three nodes, a router, a real API server, the controller and one
// speaker per node), how fast an address moves and appears as seen on the
// wire, and what the speaker costs:
//
//   - BenchmarkL2GracefulFailover: SIGTERM the winning speaker.
//   - BenchmarkL2CrashFailover: SIGKILL it, or cut its switch port.
//   - BenchmarkL2ServiceCreate: Create call to the first ARP answer.
//   - BenchmarkL2SpeakerResources: speaker RSS and CPU with 200 and 1,000
//     Services announced.
//
// The wire is watched from a probe namespace plugged into the LAN switch
// (192.168.100.2): a raw AF_PACKET socket sends a broadcast ARP request
// for the address every 10 ms and timestamps every ARP frame that claims
// the address (answers and gratuitous ARP) in the kernel (SO_TIMESTAMPNS),
// so a busy test process does not skew the figures. Probing from a host of
// its own keeps the router's neighbour table out of it: the router's entry
// (created by one ping) moves only by the gratuitous ARP, as a real
// upstream router's would; `ip -ts monitor neigh` in the router namespace
// timestamps that move.
//
// Run: make bench-l2 (IRONLB_BENCH_L2_RUNS sets the runs per figure,
// default 10).

const (
	benchL2NS     = "bench-l2"
	benchScaleNS  = "bench-scale"
	probeIPv4     = "192.168.100.2"
	failoverVIP   = "192.168.100.100"
	probeInterval = 10 * time.Millisecond
)

var (
	benchL2Once sync.Once
	benchL2Env  *l2bench
	benchL2Err  error
)

// l2bench is the benchmarks' cluster and what they share.
type l2bench struct {
	lab     *lab.Lab
	c       client.Client
	cs      kubernetes.Interface
	speaker string // binary
	probeNS string
	mu      sync.Mutex
	svcs    map[string]bool // Services created in benchL2NS

	// The stopped speaker's log lines about its shutdown, for diagnosis.
	logOff       int64
	shutdownLine string
}

// shutdownLines returns the lines of node's speaker log written since
// e.logOff that tell how it stopped.
func (e *l2bench) shutdownLines(node string) string {
	p := e.lab.Process("speaker-" + node)
	b, err := os.ReadFile(p.Log)
	if err != nil || int64(len(b)) < e.logOff {
		return ""
	}
	var out []string
	for line := range strings.SplitSeq(string(b[e.logOff:]), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "stopped") || strings.Contains(l, "leave") || strings.Contains(l, "error") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}

func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("IRONLB_BENCH_L2_RUNS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// benchCluster starts the benchmarks' lab once per test binary.
func benchCluster(tb testing.TB) *l2bench {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("the lab needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("the lab needs %s: run `make packages`", tool)
		}
	}
	ctrlBin, spkBin := controllerBinary(tb), speakerBinary(tb)
	root := repoRoot(tb)
	benchL2Once.Do(func() {
		benchL2Env, benchL2Err = startBenchCluster(root, ctrlBin, spkBin)
	})
	if benchL2Err != nil {
		tb.Fatalf("starting the benchmark lab: %v", benchL2Err)
	}
	return benchL2Env
}

func startBenchCluster(root, ctrlBin, spkBin string) (*l2bench, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	idx, err := lab.FreeIndex(ctx, 150)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ironlb-bench-l2-")
	if err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("ilbb%d", idx)
	l, err := lab.StartCluster(ctx, lab.ClusterConfig{
		Config:     lab.Config{Dir: dir, Root: root},
		Prefix:     prefix,
		Index:      idx,
		Controller: ctrlBin,
		Speaker:    spkBin,
	})
	if l != nil {
		cleanups = append(cleanups, func() {
			_ = exec.Command("ip", "netns", "del", prefix+"-probe").Run()
			_ = l.Stop()
			_ = os.RemoveAll(dir)
		})
	}
	if err != nil {
		return nil, err
	}
	e := &l2bench{lab: l, speaker: spkBin, probeNS: prefix + "-probe", svcs: map[string]bool{}}
	if e.c, err = l.Client(); err != nil {
		return nil, err
	}
	cfg, err := l.Rest()
	if err != nil {
		return nil, err
	}
	if e.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	// The probe host: one more port on the switch.
	sw := l.Network.NS("sw")
	for _, argv := range [][]string{
		{"ip", "netns", "add", e.probeNS},
		{"ip", "-n", e.probeNS, "link", "set", "lo", "up"},
		{"ip", "-n", sw, "link", "add", "sw-probe", "type", "veth", "peer", "name", "eth0", "netns", e.probeNS},
		{"ip", "-n", sw, "link", "set", "sw-probe", "master", "br0", "up"},
		{"ip", "-n", e.probeNS, "link", "set", "eth0", "up"},
		{"ip", "-n", e.probeNS, "addr", "add", probeIPv4 + "/24", "dev", "eth0"},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	for _, ns := range []string{benchL2NS, benchScaleNS} {
		if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	pools := []*v1beta1.IPAddressPool{
		{ObjectMeta: metav1.ObjectMeta{Name: benchL2NS, Namespace: lab.Namespace}, Spec: v1beta1.IPAddressPoolSpec{
			Addresses:         []string{"192.168.100.100-192.168.100.149"},
			ServiceAllocation: &v1beta1.ServiceAllocation{Namespaces: []string{benchL2NS}},
		}},
		// 1,024 on-link addresses for the resource figures.
		{ObjectMeta: metav1.ObjectMeta{Name: benchScaleNS, Namespace: lab.Namespace}, Spec: v1beta1.IPAddressPoolSpec{
			Addresses:         []string{"192.168.101.0/24", "192.168.102.0/24", "192.168.103.0/24", "192.168.104.0/24"},
			ServiceAllocation: &v1beta1.ServiceAllocation{Namespaces: []string{benchScaleNS}},
		}},
	}
	for _, p := range pools {
		if err := e.c.Create(ctx, p); err != nil {
			return nil, err
		}
	}
	adv := &v1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: lab.Namespace},
		Spec: v1beta1.L2AdvertisementSpec{IPAddressPools: []string{benchL2NS, benchScaleNS}}}
	if err := e.c.Create(ctx, adv); err != nil {
		return nil, err
	}
	return e, nil
}

// --- probing --------------------------------------------------------------

// arpEvent is one ARP frame that claimed the probed address.
type arpEvent struct {
	at   time.Time // kernel receive time
	mac  string
	kind string // "answer" (to our probe) or "garp"
}

// arpProber sends a broadcast who-has for one address every 10 ms from the
// probe namespace and records every frame that claims the address.
type arpProber struct {
	fd      int
	target  netip.Addr
	srcMAC  net.HardwareAddr
	srcIP   netip.Addr
	stop    chan struct{}
	wg      sync.WaitGroup
	sent    atomic.Int64
	mu      sync.Mutex
	events  []arpEvent
	started time.Time
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacketSocket opens an ARP packet socket on ifname inside netns. The
// socket stays in that namespace; the thread that entered it is thrown
// away with its goroutine.
func openPacketSocket(netns, ifname string) (int, *net.Interface, error) {
	type res struct {
		fd  int
		ifi *net.Interface
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		r := res{fd: -1}
		defer func() { ch <- r }()
		f, err := os.Open("/run/netns/" + netns)
		if err != nil {
			r.err = err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("entering netns %s: %w", netns, err)
			return
		}
		if r.ifi, r.err = net.InterfaceByName(ifname); r.err != nil {
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			r.err = err
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: r.ifi.Index}); err != nil {
			unix.Close(fd)
			r.err = err
			return
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			r.err = err
			return
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			r.err = err
			return
		}
		r.fd = fd
	}()
	r := <-ch
	return r.fd, r.ifi, r.err
}

func (e *l2bench) startProber(tb testing.TB, target string) *arpProber {
	tb.Helper()
	fd, ifi, err := openPacketSocket(e.probeNS, "eth0")
	if err != nil {
		tb.Fatalf("opening the ARP prober: %v", err)
	}
	p := &arpProber{fd: fd, target: netip.MustParseAddr(target), srcMAC: ifi.HardwareAddr,
		srcIP: netip.MustParseAddr(probeIPv4), stop: make(chan struct{}), started: time.Now()}
	p.wg.Add(2)
	go p.send()
	go p.receive()
	tb.Cleanup(p.Close)
	return p
}

func (p *arpProber) send() {
	defer p.wg.Done()
	f := make([]byte, 60) // minimum Ethernet frame, zero padded
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], p.srcMAC)
	encbin.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	encbin.BigEndian.PutUint16(f[14:], 1)      // Ethernet
	encbin.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	encbin.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:28], p.srcMAC)
	src, dst := p.srcIP.As4(), p.target.As4()
	copy(f[28:32], src[:])
	copy(f[38:42], dst[:])
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		if _, err := unix.Write(p.fd, f); err == nil {
			p.sent.Add(1)
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *arpProber) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	oob := make([]byte, 128)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(p.fd, buf, oob, 0)
		if err != nil || n < 42 {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
					sec := int64(encbin.NativeEndian.Uint64(m.Data[0:8]))
					nsec := int64(encbin.NativeEndian.Uint64(m.Data[8:16]))
					at = time.Unix(sec, nsec)
				}
			}
		}
		f := buf[:n]
		if encbin.BigEndian.Uint16(f[12:14]) != unix.ETH_P_ARP {
			continue
		}
		spa, _ := netip.AddrFromSlice(f[28:32])
		tpa, _ := netip.AddrFromSlice(f[38:42])
		if spa != p.target {
			continue
		}
		kind := "garp"
		if op := encbin.BigEndian.Uint16(f[20:22]); op == 2 && tpa == p.srcIP {
			kind = "answer"
		}
		ev := arpEvent{at: at, mac: net.HardwareAddr(f[22:28]).String(), kind: kind}
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
	}
}

// Close stops the prober; it may be called more than once.
func (p *arpProber) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.wg.Wait()
	unix.Close(p.fd)
}

// since returns the frames received at or after t.
func (p *arpProber) since(t time.Time) []arpEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearchFunc(p.events, t, func(e arpEvent, t time.Time) int { return e.at.Compare(t) })
	return slices.Clone(p.events[i:])
}

// first returns the first frame after t matching ok.
func (p *arpProber) first(t time.Time, ok func(arpEvent) bool) (arpEvent, bool) {
	for _, ev := range p.since(t) {
		if ok(ev) {
			return ev, true
		}
	}
	return arpEvent{}, false
}

// settledOwner waits until, for the last `quiet`, exactly one MAC answered
// the probes, nobody sent gratuitous ARP, and at least one answer came, and
// returns that MAC.
func (p *arpProber) settledOwner(notBefore time.Time, quiet, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		from := time.Now().Add(-quiet)
		if from.After(notBefore) {
			macs := map[string]bool{}
			garp := false
			for _, ev := range p.since(from) {
				macs[ev.mac] = true
				garp = garp || ev.kind == "garp"
			}
			keys := mapsKeys(macs)
			slices.Sort(keys)
			last = fmt.Sprint(keys, " garp=", garp)
			if len(macs) == 1 && !garp {
				for m := range macs {
					return m, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no single steady ARP owner of %s after %s (last window: %s)", p.target, timeout, last)
}

func mapsKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// neighMonitor follows the router's neighbour entry for one address.
type neighMonitor struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen []neighEvent
	done chan struct{}
}

type neighEvent struct {
	at  time.Time
	mac string
}

func (e *l2bench) startNeighMonitor(tb testing.TB, ip string) *neighMonitor {
	tb.Helper()
	m := &neighMonitor{done: make(chan struct{})}
	m.cmd = exec.Command("ip", "-ts", "-n", e.lab.Network.NS("router"), "monitor", "neigh")
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		tb.Fatalf("ip monitor neigh: %v", err)
	}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// [2026-11-26T13:50:42.759265] 10.9.9.2 dev e0 lladdr 02:00:00:00:00:09 STALE
			line := sc.Text()
			end := strings.IndexByte(line, ']')
			if !strings.HasPrefix(line, "[") || end < 0 {
				continue
			}
			f := strings.Fields(line[end+1:])
			if len(f) < 1 || f[0] != ip {
				continue
			}
			i := slices.Index(f, "lladdr")
			if i < 0 || i+1 >= len(f) {
				continue
			}
			at, err := time.ParseInLocation("2006-01-02T15:04:05.000000", line[1:end], time.Local)
			if err != nil {
				continue
			}
			m.mu.Lock()
			m.seen = append(m.seen, neighEvent{at: at, mac: strings.ToLower(f[i+1])})
			m.mu.Unlock()
		}
	}()
	// ip needs a moment to subscribe.
	time.Sleep(50 * time.Millisecond)
	tb.Cleanup(m.Close)
	return m
}

func (m *neighMonitor) first(t time.Time, mac string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range m.seen {
		if !ev.at.Before(t) && ev.mac == mac {
			return ev.at, true
		}
	}
	return time.Time{}, false
}

func (m *neighMonitor) Close() {
	if m.cmd.Process != nil && m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Kill()
		<-m.done
		_ = m.cmd.Wait()
	}
}

// routerNeigh returns the MAC of the router's entry for ip, or "".
func (e *l2bench) routerNeigh(ip string) string {
	out, _ := exec.Command("ip", "-n", e.lab.Network.NS("router"), "neigh", "show", ip, "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return strings.ToLower(f[i+1])
	}
	return ""
}

// pointRouterAt makes the router's entry for ip hold mac, by deleting a
// wrong one and pinging (the ping itself gets no answer: nobody holds the
// address; its ARP resolution is what counts).
func (e *l2bench) pointRouterAt(ip, mac string) error {
	for range 5 {
		if e.routerNeigh(ip) == mac {
			return nil
		}
		_ = exec.Command("ip", "-n", e.lab.Network.NS("router"), "neigh", "del", ip, "dev", "eth0").Run()
		_ = exec.Command("ip", "netns", "exec", e.lab.Network.NS("router"), "ping", "-c", "1", "-W", "0.3", ip).Run()
	}
	if got := e.routerNeigh(ip); got != mac {
		return fmt.Errorf("router's neighbour entry for %s is %q, want %s", ip, got, mac)
	}
	return nil
}

// --- cluster helpers ----------------------------------------------------------

func (e *l2bench) nodeByMAC(mac string) string {
	for _, nd := range e.lab.Network.Nodes {
		if strings.EqualFold(nd.MAC, mac) {
			return nd.Name
		}
	}
	return "?" + mac
}

func (e *l2bench) macOf(node string) string {
	nd, _ := e.lab.Network.Node(node)
	return strings.ToLower(nd.MAC)
}

// speakerMetrics scrapes one speaker's /metrics.
func (e *l2bench) speakerMetrics(node string) (string, error) {
	nd, _ := e.lab.Network.Node(node)
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(nd.Mgmt, lab.SpeakerMetricsPort)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func metricValue(text, name string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// waitMembers waits until every speaker sees all of them alive.
func (e *l2bench) waitMembers(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = nil
		for _, nd := range e.lab.Network.Nodes {
			text, err := e.speakerMetrics(nd.Name)
			if err != nil {
				last = fmt.Errorf("%s: %w", nd.Name, err)
				break
			}
			if v, _ := metricValue(text, "ironlb_speaker_members_alive"); int(v) != len(e.lab.Network.Nodes) {
				last = fmt.Errorf("%s sees %v members alive", nd.Name, v)
				break
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// announced counts the addresses one speaker announces whose text starts
// with prefix.
func (e *l2bench) announced(node, prefix string) (int, error) {
	text, err := e.speakerMetrics(node)
	if err != nil {
		return 0, err
	}
	return strings.Count(text, `ironlb_layer2_announced{ip="`+prefix), nil
}

func benchEndpointSlice(ns, svc string, nodes []string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-bench", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for i, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.2", i+1)},
			NodeName:   ptr(n),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	return es
}

func benchService(ns, name, ip string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			Selector:                      map[string]string{"app": name},
			IPFamilyPolicy:                ptr(corev1.IPFamilyPolicySingleStack),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol},
			AllocateLoadBalancerNodePorts: ptr(false),
		},
	}
	if ip != "" {
		svc.Annotations = map[string]string{v1beta1.AnnotationLoadBalancerIPs: ip}
	}
	return svc
}

func (e *l2bench) nodeNames() []string {
	var out []string
	for _, nd := range e.lab.Network.Nodes {
		out = append(out, nd.Name)
	}
	return out
}

// ensureFailoverService creates, once, the Service whose address the
// failover benchmarks move.
func (e *l2bench) ensureFailoverService(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.svcs["failover"] {
		return
	}
	ctx := context.Background()
	if err := e.c.Create(ctx, benchEndpointSlice(benchL2NS, "failover", e.nodeNames())); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	if err := e.c.Create(ctx, benchService(benchL2NS, "failover", failoverVIP)); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	e.svcs["failover"] = true
}

// --- statistics -------------------------------------------------------------

type sample []time.Duration

func (s sample) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	v := slices.Clone(s)
	slices.Sort(v)
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(i, 0)]
}

// logTable prints a table whole on stdout (the testing package cuts a
// benchmark's log after 10 lines) and logs its last lines, the summary.
func logTable(b *testing.B, table string) {
	b.Helper()
	fmt.Printf("--- %s\n%s\n", b.Name(), table)
	lines := strings.Split(table, "\n")
	b.Logf("%s", strings.Join(lines[max(0, len(lines)-8):], "\n"))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(d time.Duration, ok bool) string {
	if !ok {
		return "     -"
	}
	return fmt.Sprintf("%6.0f", ms(d))
}

// --- failover ---------------------------------------------------------------

// failoverRun is one measured move of the failover address.
type failoverRun struct {
	from, to          string
	arp               time.Duration // first frame (answer or GARP) from the new owner
	answer, garp      time.Duration
	neigh             time.Duration // router's entry holds the new MAC
	lastOld           time.Duration // last answer from the old owner
	okARP, okNeigh    bool
	okAnswer, okGARP  bool
	oldAfterNew       int // answers from the old owner after the new one's first
	rejoin            time.Duration
	rejoinNeedRestart bool
	shutdown          string // the old speaker's log lines about stopping
}

// failoverMode triggers the loss of the owner and undoes it.
type failoverMode struct {
	name    string
	trigger func(e *l2bench, owner string) error
	restore func(e *l2bench, owner string) (time.Duration, bool, error)
}

func signalMode(name string, sig syscall.Signal) failoverMode {
	return failoverMode{
		name: name,
		trigger: func(e *l2bench, owner string) error {
			p := e.lab.Process("speaker-" + owner)
			if p == nil {
				return fmt.Errorf("no speaker process for %s", owner)
			}
			return p.Signal(sig)
		},
		restore: func(e *l2bench, owner string) (time.Duration, bool, error) {
			p := e.lab.Process("speaker-" + owner)
			select {
			case <-p.Exited():
			case <-time.After(10 * time.Second):
				return 0, false, fmt.Errorf("speaker-%s did not exit", owner)
			}
			e.shutdownLine = e.shutdownLines(owner)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.lab.StartSpeaker(ctx, e.speaker, owner); err != nil {
				return 0, false, err
			}
			err := e.waitMembers(30 * time.Second)
			return time.Since(start), false, err
		},
	}
}

var linkDownMode = failoverMode{
	name: "linkdown",
	trigger: func(e *l2bench, owner string) error {
		return exec.Command("ip", "-n", e.lab.Network.NS("sw"), "link", "set", "sw-"+owner, "down").Run()
	},
	restore: func(e *l2bench, owner string) (time.Duration, bool, error) {
		start := time.Now()
		if err := exec.Command("ip", "-n", e.lab.Network.NS("sw"), "link", "set", "sw-"+owner, "up").Run(); err != nil {
			return 0, false, err
		}
		// Does the isolated speaker find its way back by itself?
		if err := e.waitMembers(20 * time.Second); err == nil {
			return time.Since(start), false, nil
		}
		p := e.lab.Process("speaker-" + owner)
		if err := p.Stop(10 * time.Second); err != nil {
			return 0, true, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.lab.StartSpeaker(ctx, e.speaker, owner); err != nil {
			return 0, true, err
		}
		err := e.waitMembers(30 * time.Second)
		return time.Since(start), true, err
	},
}

func (e *l2bench) failoverOnce(tb testing.TB, mode failoverMode) failoverRun {
	tb.Helper()
	var r failoverRun
	if err := e.waitMembers(30 * time.Second); err != nil {
		tb.Fatalf("before %s: memberlist not whole: %v", mode.name, err)
	}
	p := e.startProber(tb, failoverVIP)
	defer p.Close()
	mac, err := p.settledOwner(p.started, 500*time.Millisecond, 30*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.pointRouterAt(failoverVIP, mac); err != nil {
		tb.Fatal(err)
	}
	// The router refuses a new MAC for locktime (1 s) after its entry was
	// updated; and the owner's own gratuitous burst must be over.
	fix := time.Now()
	if mac, err = p.settledOwner(fix, 1500*time.Millisecond, 30*time.Second); err != nil {
		tb.Fatal(err)
	}
	if got := e.routerNeigh(failoverVIP); got != mac {
		tb.Fatalf("router's entry moved to %q while settling (owner %s)", got, mac)
	}
	r.from = e.nodeByMAC(mac)
	nm := e.startNeighMonitor(tb, failoverVIP)
	defer nm.Close()

	e.logOff, e.shutdownLine = 0, ""
	if fi, err := os.Stat(e.lab.Process("speaker-" + r.from).Log); err == nil {
		e.logOff = fi.Size()
	}
	t0 := time.Now()
	if err := mode.trigger(e, r.from); err != nil {
		tb.Fatalf("%s %s: %v", mode.name, r.from, err)
	}
	newMAC := func(ev arpEvent) bool { return ev.mac != mac }
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		first, ok := p.first(t0, newMAC)
		if ok {
			if _, moved := nm.first(t0, first.mac); moved {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // old owner's trailing answers, for the overlap count
	p.Close()
	if first, ok := p.first(t0, newMAC); ok {
		r.okARP, r.arp, r.to = true, first.at.Sub(t0), e.nodeByMAC(first.mac)
		if a, ok := p.first(t0, func(ev arpEvent) bool { return ev.mac == first.mac && ev.kind == "answer" }); ok {
			r.okAnswer, r.answer = true, a.at.Sub(t0)
		}
		if g, ok := p.first(t0, func(ev arpEvent) bool { return ev.mac == first.mac && ev.kind == "garp" }); ok {
			r.okGARP, r.garp = true, g.at.Sub(t0)
		}
		if at, ok := nm.first(t0, first.mac); ok {
			r.okNeigh, r.neigh = true, at.Sub(t0)
		}
		for _, ev := range p.since(first.at) {
			if ev.mac == mac && ev.kind == "answer" {
				r.oldAfterNew++
			}
		}
	}
	for _, ev := range p.since(t0) {
		if ev.mac == mac && ev.kind == "answer" {
			r.lastOld = ev.at.Sub(t0)
		}
	}
	var rerr error
	r.rejoin, r.rejoinNeedRestart, rerr = mode.restore(e, r.from)
	if rerr != nil {
		tb.Fatalf("restoring %s after %s: %v", r.from, mode.name, rerr)
	}
	r.shutdown = e.shutdownLine
	return r
}

func (e *l2bench) benchFailover(b *testing.B, mode failoverMode) {
	e.ensureFailoverService(b)
	runs := benchRuns()
	var all []failoverRun
	for range b.N {
		all = all[:0]
		for range runs {
			all = append(all, e.failoverOnce(b, mode))
		}
	}
	var arp, neigh, answer, garp, rejoin sample
	missed, restarts := 0, 0
	var table strings.Builder
	fmt.Fprintf(&table, "\n  %-8s run  from   to      arp  answer   garp  neigh  lastOld  oldAfterNew  rejoin\n", mode.name)
	for i, r := range all {
		if r.okARP {
			arp = append(arp, r.arp)
		} else {
			missed++
		}
		if r.okNeigh {
			neigh = append(neigh, r.neigh)
		}
		if r.okAnswer {
			answer = append(answer, r.answer)
		}
		if r.okGARP {
			garp = append(garp, r.garp)
		}
		rejoin = append(rejoin, r.rejoin)
		if r.rejoinNeedRestart {
			restarts++
		}
		fmt.Fprintf(&table, "  %-8s %3d  %-5s  %-5s %s  %s %s %s   %s  %11d  %5.1fs%s\n", "", i+1, r.from, r.to,
			fmtMS(r.arp, r.okARP), fmtMS(r.answer, r.okAnswer), fmtMS(r.garp, r.okGARP), fmtMS(r.neigh, r.okNeigh),
			fmtMS(r.lastOld, true), r.oldAfterNew, r.rejoin.Seconds(), map[bool]string{true: " (restarted)"}[r.rejoinNeedRestart])
	}
	fmt.Fprintf(&table, "  %-8s p50               %s  %s %s %s\n", "", fmtMS(arp.pct(.5), len(arp) > 0),
		fmtMS(answer.pct(.5), len(answer) > 0), fmtMS(garp.pct(.5), len(garp) > 0), fmtMS(neigh.pct(.5), len(neigh) > 0))
	fmt.Fprintf(&table, "  %-8s max               %s  %s %s %s\n", "", fmtMS(arp.pct(1), len(arp) > 0),
		fmtMS(answer.pct(1), len(answer) > 0), fmtMS(garp.pct(1), len(garp) > 0), fmtMS(neigh.pct(1), len(neigh) > 0))
	fmt.Fprintf(&table, "  (ms from the trigger; arp = first frame claiming %s from the new owner, answer = its first reply to a probe,\n"+
		"   garp = its first gratuitous ARP, neigh = router's entry moved, lastOld = old owner's last answer)", failoverVIP)
	shutdowns := map[string]bool{}
	for _, r := range all {
		if r.shutdown != "" && !shutdowns[r.shutdown] && len(shutdowns) < 2 {
			shutdowns[r.shutdown] = true
			fmt.Fprintf(&table, "\n  old speaker's shutdown log (run from %s):\n    %s", r.from, strings.ReplaceAll(r.shutdown, "\n", "\n    "))
		}
	}
	logTable(b, table.String())
	b.ReportMetric(ms(arp.pct(.5)), "arp-p50-ms")
	b.ReportMetric(ms(arp.pct(1)), "arp-max-ms")
	b.ReportMetric(ms(neigh.pct(.5)), "neigh-p50-ms")
	b.ReportMetric(ms(neigh.pct(1)), "neigh-max-ms")
	b.ReportMetric(float64(missed), "missed")
	b.ReportMetric(float64(len(all)), "runs")
	if mode.name == "linkdown" {
		b.ReportMetric(float64(restarts), "rejoin-needed-restart")
	}
	if missed > 0 {
		b.Errorf("%d of %d runs saw no new owner answer within 6 s", missed, len(all))
	}
}

// BenchmarkL2GracefulFailover: SIGTERM the speaker that answers for the
// address; time until another node answers and until the router's
// neighbour entry holds its MAC. The speaker is restarted, and back in
// memberlist, before the next run. Target: p50 < 100 ms.
func BenchmarkL2GracefulFailover(b *testing.B) {
	e := benchCluster(b)
	e.benchFailover(b, signalMode("sigterm", syscall.SIGTERM))
}

// BenchmarkL2CrashFailover: the same with SIGKILL, and with the owner's
// switch port set down. Target: p50 < 1 s, max < 2 s.
func BenchmarkL2CrashFailover(b *testing.B) {
	e := benchCluster(b)
	b.Run("mode=sigkill", func(b *testing.B) { e.benchFailover(b, signalMode("sigkill", syscall.SIGKILL)) })
	b.Run("mode=linkdown", func(b *testing.B) { e.benchFailover(b, linkDownMode) })
}

// --- Service creation -------------------------------------------------------

// BenchmarkL2ServiceCreate: from the Create call of a Service that asks for
// an address (its EndpointSlice, pool and advertisement exist) to the first
// ARP answer for that address. Target: p50 < 100 ms.
func BenchmarkL2ServiceCreate(b *testing.B) {
	e := benchCluster(b)
	if err := e.waitMembers(30 * time.Second); err != nil {
		b.Fatal(err)
	}
	runs := benchRuns()
	ctx := context.Background()
	type run struct {
		ip            string
		status, arp   time.Duration
		okStat, okARP bool
		node          string
	}
	var all []run
	for range b.N {
		all = all[:0]
		for i := range runs {
			name := fmt.Sprintf("create-%d", i)
			ip := fmt.Sprintf("192.168.100.%d", 120+i%25)
			if err := e.c.Create(ctx, benchEndpointSlice(benchL2NS, name, e.nodeNames())); err != nil {
				b.Fatal(err)
			}
			p := e.startProber(b, ip)
			time.Sleep(200 * time.Millisecond)
			if evs := p.since(p.started); len(evs) > 0 {
				b.Fatalf("%s answered by %s before its Service exists", ip, evs[0].mac)
			}
			// The Service's address as the API serves it, polled every 5 ms.
			var statusAt atomic.Pointer[time.Time]
			pollCtx, stopPoll := context.WithTimeout(ctx, 10*time.Second)
			polled := make(chan struct{})
			go func() {
				defer close(polled)
				for pollCtx.Err() == nil {
					svc, err := e.cs.CoreV1().Services(benchL2NS).Get(pollCtx, name, metav1.GetOptions{})
					if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
						now := time.Now()
						statusAt.Store(&now)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			t0 := time.Now()
			if _, err := e.cs.CoreV1().Services(benchL2NS).Create(ctx, benchService(benchL2NS, name, ip), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			r := run{ip: ip}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if ev, ok := p.first(t0, func(arpEvent) bool { return true }); ok {
					r.okARP, r.arp, r.node = true, ev.at.Sub(t0), e.nodeByMAC(ev.mac)
				}
				if r.okARP && statusAt.Load() != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			stopPoll()
			<-polled
			p.Close()
			if at := statusAt.Load(); at != nil {
				r.okStat, r.status = true, at.Sub(t0)
			}
			all = append(all, r)
			_ = e.c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchL2NS, Name: name}})
			_ = e.c.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: benchL2NS, Name: name + "-bench"}})
			// Let the deletion settle so that the runs do not overlap.
			time.Sleep(500 * time.Millisecond)
		}
	}
	var arp, status sample
	missed := 0
	var table strings.Builder
	fmt.Fprintf(&table, "\n  run  ip               status(poll)    first ARP  node\n")
	for i, r := range all {
		if r.okARP {
			arp = append(arp, r.arp)
		} else {
			missed++
		}
		if r.okStat {
			status = append(status, r.status)
		}
		fmt.Fprintf(&table, "  %3d  %-15s  %s ms       %s ms  %s\n", i+1, r.ip, fmtMS(r.status, r.okStat), fmtMS(r.arp, r.okARP), r.node)
	}
	fmt.Fprintf(&table, "  p50                   %s ms       %s ms\n", fmtMS(status.pct(.5), len(status) > 0), fmtMS(arp.pct(.5), len(arp) > 0))
	fmt.Fprintf(&table, "  max                   %s ms       %s ms\n", fmtMS(status.pct(1), len(status) > 0), fmtMS(arp.pct(1), len(arp) > 0))
	fmt.Fprintf(&table, "  (ms from the Create call; status = the Service's address seen by a 5 ms Get poll)")
	logTable(b, table.String())
	b.ReportMetric(ms(arp.pct(.5)), "arp-p50-ms")
	b.ReportMetric(ms(arp.pct(1)), "arp-max-ms")
	b.ReportMetric(ms(status.pct(.5)), "status-p50-ms")
	b.ReportMetric(ms(status.pct(1)), "status-max-ms")
	b.ReportMetric(float64(missed), "missed")
	if missed > 0 {
		b.Errorf("%d of %d Services got no ARP answer within 10 s", missed, len(all))
	}
}

// --- resources --------------------------------------------------------------

// BenchmarkL2SpeakerResources: each speaker's RSS and CPU with 200 and then
// 1,000 Services announced (addresses from 192.168.101.0/24 to
// 192.168.104.0/24, on-link from the probe host's point of view: one is
// probed by ARP at each size).
func BenchmarkL2SpeakerResources(b *testing.B) {
	e := benchCluster(b)
	if err := e.waitMembers(30 * time.Second); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	created := 0
	defer func() {
		// Leave the cluster as we found it for any later benchmark.
		_ = e.c.DeleteAllOf(ctx, &corev1.Service{}, client.InNamespace(benchScaleNS))
		_ = e.c.DeleteAllOf(ctx, &discoveryv1.EndpointSlice{}, client.InNamespace(benchScaleNS))
	}()
	type usage struct {
		rss      int64
		cpuLoad  float64 // CPU seconds while the batch was announced
		cpuIdle  float64 // CPU seconds per second afterwards
		announce int
	}
	baseline := map[string]int64{}
	for _, n := range e.nodeNames() {
		rss, err := e.lab.Process("speaker-" + n).RSSBytes()
		if err != nil {
			b.Fatal(err)
		}
		baseline[n] = rss
	}
	for _, total := range []int{200, 1000} {
		b.Run(fmt.Sprintf("services=%d", total), func(b *testing.B) {
			cpu0 := map[string]float64{}
			for _, n := range e.nodeNames() {
				c, err := e.lab.Process("speaker-" + n).CPUSeconds()
				if err != nil {
					b.Fatal(err)
				}
				cpu0[n] = c
			}
			start := time.Now()
			if err := createScaleServices(ctx, e, created, total); err != nil {
				b.Fatal(err)
			}
			created = total
			createdIn := time.Since(start)
			// All announced: the speakers' gauges sum to total.
			deadline := time.Now().Add(5 * time.Minute)
			var sum int
			per := map[string]int{}
			for {
				sum = 0
				for _, n := range e.nodeNames() {
					var c int
					for _, prefix := range []string{"192.168.101.", "192.168.102.", "192.168.103.", "192.168.104."} {
						k, err := e.announced(n, prefix)
						if err != nil {
							b.Fatal(err)
						}
						c += k
					}
					per[n] = c
					sum += c
				}
				if sum >= total || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			toAnnounced := time.Since(start)
			if sum != total {
				b.Fatalf("%d of %d addresses announced after %s", sum, total, toAnnounced)
			}
			use := map[string]*usage{}
			cpu1 := map[string]float64{}
			for _, n := range e.nodeNames() {
				p := e.lab.Process("speaker-" + n)
				c, _ := p.CPUSeconds()
				cpu1[n] = c
				use[n] = &usage{cpuLoad: c - cpu0[n], announce: per[n]}
			}
			// One address, picked from the last batch, answers on the wire.
			var svc corev1.Service
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: benchScaleNS, Name: fmt.Sprintf("scale-%04d", total-1)}, &svc); err != nil {
				b.Fatal(err)
			}
			probed, answer := "", ""
			if len(svc.Status.LoadBalancer.Ingress) > 0 {
				probed = svc.Status.LoadBalancer.Ingress[0].IP
				p := e.startProber(b, probed)
				if ev, ok := waitFirst(p, time.Second); ok {
					answer = e.nodeByMAC(ev.mac)
				}
				p.Close()
			}
			const idle = 10 * time.Second
			time.Sleep(idle)
			var rssSum int64
			var cpuSum float64
			for _, n := range e.nodeNames() {
				p := e.lab.Process("speaker-" + n)
				c, _ := p.CPUSeconds()
				use[n].cpuIdle = (c - cpu1[n]) / idle.Seconds()
				rss, err := p.RSSBytes()
				if err != nil {
					b.Fatal(err)
				}
				use[n].rss = rss
				rssSum += rss
				cpuSum += use[n].cpuLoad
			}
			var table strings.Builder
			fmt.Fprintf(&table, "\n  %d Services (created in %.1f s, all announced %.1f s after the first Create)\n", total, createdIn.Seconds(), toAnnounced.Seconds())
			fmt.Fprintf(&table, "  node    announced   RSS MB (idle baseline)   CPU s for the batch   idle CPU %%\n")
			var maxRSS int64
			for _, n := range e.nodeNames() {
				u := use[n]
				maxRSS = max(maxRSS, u.rss)
				fmt.Fprintf(&table, "  %-6s  %9d   %6.1f (%5.1f)           %8.2f              %5.2f\n", n, u.announce,
					float64(u.rss)/(1<<20), float64(baseline[n])/(1<<20), u.cpuLoad, 100*u.cpuIdle)
			}
			fmt.Fprintf(&table, "  probe: %s answered by %q", probed, answer)
			logTable(b, table.String())
			b.ReportMetric(float64(maxRSS)/(1<<20), "rss-max-MB")
			b.ReportMetric(float64(rssSum)/float64(len(use))/(1<<20), "rss-avg-MB")
			b.ReportMetric(cpuSum/float64(len(use)), "cpu-s-per-speaker")
			b.ReportMetric(toAnnounced.Seconds(), "s-to-all-announced")
			if answer == "" {
				b.Errorf("nobody answered ARP for %s", probed)
			}
		})
	}
}

func waitFirst(p *arpProber, d time.Duration) (arpEvent, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ev, ok := p.first(p.started, func(arpEvent) bool { return true }); ok {
			return ev, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return arpEvent{}, false
}

// createScaleServices creates Services scale-<from>..scale-<to-1>, each
// with an EndpointSlice ready on every node, with 16 goroutines.
func createScaleServices(ctx context.Context, e *l2bench, from, to int) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				name := fmt.Sprintf("scale-%04d", i)
				err := e.c.Create(ctx, benchEndpointSlice(benchScaleNS, name, e.nodeNames()))
				if err == nil {
					err = e.c.Create(ctx, benchService(benchScaleNS, name, ""))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("creating %s: %w", name, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
