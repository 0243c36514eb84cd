package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/ironlb/ironlb/internal/routes"
)

// testRouter is a GoBGP server on 127.0.0.1 that plays the router: it
// listens on a free port and waits (passive) for the speaker's session
// from 127.0.0.2.
type testRouter struct {
	srv  *server.BgpServer
	port uint16
}

func startTestRouter(t *testing.T, asn, nodeASN uint32) *testRouter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := server.NewBgpServer(server.LoggerOption(&logger{log: slog.New(slog.DiscardHandler), peer: "router"}))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: asn, RouterId: "10.0.0.1",
		ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.StopBgp(context.Background(), &api.StopBgpRequest{}); srv.Stop() })
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.2", PeerAsn: nodeASN},
		Transport: &api.Transport{PassiveMode: true, LocalAddress: "127.0.0.1"},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return &testRouter{srv: srv, port: uint16(port)}
}

// prefixes are the prefixes in the router's RIB.
func (r *testRouter) prefixes(t *testing.T) []string {
	t.Helper()
	var out []string
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}}, func(d *api.Destination) {
		out = append(out, d.Prefix)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDynamicASN: a dynamicASN peer accepts a router of its kind only. The
// wrong kind is refused (reported in Status.Refused, never Established)
// and the router never receives a path.
func TestDynamicASN(t *testing.T) {
	const mine = 64501
	for _, tt := range []struct {
		mode      string
		routerASN uint32
		accepted  bool
	}{
		{DynamicInternal, mine, true},
		{DynamicInternal, 64500, false},
		{DynamicExternal, 64500, true},
		{DynamicExternal, mine, false},
	} {
		t.Run(fmt.Sprintf("%s/router-as-%d", tt.mode, tt.routerASN), func(t *testing.T) {
			t.Parallel()
			r := startTestRouter(t, tt.routerASN, mine)
			changed := make(chan struct{}, 1)
			s := New(Config{Node: "node1", Log: slog.New(slog.DiscardHandler), OnChange: func() {
				select {
				case changed <- struct{}{}:
				default:
				}
			}})
			t.Cleanup(func() { _ = s.Close(context.Background()) })
			pc := PeerConfig{Name: "tor", MyASN: mine, DynamicASN: tt.mode,
				Address: netip.MustParseAddr("127.0.0.1"), Port: r.port, Source: netip.MustParseAddr("127.0.0.2"),
				RouterID: netip.MustParseAddr("10.0.0.2"), ConnectRetry: time.Second, DisableMP: true}
			paths := map[string][]routes.Path{"tor": {{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Services: []string{"ns/web"}}}}
			ctx := context.Background()
			if err := s.Apply(ctx, []PeerConfig{pc}, paths); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(20 * time.Second)
			for {
				select {
				case <-changed:
					// What the speaker's sync loop does on a change.
					if err := s.Apply(ctx, []PeerConfig{pc}, paths); err != nil {
						t.Fatal(err)
					}
				case <-time.After(100 * time.Millisecond):
				case <-deadline:
					t.Fatalf("no verdict after 20 s: %+v, router has %v", s.Sessions(ctx), r.prefixes(t))
				}
				st := s.Sessions(ctx)[0]
				got := r.prefixes(t)
				if !tt.accepted && len(got) > 0 {
					t.Fatalf("a refused session gave the router %v", got)
				}
				if tt.accepted {
					if st.Refused != "" {
						t.Fatalf("refused: %s", st.Refused)
					}
					if st.State == StateEstablished && len(got) == 1 && got[0] == "198.51.100.10/32" {
						return
					}
					continue
				}
				if st.State == StateEstablished {
					t.Fatalf("a session of the wrong kind is reported Established")
				}
				if st.Refused != "" {
					if !strings.Contains(st.Refused, "dynamicASN "+tt.mode) {
						t.Errorf("refusal %q does not name the mode", st.Refused)
					}
					// It stays refused and pathless while GoBGP waits to retry.
					time.Sleep(time.Second)
					if got := r.prefixes(t); len(got) > 0 {
						t.Fatalf("router got %v after the refusal", got)
					}
					return
				}
			}
		})
	}
}

func TestCheckPeerASN(t *testing.T) {
	for _, tt := range []struct {
		pc   PeerConfig
		asn  uint32
		want bool // accepted
	}{
		{PeerConfig{MyASN: 1, PeerASN: 2}, 3, true}, // fixed: GoBGP checks
		{PeerConfig{MyASN: 1, DynamicASN: DynamicInternal}, 1, true},
		{PeerConfig{MyASN: 1, DynamicASN: DynamicInternal}, 2, false},
		{PeerConfig{MyASN: 1, DynamicASN: DynamicExternal}, 2, true},
		{PeerConfig{MyASN: 1, DynamicASN: DynamicExternal}, 1, false},
		{PeerConfig{MyASN: 1}, 2, false}, // neither: refused, not accepted blindly
	} {
		if got := tt.pc.checkPeerASN(tt.asn) == ""; got != tt.want {
			t.Errorf("%+v with router AS %d: accepted %v, want %v", tt.pc, tt.asn, got, tt.want)
		}
	}
}
