package e2etest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/e2etest/lab"
)

// interopLab starts a cluster lab of its own (the first free index from
// from, prefix ilbi<idx>), stopped at the end of the test, with a pool
// and a BGPAdvertisement for it. The router-side BGP daemon and the
// BGPPeers are the test's.
func interopLab(t *testing.T, from int) *l2env {
	t.Helper()
	needRoot(t)
	l := ownLab(t, from, "ilbi", nil)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &l2env{t: t, lab: l, c: c, ctx: context.Background(), ns: "t-bgpi"}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&v1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.IPAddressPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:100::/64"}}})
	e.create(&v1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Namespace: lab.Namespace},
		Spec: v1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"bgp"}}})
	// Registered after the lab's Stop, so it runs first.
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range allNodes {
				logTail(t, l.Process("speaker-"+n).Log, "bgp", "route", "level=WARN", "level=ERROR")
			}
		}
	})
	return e
}

// routerPeers creates BGPPeers router-v4 and router-v6 (nodes AS 64501,
// router AS 64500, 2 s connect time).
func (e *l2env) routerPeers(mod func(*v1beta1.BGPPeerSpec)) {
	e.t.Helper()
	for name, addr := range map[string]string{"router-v4": lab.RouterIPv4.String(), "router-v6": lab.RouterIPv6.String()} {
		spec := v1beta1.BGPPeerSpec{MyASN: 64501, PeerASN: 64500, PeerAddress: addr,
			ConnectTime: &metav1.Duration{Duration: 2 * time.Second}}
		if mod != nil {
			mod(&spec)
		}
		e.create(&v1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace}, Spec: spec})
	}
}

// sessionStates maps "node/peer" to the BGPSessionState's state.
func (e *l2env) sessionStates() (map[string]string, error) {
	var list v1beta1.BGPSessionStateList
	if err := e.c.List(e.ctx, &list, client.InNamespace(lab.Namespace)); err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, s := range list.Items {
		st[s.Status.Node+"/"+s.Status.Peer] = s.Status.State
	}
	return st, nil
}

func (e *l2env) nodeAddrs() (v4, v6 []string) {
	for _, nd := range e.lab.Network.Nodes {
		v4 = append(v4, nd.IPv4.String())
		v6 = append(v6, nd.IPv6.String())
	}
	return v4, v6
}

// birdProtocols maps each BIRD protocol name to its Info column (the
// BGP state for BGP protocols).
func birdProtocols(ctx context.Context, b *lab.BIRD) (map[string]string, []byte, error) {
	out, err := b.Birdc(ctx, "show", "protocols")
	if err != nil {
		return nil, out, err
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// Name Proto Table State Since [date] Info
		if len(f) >= 6 && f[1] == "BGP" {
			st[f[0]] = f[len(f)-1]
		}
	}
	return st, out, nil
}

var birdPathRE = regexp.MustCompile(`unicast \[(\S+) `)

