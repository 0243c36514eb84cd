//go:build ipvsvm

// The real-kernel tests, built with -tags ipvsvm and run by `make
// test-ipvs` as the only program of a throwaway VM (hack/ipvsvm) whose
// kernel has IPVS: they change the root network namespace's IPVS table,
// sysctls and interfaces freely.

package ipvs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// The lab: the VM's root namespace is the node; each pod and the client
// is a namespace joined to it by a veth pair.
var (
	vip      = netip.MustParseAddr("192.0.2.10")
	clientIP = netip.MustParseAddr("198.51.100.2")
	nodeCl   = netip.MustParseAddr("198.51.100.1")
	pod1IP   = netip.MustParseAddr("10.244.1.2")
	pod2IP   = netip.MustParseAddr("10.244.2.2")
)

type lab struct {
	root, client netns.NsHandle
	pods         map[netip.Addr]netns.NsHandle
}

var theLab *lab

func TestMain(m *testing.M) {
	runtime.LockOSThread()
	l, err := setUp()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipvsvm: lab:", err)
		os.Exit(1)
	}
	theLab = l
	os.Exit(m.Run())
}

func write(path, v string) error { return os.WriteFile(path, []byte(v), 0o644) }

// setUp builds the lab and starts an HTTP server in each pod that answers
// with its own name and the client address it saw.
func setUp() (*lab, error) {
	root, err := netns.Get()
	if err != nil {
		return nil, err
	}
	if err := write("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return nil, err
	}
	l := &lab{root: root, pods: map[netip.Addr]netns.NsHandle{}}
	if l.client, err = peer(root, "vcl", nodeCl, clientIP); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for i, ip := range []netip.Addr{pod1IP, pod2IP} {
		gw := ip.Prev() // 10.244.x.1
		ns, err := peer(root, fmt.Sprintf("vpod%d", i+1), gw, ip)
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", ip, err)
		}
		l.pods[ip] = ns
		ln, err := inNS(root, ns, func() (net.Listener, error) { return net.Listen("tcp", ":8080") })
		if err != nil {
			return nil, fmt.Errorf("listening in pod %s: %w", ip, err)
		}
		name := fmt.Sprintf("pod%d", i+1)
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
		}))
	}
	return l, nil
}

