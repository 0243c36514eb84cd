package layer2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Namespace tests run the Announcer inside a "node" network namespace and
// probe it with arping, ndisc6, tcpdump and ip from a "peer" namespace,
// joined by a veth pair.
//
// How the Announcer gets into the node namespace: every Set runs on a fresh
// goroutine locked to its OS thread, which setns(2)s into the node namespace
// first and is never unlocked, so the runtime discards the thread when the
// goroutine ends. Set lists interfaces and opens its sockets there, and a
// socket stays in the namespace it was created in, so the responder
// goroutines may run on any thread afterwards. Close opens nothing and runs
// anywhere. Interface names are unique per test so that the process-wide
// IPv6 zone cache (which resolves names in whatever namespace the current
// thread is in) never maps a name to an interface of the test's own
// namespace.

var labSeq atomic.Int32

type lab struct {
	node, peer     string // namespace names
	nodeIf, peerIf string // veth ends
	nodeMAC        string // lower-case
	peerMAC        string
}

const (
	vip4     = "192.168.77.100"
	vip6     = "fd00:77::100"
	peerIP4  = "192.168.77.1"
	nodeIP4  = "192.168.77.11"
	peerIP6  = "fd00:77::1"
	nodeIP6  = "fd00:77::11"
	fakeMAC  = "02:00:00:00:be:ef"
	otherVIP = "192.168.77.101"
)

func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and raw sockets")
	}
	for _, tool := range []string{"ip", "arping", "ndisc6", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH (apt-get install -y iproute2 arping ndisc6 tcpdump): %v", tool, err)
		}
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab creates node and peer namespaces joined by a veth pair, with
// addresses on both ends (no DAD) and the link up. Cleanup deletes both.
func newLab(t *testing.T) *lab {
	requireLab(t)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, labSeq.Add(1))
	l := &lab{
		node: "l2node-" + id, peer: "l2peer-" + id,
		nodeIf: "l2n" + strings.ReplaceAll(id, "-", "x"), peerIf: "l2p" + strings.ReplaceAll(id, "-", "x"),
	}
	for _, ns := range []string{l.node, l.peer} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.node, "link", "add", l.nodeIf, "type", "veth", "peer", "name", l.peerIf, "netns", l.peer)
	for _, s := range []struct{ ns, dev, ll, ip4, ip6 string }{
		{l.node, l.nodeIf, "fe80::11/64", nodeIP4 + "/24", nodeIP6 + "/64"},
		{l.peer, l.peerIf, "fe80::1/64", peerIP4 + "/24", peerIP6 + "/64"},
	} {
		// No automatic link-local: it would be tentative for a second.
		run(t, "ip", "-n", s.ns, "link", "set", "dev", s.dev, "addrgenmode", "none")
		run(t, "ip", "-n", s.ns, "addr", "add", s.ll, "dev", s.dev, "nodad")
		run(t, "ip", "-n", s.ns, "addr", "add", s.ip4, "dev", s.dev)
		run(t, "ip", "-n", s.ns, "addr", "add", s.ip6, "dev", s.dev, "nodad")
		run(t, "ip", "-n", s.ns, "link", "set", s.dev, "up")
	}
	l.nodeMAC = l.mac(t, l.node, l.nodeIf)
	l.peerMAC = l.mac(t, l.peer, l.peerIf)
	return l
}

var linkEther = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)

func (l *lab) mac(t *testing.T, ns, dev string) string {
	m := linkEther.FindStringSubmatch(run(t, "ip", "-n", ns, "link", "show", dev))
	if m == nil {
		t.Fatalf("no MAC on %s in %s", dev, ns)
	}
	return m[1]
}