func TestBGPWithBIRD(t *testing.T) {
	e := interopLab(t, 210)
	bird, err := e.lab.StartBIRD(e.ctx, 64500, 64501)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := bird.Birdc(context.Background(), "show", "protocols", "all")
			t.Logf("BIRD protocols:\n%s", out)
			out, _ = bird.Birdc(context.Background(), "show", "route", "all")
			t.Logf("BIRD routes:\n%s", out)
		}
	})
	start := time.Now()
	e.routerPeers(nil)
	var protos []string
	for _, n := range allNodes {
		protos = append(protos, lab.BIRDProtocol(n, "4"), lab.BIRDProtocol(n, "6"))
	}
	e.eventually("all six sessions Established in BIRD", 60*time.Second, func() error {
		st, out, err := birdProtocols(e.ctx, bird)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		for _, p := range protos {
			if st[p] != "Established" {
				return fmt.Errorf("%s is %q:\n%s", p, st[p], out)
			}
		}
		return nil
	})
	t.Logf("BGPPeers created to six sessions Established in BIRD: %s", time.Since(start).Round(time.Millisecond))
	e.eventually("BGPSessionState objects say Established", 20*time.Second, func() error {
		st, err := e.sessionStates()
		if err != nil {
			return err
		}
		if len(st) != 6 {
			return fmt.Errorf("%d BGPSessionState objects, want 6: %v", len(st), st)
		}
		for k, s := range st {
			if s != "Established" {
				return fmt.Errorf("%s: %q", k, s)
			}
		}
		return nil
	})

	v4 := e.service("web4", false, corev1.IPv4Protocol, allNodes...)[0]
	v6 := e.service("web6", false, corev1.IPv6Protocol, allNodes...)[0]
	nodes4, nodes6 := e.nodeAddrs()
	for _, c := range []struct{ prefix, fam string }{{v4 + "/32", "4"}, {v6 + "/128", "6"}} {
		var want []string
		for _, n := range allNodes {
			want = append(want, lab.BIRDProtocol(n, c.fam))
		}
		svcStart := time.Now()
		e.eventually("BIRD has "+c.prefix+" from every node", 20*time.Second, func() error {
			out, err := bird.Birdc(e.ctx, "show", "route", "all", c.prefix)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			var got []string
			for _, m := range birdPathRE.FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("paths from %v, want %v:\n%s", got, want, out)
			}
			if !strings.Contains(string(out), "BGP.as_path: 64501") {
				return fmt.Errorf("no AS path 64501:\n%s", out)
			}
			return nil
		})
		t.Logf("%s from all three nodes in BIRD after %s", c.prefix, time.Since(svcStart).Round(time.Millisecond))
	}
	for _, c := range []struct {
		dst  string
		want []string
	}{{v4, nodes4}, {v6, nodes6}} {
		e.eventually(fmt.Sprintf("router's kernel route to %s via %v", c.dst, c.want), 10*time.Second, func() error {
			got, err := kernelNextHops(e.ctx, e.lab, c.dst)
			if err != nil {
				return err
			}
			if !slices.Equal(got, c.want) {
				return fmt.Errorf("next hops %v", got)
			}
			return nil
		})
	}
	out, _ := e.lab.Network.Exec(e.ctx, "router", "ip", "-6", "route", "show", v6)
	t.Logf("router kernel route for %s:\n%s", v6, out)
}

// gobgpPath is one path in gobgpd's RIB: the session it came on and its
// next hop (NEXT_HOP or MP_REACH_NLRI).
type gobgpPath struct{ Neighbor, NextHop string }

