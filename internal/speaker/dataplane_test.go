package speaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/dataplane/ipvs"
	"github.com/ironlb/ironlb/internal/dataplane/nft"
	"github.com/ironlb/ironlb/internal/election"
	"github.com/ironlb/ironlb/internal/forwarding"
)

// TestForwarderOnlyAnnounced: the forwarder programs the addresses this
// node won or advertises over BGP and drops one it loses; the metrics
// follow.
func TestForwarderOnlyAnnounced(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, nft.Table)
	reg := prometheus.NewRegistry()
	f := newForwarderWith(nftSyncer{nft.NewWith(fake)}, Config{NodeName: "node1", Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	svc := func(name, ip string) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}}}
	}
	es := func(svc string) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svc, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.2"}, NodeName: ptr("node1")}},
		}
	}
	services := deriveServices("node1", []corev1.Service{svc("a", "192.0.2.1"), svc("b", "192.0.2.2")}, []discoveryv1.EndpointSlice{es("a"), es("b")})
	won := func(ips ...string) map[netip.Addr]election.Announcement {
		m := map[netip.Addr]election.Announcement{}
		for _, ip := range ips {
			m[netip.MustParseAddr(ip)] = election.Announcement{IP: netip.MustParseAddr(ip)}
		}
		return m
	}
	ctx := context.Background()

	if err := f.apply(ctx, services, won("192.0.2.1", "192.0.2.2"), nil, false); err != nil {
		t.Fatal(err)
	}
	dump := fake.Dump()
	if !strings.Contains(dump, "192.0.2.1 . tcp . 80 : goto eps4-tcp-1") || !strings.Contains(dump, "192.0.2.2 . tcp . 80 : goto eps4-tcp-1") {
		t.Fatalf("both won addresses should be forwarded:\n%s", dump)
	}
	if err := f.apply(ctx, services, won("192.0.2.1"), nil, false); err != nil {
		t.Fatal(err)
	}
	if dump := fake.Dump(); strings.Contains(dump, "192.0.2.2") {
		t.Errorf("a lost address is still forwarded:\n%s", dump)
	}
	// Advertised over BGP, not won in layer 2: traffic arrives all the same.
	if err := f.apply(ctx, services, won("192.0.2.1"), map[string]bool{"ns/b": true}, false); err != nil {
		t.Fatal(err)
	}
	if dump := fake.Dump(); !strings.Contains(dump, "192.0.2.2 . tcp . 80 : goto eps4-tcp-1") {
		t.Errorf("an address advertised over BGP is not forwarded:\n%s", dump)
	}
	if err := f.apply(ctx, services, won("192.0.2.1"), nil, false); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.String()
	}
	if m := got["ironlb_dataplane_rules"]; !strings.Contains(m, "value:1}") {
		t.Errorf("ironlb_dataplane_rules: %s, want 1", m)
	}
	if m := got["ironlb_dataplane_sync_duration_seconds"]; !strings.Contains(m, `value:"full"`) || !strings.Contains(m, `value:"partial"`) {
		t.Errorf("sync duration lacks a full or partial series: %s", m)
	}
	if _, ok := got["ironlb_dataplane_last_sync_timestamp_seconds"]; !ok {
		t.Error("no last sync timestamp")
	}
}

func TestNewForwarderNone(t *testing.T) {
	for _, dp := range []string{"", DataplaneNone} {
		if f, err := newForwarder(Config{Dataplane: dp}); f != nil || err != nil {
			t.Errorf("dataplane %q: %v, %v; want nothing", dp, f, err)
		}
	}
	if _, err := newForwarder(Config{Dataplane: "ebpf"}); err == nil {
		t.Error("an unknown dataplane was accepted")
	}
	if _, err := newForwarder(Config{Dataplane: DataplaneIPVS, IPVSScheduler: "wlc"}); !errors.Is(err, ipvs.ErrScheduler) {
		t.Errorf("scheduler wlc: %v, want ipvs.ErrScheduler", err)
	}
}

// ipvsKernel is an IPVS table in memory, enough for the forwarder.
type ipvsKernel struct {
	services map[forwarding.Key]ipvs.Service
}

func (k *ipvsKernel) Services() ([]ipvs.Service, error) {
	var out []ipvs.Service
	for _, s := range k.services {
		s.Dests = nil
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ipvs.Service) int { return a.Key.Compare(b.Key) })
	return out, nil
}

func (k *ipvsKernel) Dests(s ipvs.Service) ([]ipvs.Dest, error) { return k.services[s.Key].Dests, nil }