// inNetns runs f on a goroutine whose OS thread is in namespace ns.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// set calls a.Set inside the node namespace.
func (l *lab) set(t *testing.T, a *Announcer, want map[netip.Addr][]string) error {
	t.Helper()
	var err error
	inNetns(t, l.node, func() { err = a.Set(context.Background(), want) })
	return err
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newLabAnnouncer(t *testing.T) *Announcer {
	a := New(testLogger(t))
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

// arping asks for ip from the peer; it returns the answering MACs (one per
// reply, lower-case) and arping's exit error.
func (l *lab) arping(ip string, count int) ([]string, error) {
	out, err := exec.Command("ip", "netns", "exec", l.peer, "arping", "-r", "-c", fmt.Sprint(count), "-w", "2", "-i", l.peerIf, ip).Output()
	var macs []string
	for _, f := range strings.Fields(string(out)) {
		macs = append(macs, strings.ToLower(f))
	}
	return macs, err
}

// ndisc6 solicits ip from the peer; it returns the target link-layer
// address printed, or an error when nobody answered.
func (l *lab) ndisc6(ip string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", l.peer, "ndisc6", "-q", "-1", "-r", "2", "-w", "500", ip, l.peerIf).Output()
	return strings.ToLower(strings.TrimSpace(string(out))), err
}

// neigh returns the peer's neighbour entry for ip ("" when none).
func (l *lab) neigh(t *testing.T, ip string) string {
	return strings.TrimSpace(run(t, "ip", "-n", l.peer, "neigh", "show", ip, "dev", l.peerIf))
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNetnsARPAnswered(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	var answered atomic.Int64
	a.OnAnswer(func(ifname string, ip netip.Addr) {
		if ifname == l.nodeIf && ip == netip.MustParseAddr(vip4) {
			answered.Add(1)
		}
	})

	// Nobody answers before Set: the node kernel does not own the VIP.
	if macs, err := l.arping(vip4, 1); err == nil {
		t.Fatalf("arping before Set succeeded: %v", macs)
	}

	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip4): {l.nodeIf}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	macs, err := l.arping(vip4, 2)
	if err != nil {
		t.Fatalf("arping after Set: %v (replies %v)", err, macs)
	}
	if len(macs) != 2 || macs[0] != l.nodeMAC || macs[1] != l.nodeMAC {
		t.Fatalf("replies from %v, want 2 from node %s", macs, l.nodeMAC)
	}
	// Exactly one MAC answers: arping -d exits 1 on duplicate answers.
	if out, err := exec.Command("ip", "netns", "exec", l.peer, "arping", "-d", "-q", "-c", "3", "-w", "3", "-i", l.peerIf, vip4).CombinedOutput(); err != nil {
		t.Fatalf("arping -d: %v\n%s", err, out)
	}
	if n := answered.Load(); n < 5 {
		t.Errorf("OnAnswer counted %d answers for %s, want at least 5", n, vip4)
	}

	// Setting the same again changes nothing and sends no new burst.
	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip4): {l.nodeIf}}); err != nil {
		t.Fatalf("Set again: %v", err)
	}

	// Removed: no reply at once.
	if err := l.set(t, a, nil); err != nil {
		t.Fatalf("Set(nil): %v", err)
	}
	if macs, err := l.arping(vip4, 1); err == nil {
		t.Fatalf("arping after withdraw got replies %v", macs)
	}
}

func TestNetnsNDPAnswered(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	if _, err := l.ndisc6(vip6); err == nil {
		t.Fatal("ndisc6 before Set got an answer")
	}
	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip6): {l.nodeIf}}); err != nil {
		t.Fatalf("Set: %v", err)
	}

	// Capture the advertisement on the peer to check its flags.
	cap := l.capture(t, "icmp6 and ip6[40] == 136 and src host "+vip6+" and dst host fe80::1", 1)
	mac, err := l.ndisc6(vip6)
	if err != nil {
		t.Fatalf("ndisc6 after Set: %v", err)
	}
	if mac != l.nodeMAC {
		t.Fatalf("target link-layer address %s, want node %s", mac, l.nodeMAC)
	}
	got := cap.wait(t)
	for _, want := range []string{"neighbor advertisement", "tgt is " + vip6, "Flags [solicited, override]", "destination link-address option", l.nodeMAC} {
		if !strings.Contains(got, want) {
			t.Errorf("captured NA lacks %q:\n%s", want, got)
		}
	}

	if err := l.set(t, a, map[netip.Addr][]string{}); err != nil {
		t.Fatalf("Set(empty): %v", err)
	}
	if mac, err := l.ndisc6(vip6); err == nil {
		t.Fatalf("ndisc6 after withdraw got %s", mac)
	}
}

// captured is a tcpdump running in the peer namespace.
type captured struct {
	cmd *exec.Cmd
	out chan string
}