// gobgpPaths maps each prefix in gobgpd's global RIB to its paths, sorted.
func gobgpPaths(ctx context.Context, g *lab.GoBGPd, family string) (map[string][]gobgpPath, []byte, error) {
	out, err := g.Gobgp(ctx, "global", "rib", "-a", family, "-j")
	if err != nil {
		return nil, out, err
	}
	var rib map[string][]struct {
		NeighborIP string `json:"neighbor-ip"`
		Attrs      []struct {
			NextHop string `json:"nexthop"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(out, &rib); err != nil {
		return nil, out, fmt.Errorf("parsing rib: %w", err)
	}
	m := map[string][]gobgpPath{}
	for p, paths := range rib {
		for _, path := range paths {
			gp := gobgpPath{Neighbor: path.NeighborIP}
			for _, a := range path.Attrs {
				if a.NextHop != "" {
					gp.NextHop = a.NextHop
				}
			}
			m[p] = append(m[p], gp)
		}
		slices.SortFunc(m[p], func(a, b gobgpPath) int { return strings.Compare(a.Neighbor, b.Neighbor) })
	}
	return m, out, nil
}

func TestBGPWithGoBGPd(t *testing.T) {
	e := interopLab(t, 220)
	g, err := e.lab.StartGoBGPd(e.ctx, 64500, 64501)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := g.Gobgp(context.Background(), "neighbor")
			t.Logf("gobgpd neighbors:\n%s", out)
		}
	})
	start := time.Now()
	e.routerPeers(nil)
	e.eventually("BGPSessionState objects say Established", 60*time.Second, func() error {
		st, err := e.sessionStates()
		if err != nil {
			return err
		}
		if len(st) != 6 {
			return fmt.Errorf("%d BGPSessionState objects, want 6: %v", len(st), st)
		}
		for k, s := range st {
			if s != "Established" {
				return fmt.Errorf("%s: %q", k, s)
			}
		}
		return nil
	})
	t.Logf("BGPPeers created to six sessions Established: %s", time.Since(start).Round(time.Millisecond))
	out, _ := g.Gobgp(e.ctx, "neighbor")
	t.Logf("gobgpd neighbors:\n%s", out)

	v4 := e.service("web4", false, corev1.IPv4Protocol, allNodes...)[0]
	v6 := e.service("web6", false, corev1.IPv6Protocol, allNodes...)[0]
	nodes4, nodes6 := e.nodeAddrs()
	// gobgpd's peer group offers both families on every session and the
	// speaker is multiprotocol by default (disableMP false), so each node
	// sends each route on both of its sessions, with the next hop in the
	// route's own family: six paths, three next hops.
	var want4, want6 []gobgpPath
	for i := range nodes4 {
		want4 = append(want4, gobgpPath{nodes4[i], nodes4[i]})
		want6 = append(want6, gobgpPath{nodes4[i], nodes6[i]})
	}
	for i := range nodes6 {
		want4 = append(want4, gobgpPath{nodes6[i], nodes4[i]})
		want6 = append(want6, gobgpPath{nodes6[i], nodes6[i]})
	}
	for _, c := range []struct {
		fam, prefix string
		want        []gobgpPath
	}{{"ipv4", v4 + "/32", want4}, {"ipv6", v6 + "/128", want6}} {
		e.eventually(fmt.Sprintf("gobgpd has %s from %v", c.prefix, c.want), 20*time.Second, func() error {
			m, out, err := gobgpPaths(e.ctx, g, c.fam)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			if !slices.Equal(m[c.prefix], c.want) {
				return fmt.Errorf("paths %v:\n%s", m[c.prefix], out)
			}
			return nil
		})
	}
	out, _ = g.Gobgp(e.ctx, "global", "rib", "-a", "ipv6")
	t.Logf("gobgpd IPv6 RIB:\n%s", out)
}

func TestBGPPasswordMD5(t *testing.T) {
	const right, wrong = "ironlb-md5-right", "ironlb-md5-wrong"
	e := interopLab(t, 230)
	frr, err := e.lab.StartFRRWithPassword(e.ctx, 64500, 64501, right)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := frr.Vtysh(context.Background(), "show bgp summary")
			t.Logf("FRR:\n%s", out)
		}
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bgp-md5", Namespace: lab.Namespace},
		Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{corev1.BasicAuthPasswordKey: []byte(right)}}
	e.create(secret)
	e.create(&v1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v4", Namespace: lab.Namespace},
		Spec: v1beta1.BGPPeerSpec{MyASN: 64501, PeerASN: 64500, PeerAddress: lab.RouterIPv4.String(),
			ConnectTime:    &metav1.Duration{Duration: 2 * time.Second},
			PasswordSecret: corev1.SecretReference{Name: "bgp-md5"}}})
	nodes4, _ := e.nodeAddrs()

	// check: FRR and every BGPSessionState agree that the IPv4 sessions
	// are (or, want false, are not) Established.
	check := func(want bool) error {
		st, err := frrSummary(e.ctx, frr)
		if err != nil {
			return err
		}
		for _, p := range nodes4 {
			if (st[p] == "Established") != want {
				return fmt.Errorf("FRR: %s is %q", p, st[p])
			}
		}
		ss, err := e.sessionStates()
		if err != nil {
			return err
		}
		if len(ss) != 3 {
			return fmt.Errorf("%d BGPSessionState objects, want 3: %v", len(ss), ss)
		}
		for k, s := range ss {
			if (s == "Established") != want {
				return fmt.Errorf("BGPSessionState %s: %q", k, s)
			}
		}
		return nil
	}
	setPassword := func(pw string) time.Time {
		t.Helper()
		var s corev1.Secret
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(secret), &s); err != nil {
			t.Fatal(err)
		}
		s.Data[corev1.BasicAuthPasswordKey] = []byte(pw)
		at := time.Now()
		if err := e.c.Update(e.ctx, &s); err != nil {
			t.Fatal(err)
		}
		return at
	}

	start := time.Now()
	e.eventually("MD5 sessions Established with the right password", 60*time.Second, func() error { return check(true) })
	t.Logf("right password: Established after %s", time.Since(start).Round(time.Millisecond))

	at := setPassword(wrong)
	e.eventually("sessions down with the wrong password", 20*time.Second, func() error { return check(false) })
	t.Logf("wrong password: down after %s", time.Since(at).Round(time.Millisecond))
	// They must stay down: several connect retries (2 s) with the wrong key.
	hold := time.Now().Add(15 * time.Second)
	for time.Now().Before(hold) {
		if err := check(false); err != nil {
			t.Fatalf("with the wrong password: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	at = setPassword(right)
	e.eventually("sessions Established again with the right password", 60*time.Second, func() error { return check(true) })
	took := time.Since(at)
	t.Logf("right password again: Established (FRR and BGPSessionState) after %s", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Errorf("re-establishing took %s, target under 6s", took.Round(time.Millisecond))
	}
}
