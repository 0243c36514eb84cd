package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GoBGPd is a gobgpd in the lab's router namespace: it listens on 179 and
// accepts the nodes as dynamic neighbors (192.168.100.0/24 and
// fd00:100::/64), keeps every path (multipath), and installs nothing in
// the kernel. Tests read its RIB over the gRPC API on a unix socket.
type GoBGPd struct {
	// Dir holds the config and the API socket.
	Dir string
	// Socket is the API socket, for gobgp --target unix://Socket.
	Socket string
	// ASN is the router's AS; NodeASN the nodes'.
	ASN, NodeASN uint32
}

// GoBGPdConfig renders the router's gobgpd.toml.
func GoBGPdConfig(asn, nodeASN uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n", asn, RouterIPv4)
	b.WriteString("[global.use-multiple-paths.config]\n  enabled = true\n")
	fmt.Fprintf(&b, "[[peer-groups]]\n  [peer-groups.config]\n    peer-group-name = \"nodes\"\n    peer-as = %d\n", nodeASN)
	for _, f := range []string{"ipv4-unicast", "ipv6-unicast"} {
		fmt.Fprintf(&b, "  [[peer-groups.afi-safis]]\n    [peer-groups.afi-safis.config]\n      afi-safi-name = %q\n", f)
	}
	for _, p := range []string{"192.168.100.0/24", "fd00:100::/64"} {
		fmt.Fprintf(&b, "[[dynamic-neighbors]]\n  [dynamic-neighbors.config]\n    prefix = %q\n    peer-group = \"nodes\"\n", p)
	}
	return b.String()
}

// StartGoBGPd starts gobgpd in the router namespace as a lab process (so
// Down stops it) and waits until its API answers.
func (l *Lab) StartGoBGPd(ctx context.Context, asn, nodeASN uint32) (*GoBGPd, error) {
	if l.Network == nil {
		return nil, fmt.Errorf("starting gobgpd: the lab has no network")
	}
	g := &GoBGPd{Dir: filepath.Join(l.Dir, "gobgpd-router"), ASN: asn, NodeASN: nodeASN}
	g.Socket = filepath.Join(g.Dir, "api.sock")
	if err := os.MkdirAll(g.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating gobgpd directory: %w", err)
	}
	conf := filepath.Join(g.Dir, "gobgpd.toml")
	if err := os.WriteFile(conf, []byte(GoBGPdConfig(asn, nodeASN)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", conf, err)
	}
	if _, err := l.StartProcess("gobgpd", nil, "ip", "netns", "exec", l.Network.NS("router"),
		"gobgpd", "-f", conf, "--api-hosts", "unix://"+g.Socket, "--pprof-disable", "-p", "-l", "info"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := g.Gobgp(ctx, "global")
		if err == nil {
			return g, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("gobgpd did not answer: %w: %s (log in %s)", err, out, l.Dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Gobgp runs the gobgp CLI against this instance.
func (g *GoBGPd) Gobgp(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "gobgp", append([]string{"--target", "unix://" + g.Socket}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("gobgp %v: %w", args, err)
	}
	return out, nil
}