// peer makes a namespace joined to root by a veth pair: nodeSide (/24) on
// the root end, ip (/24) inside with a default route via nodeSide.
func peer(root netns.NsHandle, name string, nodeSide, ip netip.Addr) (netns.NsHandle, error) {
	ns, err := netns.New()
	if err != nil {
		return 0, err
	}
	if err := netns.Set(root); err != nil {
		return 0, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return 0, fmt.Errorf("veth %s: %w", name, err)
	}
	if err := netlink.AddrAdd(veth, &netlink.Addr{IPNet: &net.IPNet{IP: nodeSide.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return 0, err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return 0, err
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	for _, n := range []string{"lo", "eth0"} {
		link, err := h.LinkByName(n)
		if err != nil {
			return 0, err
		}
		if n == "eth0" {
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return 0, err
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return 0, err
		}
	}
	if err := h.RouteAdd(&netlink.Route{Gw: nodeSide.AsSlice()}); err != nil {
		return 0, fmt.Errorf("default route: %w", err)
	}
	return ns, nil
}

// inNS runs fn (which opens a socket) in ns on this locked thread, then
// returns to root: a socket stays in the namespace it was made in.
func inNS[T any](root, ns netns.NsHandle, fn func() (T, error)) (T, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var zero T
	if err := netns.Set(ns); err != nil {
		return zero, err
	}
	defer netns.Set(root)
	return fn()
}

// get asks the VIP from the client namespace and returns the answer:
// which pod, and the client address it saw.
func get(t *testing.T, port uint16) (pod string, seen netip.Addr) {
	t.Helper()
	addr := netip.AddrPortFrom(vip, port).String()
	conn, err := inNS(theLab.root, theLab.client, func() (net.Conn, error) {
		return net.DialTimeout("tcp", addr, 5*time.Second)
	})
	if err != nil {
		t.Fatalf("client: connecting to %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("client: reading the answer from %s: %v", addr, err)
	}
	body, _ := io.ReadAll(resp.Body)
	f := strings.Fields(string(body))
	if len(f) != 2 {
		t.Fatalf("client: answer %q", body)
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		t.Fatalf("client: answer %q: %v", body, err)
	}
	return f[0], ap.Addr()
}

// expectPod checks that the VIP answers from pod with the client's IP.
func expectPod(t *testing.T, port uint16, pod string) {
	t.Helper()
	got, seen := get(t, port)
	if got != pod || seen != clientIP {
		t.Errorf("%s:%d answered by %s seeing client %s, want %s seeing %s", vip, port, got, seen, pod, clientIP)
	} else {
		t.Logf("%s:%d answered by %s, which saw the client as %s", vip, port, got, seen)
	}
}

// readBack returns the kernel's service for k, with real servers.
func readBack(t *testing.T, k forwarding.Key) (Service, bool) {
	t.Helper()
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svcs, err := c.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Key == k {
			if s.Dests, err = c.Dests(s); err != nil {
				t.Fatal(err)
			}
			return s, true
		}
	}
	return Service{}, false
}

func expectService(t *testing.T, k forwarding.Key, sched string, eps ...netip.AddrPort) {
	t.Helper()
	s, ok := readBack(t, k)
	if !ok {
		t.Fatalf("no IPVS service %s in the kernel", Service{Key: k})
	}
	var want []Dest
	for _, ep := range eps {
		want = append(want, Dest{AddrPort: ep, FwdMethod: FwdMasq, Weight: 1})
	}
	if s.Scheduler != sched || !slices.Equal(s.Dests, want) {
		t.Errorf("kernel has %s scheduler %s real servers %v, want %s %v", s, s.Scheduler, s.Dests, sched, want)
	} else {
		t.Logf("kernel has %s scheduler %s, real servers %v (masq, weight 1)", s, s.Scheduler, s.Dests)
	}
}

func mustSync(t *testing.T, s *Syncer, rules []forwarding.Rule, full bool) Result {
	t.Helper()
	res, err := s.Sync(context.Background(), rules, full)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	t.Logf("sync: %+v", res)
	return res
}

func ep(ip netip.Addr) netip.AddrPort { return netip.AddrPortFrom(ip, 8080) }

// TestVMForwarding: the backend programs a VIP to a pod, traffic from the
// client reaches it with the client's IP, an endpoint change is applied
// as a diff, and services and real servers deleted by hand come back.
func TestVMForwarding(t *testing.T) {
	s, err := New("rr")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove(context.Background())
	k := forwarding.Key{VIP: vip, Protocol: forwarding.TCP, Port: 80}
	rules := func(eps ...netip.AddrPort) []forwarding.Rule {
		return []forwarding.Rule{{Key: k, Service: "default/web", Endpoints: eps}}
	}

	// First sync: interface, sysctls, service, real server.
	mustSync(t, s, rules(ep(pod1IP)), false)
	expectService(t, k, "rr", ep(pod1IP))
	addrs, err := NewDummyLink(Interface).Addrs()
	if err != nil || !slices.Equal(addrs, []netip.Addr{vip}) {
		t.Errorf("%s has %v (%v), want %s", Interface, addrs, err, vip)
	}
	for _, sc := range Sysctls {
		b, err := os.ReadFile("/proc/sys/" + sc.Path)
		if err != nil || strings.TrimSpace(string(b)) != sc.Value {
			t.Errorf("sysctl %s = %q (%v), want %s", sc.Path, b, err, sc.Value)
		}
	}
	expectPod(t, 80, "pod1")

	// An endpoint change: one real server out, one in, service kept.
	res := mustSync(t, s, rules(ep(pod2IP)), false)
	if res.Kind != Partial || res.Operations != 2 {
		t.Errorf("endpoint change: %+v, want a partial sync of 2 operations", res)
	}
	expectService(t, k, "rr", ep(pod2IP))
	expectPod(t, 80, "pod2")
	res = mustSync(t, s, rules(ep(pod1IP), ep(pod2IP)), false)
	expectService(t, k, "rr", ep(pod1IP), ep(pod2IP))
	seen := map[string]bool{}
	for range 6 {
		p, _ := get(t, 80)
		seen[p] = true
	}
	if !seen["pod1"] || !seen["pod2"] {
		t.Errorf("round robin over two pods reached only %v", seen)
	}

	// Nothing changed: nothing sent.
	if res := mustSync(t, s, rules(ep(pod1IP), ep(pod2IP)), false); res.Operations != 0 {
		t.Errorf("no change: %+v, want no operation", res)
	}

	// Someone deletes the service: the next sync sees it and restores it.
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Apply(Op{Kind: DeleteService, Service: Service{Key: k}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := readBack(t, k); ok {
		t.Fatal("the service survived its deletion")
	}
	res = mustSync(t, s, rules(ep(pod1IP), ep(pod2IP)), false)
	if res.Kind != Full || res.Reason != "services changed" {
		t.Errorf("after a hand deletion: %+v, want a full sync for services changed", res)
	}
	expectService(t, k, "rr", ep(pod1IP), ep(pod2IP))

	// Someone deletes a real server and unbinds the VIP: the periodic
	// full sync puts both back.
	if err := c.Apply(Op{Kind: DeleteDest, Service: Service{Key: k}, Dest: Dest{AddrPort: ep(pod1IP)}}); err != nil {
		t.Fatal(err)
	}
	res = mustSync(t, s, rules(ep(pod1IP), ep(pod2IP)), true)
	if res.Kind != Full || res.Operations != 1 {
		t.Errorf("periodic full sync: %+v, want 1 operation", res)
	}
	expectService(t, k, "rr", ep(pod1IP), ep(pod2IP))
	if err := NewDummyLink(Interface).Del(vip); err != nil {
		t.Fatal(err)
	}
	res = mustSync(t, s, rules(ep(pod1IP), ep(pod2IP)), false)
	if res.Kind != Full || res.Reason != "addresses changed" {
		t.Errorf("after the VIP was unbound: %+v, want a full sync for addresses changed", res)
	}
	expectPod(t, 80, "pod1")

	// The VIP no longer forwarded: service and address go.
	mustSync(t, s, nil, false)
	if _, ok := readBack(t, k); ok {
		t.Error("the service is still there after its rule went")
	}
	if addrs, _ := NewDummyLink(Interface).Addrs(); len(addrs) != 0 {
		t.Errorf("%s still has %v", Interface, addrs)
	}
}

// TestVMSchedulers: each scheduler the speaker offers is accepted by the
// kernel, read back, and forwards.
func TestVMSchedulers(t *testing.T) {
	for i, sched := range Schedulers {
		t.Run(sched, func(t *testing.T) {
			s, err := New(sched)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Remove(context.Background())
			k := forwarding.Key{VIP: vip, Protocol: forwarding.TCP, Port: uint16(8000 + i)}
			mustSync(t, s, []forwarding.Rule{{Key: k, Endpoints: []netip.AddrPort{ep(pod2IP)}}}, false)
			expectService(t, k, sched, ep(pod2IP))
			expectPod(t, k.Port, "pod2")
		})
	}
}
