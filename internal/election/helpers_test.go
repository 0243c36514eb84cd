package election

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ips(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = ip(s)
	}
	return out
}

func sel(s string) labels.Selector {
	x, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return x
}

func sels(ss ...string) []labels.Selector {
	out := make([]labels.Selector, len(ss))
	for i, s := range ss {
		out[i] = sel(s)
	}
	return out
}

// kv builds a label map from "k=v" pairs.
func kv(pairs ...string) map[string]string {
	if len(pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return m
}

// up is an alive, healthy node.
func up(name string, lbls ...string) Node {
	return Node{Name: name, Labels: kv(lbls...), Alive: true}
}

func down(name string, lbls ...string) Node {
	return Node{Name: name, Labels: kv(lbls...)}
}

// cluster is an externalTrafficPolicy: Cluster Service with a ready
// endpoint somewhere.
func cluster(key, pool string, addrs ...string) Service {
	return Service{Key: key, Pool: pool, IPs: ips(addrs...), ReadyNodes: []string{"somewhere"}}
}

func local(key, pool string, ready []string, addrs ...string) Service {
	return Service{Key: key, Pool: pool, IPs: ips(addrs...), Local: true, ReadyNodes: ready}
}

func ann(addr, node string, ifaces []string, svcs ...string) Announcement {
	return Announcement{IP: ip(addr), Node: node, Interfaces: ifaces, Services: svcs}
}

func fmtResult(r Result) string {
	var b strings.Builder
	for _, a := range r.Announcements {
		fmt.Fprintf(&b, "  announce %s on %s ifaces=%v services=%v\n", a.IP, a.Node, a.Interfaces, a.Services)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  problem %s/%s service=%q pool=%q ip=%v: %s\n", p.Kind, p.Reason, p.Service, p.Pool, p.IP, p.Message)
	}
	return b.String()
}

// winners maps each announced address to its node.
func winners(t testing.TB, r Result) map[netip.Addr]Announcement {
	t.Helper()
	m := make(map[netip.Addr]Announcement, len(r.Announcements))
	for _, a := range r.Announcements {
		if _, dup := m[a.IP]; dup {
			t.Fatalf("%s announced twice", a.IP)
		}
		m[a.IP] = a
	}
	return m
}