func (k *ipvsKernel) Apply(op ipvs.Op) error {
	s := k.services[op.Service.Key]
	switch op.Kind {
	case ipvs.AddService, ipvs.UpdateService:
		s.Key, s.Scheduler, s.Flags = op.Service.Key, op.Service.Scheduler, op.Service.Flags
	case ipvs.DeleteService:
		delete(k.services, op.Service.Key)
		return nil
	case ipvs.AddDest:
		s.Dests = append(s.Dests, op.Dest)
	case ipvs.DeleteDest:
		s.Dests = slices.DeleteFunc(s.Dests, func(d ipvs.Dest) bool { return d.AddrPort == op.Dest.AddrPort })
	}
	k.services[op.Service.Key] = s
	return nil
}

// ipvsLink is the VIP interface in memory.
type ipvsLink map[netip.Addr]bool

func (l ipvsLink) Ensure() error { return nil }
func (l ipvsLink) Addrs() ([]netip.Addr, error) {
	return slices.SortedFunc(maps.Keys(l), netip.Addr.Compare), nil
}
func (l ipvsLink) Add(ip netip.Addr) error { l[ip] = true; return nil }
func (l ipvsLink) Del(ip netip.Addr) error { delete(l, ip); return nil }

// TestForwarderIPVS: with the IPVS backend too, only won addresses get a
// virtual service and a bound VIP, and the metrics follow.
func TestForwarderIPVS(t *testing.T) {
	k := &ipvsKernel{services: map[forwarding.Key]ipvs.Service{}}
	link := ipvsLink{}
	reg := prometheus.NewRegistry()
	f := newForwarderWith(ipvsSyncer{ipvs.NewWith(k, link, "mh")}, Config{NodeName: "node1", Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"},
		Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}, {IP: "2001:db8::1"}}}}}
	slice := func(at discoveryv1.AddressType, ip string) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "a-" + string(at), Labels: map[string]string{discoveryv1.LabelServiceName: "a"}},
			AddressType: at,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, NodeName: ptr("node1")}},
		}
	}
	services := deriveServices("node1", []corev1.Service{svc}, []discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, "10.244.1.2"), slice(discoveryv1.AddressTypeIPv6, "fd00::2")})
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	ctx := context.Background()

	if err := f.apply(ctx, services, map[netip.Addr]election.Announcement{v4: {IP: v4}, v6: {IP: v6}}, nil, false); err != nil {
		t.Fatal(err)
	}
	if len(k.services) != 2 || !link[v4] || !link[v6] {
		t.Fatalf("both won addresses should be forwarded: services %v, interface %v", k.services, link)
	}
	s := k.services[forwarding.Key{VIP: v6, Protocol: forwarding.UDP, Port: 53}]
	if s.Scheduler != "mh" || len(s.Dests) != 1 || s.Dests[0].AddrPort != netip.MustParseAddrPort("[fd00::2]:5353") || s.Dests[0].FwdMethod != ipvs.FwdMasq {
		t.Errorf("IPv6 service: %+v", s)
	}
	if err := f.apply(ctx, services, map[netip.Addr]election.Announcement{v4: {IP: v4}}, nil, false); err != nil {
		t.Fatal(err)
	}
	if len(k.services) != 1 || link[v6] {
		t.Errorf("a lost address is still forwarded: services %v, interface %v", k.services, link)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ironlb_dataplane_rules" && mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("ironlb_dataplane_rules: %v, want 1", mf)
		}
	}
}

// testService is Service ns/name of one port, at 192.0.2.<vip>, with
// eps ready endpoints on node1.
func testService(name string, vip byte, port int32, eps int) *service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: port}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: fmt.Sprintf("192.0.2.%d", vip)}}}}}
	es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Port: ptr(int32(8080))}}}
	for i := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.0.%d.%d", vip, i+1)}, NodeName: ptr("node1")})
	}
	return deriveServices("node1", []corev1.Service{s}, []discoveryv1.EndpointSlice{es})["ns/"+name]
}

// TestDesiredInPlace: whatever Services change, and however, the rules
// brought up to date in place are the rules computed from nothing.
func TestDesiredInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mine := map[netip.Addr]election.Announcement{}
	for v := range 8 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(v)})
		mine[ip] = election.Announcement{IP: ip}
	}
	f := &forwarder{}
	services := map[string]*service{}
	inPlace := 0
	for step := range 2000 {
		// Change one Service: new endpoints, a new address (ten
		// addresses for up to twelve Services, eight of them won:
		// conflicts and lost addresses happen), or gone.
		name := fmt.Sprintf("s%d", rng.IntN(12))
		switch rng.IntN(4) {
		case 0:
			delete(services, "ns/"+name)
		default:
			if sv := testService(name, byte(rng.IntN(10)), int32(80+rng.IntN(2)), rng.IntN(3)); sv != nil {
				services["ns/"+name] = sv
			}
		}
		services = maps.Clone(services)
		got, changed := f.desired(services, mine, nil, step%50 != 0)
		if changed != nil {
			inPlace++
		}
		want, _ := forwardedRules(services, mine, nil)
		if !maps.EqualFunc(got, want, func(a, b forwarding.Rule) bool {
			return a.Key == b.Key && a.Service == b.Service && slices.Equal(a.Endpoints, b.Endpoints)
		}) {
			t.Fatalf("step %d: in place %v\nfrom nothing %v", step, got, want)
		}
	}
	// Conflicts send it back to computing everything: the test must
	// still have seen in-place updates.
	t.Logf("%d of 2000 steps updated in place", inPlace)
	if inPlace < 200 {
		t.Errorf("only %d of 2000 steps were updated in place", inPlace)
	}
}

