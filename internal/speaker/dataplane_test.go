package speaker

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"github.com/ironlb/ironlb/internal/dataplane/nft"
	"github.com/ironlb/ironlb/internal/election"
)

// TestForwarderOnlyAnnounced: the forwarder programs the addresses this
// node won and drops one it loses; the metrics follow.
func TestForwarderOnlyAnnounced(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, nft.Table)
	reg := prometheus.NewRegistry()
	f := newForwarderWith(nft.NewWith(fake), Config{NodeName: "node1", Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

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
	snap := snapshot{services: []corev1.Service{svc("a", "192.0.2.1"), svc("b", "192.0.2.2")}, slices: []discoveryv1.EndpointSlice{es("a"), es("b")}}
	won := func(ips ...string) map[netip.Addr]election.Announcement {
		m := map[netip.Addr]election.Announcement{}
		for _, ip := range ips {
			m[netip.MustParseAddr(ip)] = election.Announcement{IP: netip.MustParseAddr(ip)}
		}
		return m
	}
	ctx := context.Background()

	if err := f.apply(ctx, snap, won("192.0.2.1", "192.0.2.2")); err != nil {
		t.Fatal(err)
	}
	dump := fake.Dump()
	if !strings.Contains(dump, "192.0.2.1 . tcp . 80 : goto eps4-tcp-1") || !strings.Contains(dump, "192.0.2.2 . tcp . 80 : goto eps4-tcp-1") {
		t.Fatalf("both won addresses should be forwarded:\n%s", dump)
	}
	if err := f.apply(ctx, snap, won("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if dump := fake.Dump(); strings.Contains(dump, "192.0.2.2") {
		t.Errorf("a lost address is still forwarded:\n%s", dump)
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
	if _, err := newForwarder(Config{Dataplane: "ipvs"}); err == nil {
		t.Error("an unknown dataplane was accepted")
	}
}
