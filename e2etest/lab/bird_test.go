package lab

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBIRDConfig(t *testing.T) {
	netw := &Network{Nodes: []Node{{Name: "node1", IPv4: netip.MustParseAddr("192.168.100.11"), IPv6: netip.MustParseAddr("fd00:100::11")}}}
	cases := []struct {
		name      string
		opts      BIRDOptions
		want, not []string
	}{
		{
			name: "alone, as in lab-recipes",
			want: []string{
				"router id 192.168.100.1;",
				"protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }",
				"template bgp nodes4 { local 192.168.100.1 as 64500; ipv4 { import all; export none; }; }",
				"template bgp nodes6 { local fd00:100::1 as 64500; ipv6 { import all; export none; }; }",
				"protocol bgp node1_v4 from nodes4 { neighbor 192.168.100.11 as 64501; }",
			},
			not: []string{" port ", "passive", "kernel table"},
		},
		{
			name: "beside FRR",
			opts: BIRDOptions{Address: netip.MustParseAddr("192.168.100.2"), Port: 1179, Table: 100, Passive: true},
			want: []string{
				"router id 192.168.100.2;",
				"protocol kernel k4 { kernel table 100; ipv4 { import none; export all; }; merge paths on; }",
				"protocol kernel k6 { kernel table 100; ipv6 { import none; export all; }; merge paths on; }",
				"template bgp nodes4 { local 192.168.100.2 port 1179 as 64500; passive on; ipv4 { import all; export none; }; }",
				"template bgp nodes6 { local fd00:100::1 port 1179 as 64500; passive on; ipv6 { import all; export none; }; }",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := birdConfig(netw, 64500, 64501, c.opts)
			lines := strings.Split(conf, "\n")
			for _, w := range c.want {
				found := false
				for _, l := range lines {
					found = found || l == w
				}
				if !found {
					t.Errorf("no line %q in:\n%s", w, conf)
				}
			}
			for _, n := range c.not {
				if strings.Contains(conf, n) {
					t.Errorf("%q in:\n%s", n, conf)
				}
			}
			// bird -p parses the file without starting, where BIRD is installed.
			if _, err := exec.LookPath("bird"); err != nil {
				return
			}
			p := filepath.Join(t.TempDir(), "bird.conf")
			if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("bird", "-p", "-c", p).CombinedOutput(); err != nil {
				t.Errorf("bird -p: %v: %s\n%s", err, out, conf)
			}
		})
	}
}