// checkSyncer checks what the forwarder tells a backend: changed, when
// not nil, names every key whose rule differs from the previous call's,
// and is nil after a failed sync; then it passes the call on, or fails
// it without passing it on when fail says so.
type checkSyncer struct {
	t      *testing.T
	next   syncer
	fail   func() bool
	last   map[forwarding.Key]forwarding.Rule
	failed bool
	calls  int
	known  int
}

func (c *checkSyncer) sync(ctx context.Context, rules map[forwarding.Key]forwarding.Rule, changed []forwarding.Key, full bool) (syncResult, error) {
	c.calls++
	if changed != nil {
		c.known++
		if c.failed {
			c.t.Errorf("call %d: changed %v after a failed sync, want nil", c.calls, changed)
		}
		differs := func(k forwarding.Key) {
			a, had := c.last[k]
			b, has := rules[k]
			if (had != has || !slices.Equal(a.Endpoints, b.Endpoints)) && !slices.Contains(changed, k) {
				c.t.Errorf("call %d: %v changed (%v -> %v) but is not in changed %v", c.calls, k, a.Endpoints, b.Endpoints, changed)
			}
		}
		for k := range rules {
			differs(k)
		}
		for k := range c.last {
			differs(k)
		}
	}
	c.last = maps.Clone(rules)
	c.failed = c.fail()
	if c.failed {
		return syncResult{}, errors.New("injected failure")
	}
	return c.next.sync(ctx, rules, changed, full)
}

// TestForwarderChangedKeys: through random Service changes and failed
// syncs, the forwarder names to its backend every key that changed, and
// the nftables backend, told only those, ends each sync with the table a
// full sync of the rules computed from nothing builds.
func TestForwarderChangedKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fake := knftables.NewFake(knftables.InetFamily, nft.Table)
	check := &checkSyncer{t: t, next: nftSyncer{nft.NewWith(fake)}, fail: func() bool { return rng.IntN(20) == 0 }}
	logged := &ruleLog{rules: map[string]string{}}
	f := newForwarderWith(check, Config{NodeName: "node1", Registry: prometheus.NewRegistry(), Logger: slog.New(logged)})
	mine := map[netip.Addr]election.Announcement{}
	for v := range 8 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(v)})
		mine[ip] = election.Announcement{IP: ip}
	}
	services := map[string]*service{}
	ctx := context.Background()
	for step := range 1000 {
		for range 1 + rng.IntN(2) {
			name := fmt.Sprintf("s%d", rng.IntN(12))
			switch rng.IntN(4) {
			case 0:
				delete(services, "ns/"+name)
			default:
				if sv := testService(name, byte(rng.IntN(10)), int32(80+rng.IntN(2)), rng.IntN(4)); sv != nil {
					services["ns/"+name] = sv
				}
			}
		}
		services = maps.Clone(services)
		if err := f.apply(ctx, services, mine, nil, step%50 != 0); err != nil {
			continue
		}
		want, _ := forwardedRules(services, mine, nil)
		scratch := knftables.NewFake(knftables.InetFamily, nft.Table)
		if _, err := nft.NewWith(scratch).Sync(ctx, want, nil, true); err != nil {
			t.Fatal(err)
		}
		if got, want := forwardingLines(fake.Dump()), forwardingLines(scratch.Dump()); got != want {
			t.Fatalf("step %d: the forwarder left\n%s\na full sync builds\n%s", step, got, want)
		}
		// The log, read from the start, tells what is forwarded now.
		said := map[string]string{}
		for _, r := range want {
			said[fmt.Sprintf("%s %s/%d", r.VIP, r.Protocol, r.Port)] = r.Service + " " + fmt.Sprint(r.Endpoints)
		}
		if !maps.Equal(logged.rules, said) {
			t.Fatalf("step %d: the log says\n%v\nforwarded is\n%v", step, logged.rules, said)
		}
	}
	// Conflicts between Services (as in TestDesiredInPlace) and failures
	// send the forwarder back to computing everything.
	t.Logf("%d of %d syncs were told what changed", check.known, check.calls)
	if check.known < check.calls/4 {
		t.Errorf("only %d of %d syncs were told what changed", check.known, check.calls)
	}
}

