package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FRR is an FRR instance (zebra and bgpd) in the lab's router namespace,
// peering with every node over IPv4 and IPv6. zebra installs the routes
// it learns in the router's kernel table, so tests read ECMP next hops
// with `ip route`.
type FRR struct {
	// Dir holds the config, pid files, logs and the vty sockets.
	Dir string
	// ASN is the router's AS; NodeASN the nodes'.
	ASN, NodeASN uint32
}

// FRRConfig renders the router's frr.conf: a peer group per family, each
// node a member, ECMP over up to 8 paths. The gotchas are from
// lab-recipes: eBGP routes are refused without `no bgp ebgp-requires-policy`,
// FRR's 120 s default connect timer would leave a session down for minutes
// against speakers that only dial out, and without `no bgp default
// ipv4-unicast` the IPv6 sessions would carry IPv4 too.
func FRRConfig(netw *Network, asn, nodeASN uint32) string {
	return frrConfig(netw, asn, nodeASN, "")
}

// frrConfig is FRRConfig with a TCP MD5 password on both peer groups
// ("" for none).
func frrConfig(netw *Network, asn, nodeASN uint32, password string) string {
	var b strings.Builder
	b.WriteString("frr defaults traditional\n")
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n", asn, RouterIPv4)
	for _, g := range []string{"NODES4", "NODES6"} {
		fmt.Fprintf(&b, " neighbor %s peer-group\n neighbor %s remote-as %d\n neighbor %s timers connect 5\n", g, g, nodeASN, g)
		if password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", g, password)
		}
	}
	for _, nd := range netw.Nodes {
		fmt.Fprintf(&b, " neighbor %s peer-group NODES4\n neighbor %s peer-group NODES6\n", nd.IPv4, nd.IPv6)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n  neighbor NODES4 activate\n exit-address-family\n")
	b.WriteString(" address-family ipv6 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n  neighbor NODES6 activate\n exit-address-family\n")
	return b.String()
}

// StartFRR starts zebra and bgpd in the router namespace, as lab
// processes (so Down stops them), and waits until vtysh answers.
func (l *Lab) StartFRR(ctx context.Context, asn, nodeASN uint32) (*FRR, error) {
	return l.StartFRRWithPassword(ctx, asn, nodeASN, "")
}

// StartFRRWithPassword is StartFRR with `neighbor GROUP password` (TCP
// MD5) for every node, "" for none.
func (l *Lab) StartFRRWithPassword(ctx context.Context, asn, nodeASN uint32, password string) (*FRR, error) {
	if l.Network == nil {
		return nil, fmt.Errorf("starting FRR: the lab has no network")
	}
	f := &FRR{Dir: filepath.Join(l.Dir, "frr-router"), ASN: asn, NodeASN: nodeASN}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating FRR directory: %w", err)
	}
	// The daemons drop to the frr user: it must reach its directory.
	if err := os.Chmod(l.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("opening lab directory to FRR: %w", err)
	}
	conf := filepath.Join(f.Dir, "frr.conf")
	if err := os.WriteFile(conf, []byte(frrConfig(l.Network, asn, nodeASN, password)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", conf, err)
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return nil, fmt.Errorf("FRR needs its frr user (apt-get install frr): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{f.Dir, conf} {
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, fmt.Errorf("handing %s to frr: %w", p, err)
		}
	}
	ns := l.Network.NS("router")
	for _, d := range []string{"zebra", "bgpd"} {
		// In the foreground (no -d): ip netns exec execs the daemon, so the
		// recorded PID is the daemon's and Down stops it.
		if _, err := l.StartProcess("frr-"+d, nil, "ip", "netns", "exec", ns, "/usr/lib/frr/"+d,
			"-f", conf, "-i", filepath.Join(f.Dir, d+".pid"), "-z", filepath.Join(f.Dir, "zserv.api"),
			"--vty_socket", f.Dir, "-P", "0", "--log", "file:"+filepath.Join(f.Dir, d+".log")); err != nil {
			return nil, err
		}
		if d == "zebra" {
			// bgpd connects to zebra's socket at start; give it a moment.
			if err := waitFile(ctx, filepath.Join(f.Dir, "zserv.api"), 10*time.Second); err != nil {
				return nil, err
			}
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := f.Vtysh(ctx, "show bgp summary json")
		if err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("FRR in %s did not answer vtysh: %w: %s (logs in %s)", ns, err, out, f.Dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Vtysh runs vtysh commands against this instance and returns the output.
func (f *FRR) Vtysh(ctx context.Context, cmds ...string) ([]byte, error) {
	args := []string{"--vty_socket", f.Dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.CommandContext(ctx, "vtysh", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vtysh %v: %w", cmds, err)
	}
	return out, nil
}

func waitFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not there after %s", path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