// capture starts tcpdump in the peer for count packets matching filter and
// returns once it listens.
func (l *lab) capture(t *testing.T, filter string, count int) *captured {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.peer, "tcpdump", "-l", "-n", "-e", "-vv", "-i", l.peerIf, "-c", fmt.Sprint(count), filter)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "listening on") {
				close(listening)
				once = true
			}
		}
		if !once {
			close(listening)
		}
	}()
	c := &captured{cmd: cmd, out: make(chan string, 1)}
	go func() {
		b, _ := io.ReadAll(stdout)
		c.out <- string(b)
	}()
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		t.Fatal("tcpdump did not start")
	}
	return c
}

func (c *captured) wait(t *testing.T) string {
	t.Helper()
	select {
	case s := <-c.out:
		return s
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		t.Fatalf("tcpdump saw nothing: %s", <-c.out)
		return ""
	}
}

func TestNetnsGratuitousARPOnGain(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	// The peer believes the VIP is at a stale fake MAC.
	run(t, "ip", "-n", l.peer, "neigh", "replace", vip4, "lladdr", fakeMAC, "dev", l.peerIf, "nud", "stale")
	if got := l.neigh(t, vip4); !strings.Contains(got, fakeMAC) {
		t.Fatalf("neighbour entry not set up: %q", got)
	}
	start := time.Now()
	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip4): {l.nodeIf}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitFor(t, "peer entry switches to node MAC", 2*time.Second, func() (bool, string) {
		got := l.neigh(t, vip4)
		return strings.Contains(got, l.nodeMAC), got
	})
	t.Logf("peer neighbour entry switched %v after Set began", time.Since(start))
}

func TestNetnsUnsolicitedNAOnGain(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	run(t, "ip", "-n", l.peer, "neigh", "replace", vip6, "lladdr", fakeMAC, "dev", l.peerIf, "nud", "stale")
	if got := l.neigh(t, vip6); !strings.Contains(got, fakeMAC) {
		t.Fatalf("neighbour entry not set up: %q", got)
	}
	cap := l.capture(t, "icmp6 and ip6[40] == 136 and dst host ff02::1", 1)
	start := time.Now()
	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip6): {l.nodeIf}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitFor(t, "peer entry switches to node MAC", 2*time.Second, func() (bool, string) {
		got := l.neigh(t, vip6)
		return strings.Contains(got, l.nodeMAC), got
	})
	t.Logf("peer neighbour entry switched %v after Set began", time.Since(start))
	got := cap.wait(t)
	for _, want := range []string{"tgt is " + vip6, "Flags [override]", l.nodeMAC} {
		if !strings.Contains(got, want) {
			t.Errorf("captured unsolicited NA lacks %q:\n%s", want, got)
		}
	}
}

func TestNetnsMissingInterface(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	err := l.set(t, a, map[netip.Addr][]string{
		netip.MustParseAddr(vip4):     {l.nodeIf},
		netip.MustParseAddr(otherVIP): {"l2-missing0", l.nodeIf},
		netip.MustParseAddr(vip6):     {"l2-missing0", l.nodeIf},
	})
	if err == nil {
		t.Fatal("Set with a missing interface returned nil")
	}
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), "l2-missing0") {
		t.Fatalf("error %q does not name the missing interface", err)
	}
	var ae *AnnounceError
	if !errors.As(err, &ae) || ae.Interface != "l2-missing0" {
		t.Fatalf("error %v is not an *AnnounceError for l2-missing0", err)
	}
	for _, ip := range []string{vip4, otherVIP} {
		if macs, err := l.arping(ip, 1); err != nil || len(macs) != 1 || macs[0] != l.nodeMAC {
			t.Errorf("arping %s: %v %v, want reply from %s", ip, macs, err, l.nodeMAC)
		}
	}
	if mac, err := l.ndisc6(vip6); err != nil || mac != l.nodeMAC {
		t.Errorf("ndisc6 %s: %q %v, want %s", vip6, mac, err, l.nodeMAC)
	}
}

func TestNetnsAutoInterfaces(t *testing.T) {
	l := newLab(t)
	a := newLabAnnouncer(t)
	if err := l.set(t, a, map[netip.Addr][]string{netip.MustParseAddr(vip4): nil, netip.MustParseAddr(vip6): nil}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if macs, err := l.arping(vip4, 1); err != nil || len(macs) != 1 || macs[0] != l.nodeMAC {
		t.Errorf("arping: %v %v", macs, err)
	}
	if mac, err := l.ndisc6(vip6); err != nil || mac != l.nodeMAC {
		t.Errorf("ndisc6: %q %v", mac, err)
	}
}