// ruleLog replays the forwarder's "forwarding set" and "forwarding
// removed" lines: what the log says is forwarded, by address and port.
type ruleLog struct{ rules map[string]string }

func (l *ruleLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *ruleLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *ruleLog) WithGroup(string) slog.Handler            { return l }

func (l *ruleLog) Handle(_ context.Context, r slog.Record) error {
	a := map[string]string{}
	r.Attrs(func(at slog.Attr) bool { a[at.Key] = at.Value.String(); return true })
	switch k := a["ip"] + " " + a["port"]; r.Message {
	case "forwarding set":
		l.rules[k] = a["service"] + " " + a["endpoints"]
	case "forwarding removed":
		delete(l.rules, k)
	}
	return nil
}

// TestFoldChanges: changes logged late fold to one per key, from the first
// rule to the last, and those that end where they began go.
func TestFoldChanges(t *testing.T) {
	rule := func(vip string, svc string, ep string) forwarding.Rule {
		return forwarding.Rule{Key: forwarding.Key{VIP: netip.MustParseAddr(vip), Protocol: forwarding.TCP, Port: 80}, Service: svc,
			Endpoints: []netip.AddrPort{netip.MustParseAddrPort(ep)}}
	}
	a1, a2, a3 := rule("192.0.2.1", "ns/a", "10.0.0.1:80"), rule("192.0.2.1", "ns/a", "10.0.0.2:80"), rule("192.0.2.1", "ns/b", "10.0.0.3:80")
	b1 := rule("192.0.2.2", "ns/c", "10.0.0.4:80")
	c1, c2 := rule("192.0.2.3", "ns/d", "10.0.0.5:80"), rule("192.0.2.3", "ns/d", "10.0.0.6:80")
	got := foldChanges([]ruleChange{
		{old: a1, new: a2, had: true, has: true}, {new: b1, has: true}, {old: a2, new: a3, had: true, has: true},
		{old: b1, had: true}, {old: c1, new: c2, had: true, has: true}, {old: c2, new: c1, had: true, has: true},
	})
	want := []ruleChange{{old: a1, new: a3, had: true, has: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("folded to %+v, want %+v", got, want)
	}
}

// forwardingLines is a table dump's lines, sorted, without the endpoint
// chains no element jumps to: the nftables backend keeps those, and which
// it keeps depends on its history, not on what it forwards.
func forwardingLines(dump string) string {
	lines := strings.Split(dump, "\n")
	jumped := map[string]bool{}
	for _, l := range lines {
		if _, target, ok := strings.Cut(l, "goto "); ok {
			jumped[strings.Fields(target)[0]] = true
		}
	}
	var out []string
next:
	for _, l := range lines {
		for _, f := range strings.Fields(l) {
			if (strings.HasPrefix(f, "eps4-") || strings.HasPrefix(f, "eps6-")) && !jumped[f] {
				continue next
			}
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// nopSyncer programs nothing and says so.
type nopSyncer struct{}

func (nopSyncer) sync(context.Context, map[forwarding.Key]forwarding.Rule, []forwarding.Key, bool) (syncResult, error) {
	return syncResult{}, nil
}

// BenchmarkForwarderEndpointChange is the forwarder's own cost of one
// endpoint change at 10,000 Services of 10 endpoints, all won by this
// node, over a backend that programs nothing (the nftables backend's
// share is BenchmarkEndpointChangeGo in internal/dataplane/nft).
func BenchmarkForwarderEndpointChange(b *testing.B) {
	const n = 10000
	snap := benchSnapshot(n)
	mine := map[netip.Addr]election.Announcement{}
	for _, sv := range snap.services {
		for _, ip := range sv.IPs {
			mine[ip] = election.Announcement{IP: ip}
		}
	}
	f := newForwarderWith(nopSyncer{}, Config{NodeName: "node1", Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	if err := f.apply(ctx, snap.services, mine, nil, false); err != nil {
		b.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(snap.services))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A new *service, as the store derives one: its first rule's
		// first endpoint moves to an address no other endpoint has.
		key := keys[(i*7919)%n]
		sv := *snap.services[key]
		sv.rules = slices.Clone(sv.rules)
		eps := slices.Clone(sv.rules[0].Endpoints)
		eps[0] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200 + byte(i>>16), byte(i >> 8), byte(i)}), 8080)
		sv.rules[0].Endpoints = eps
		snap.services[key] = &sv
		if err := f.apply(ctx, snap.services, mine, nil, true); err != nil {
			b.Fatal(err)
		}
	}
}
