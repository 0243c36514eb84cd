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

// BIRD is a BIRD 2 instance in the lab's router namespace, peering with
// every node over IPv4 and IPv6. Its kernel protocols install what it
// learns (ECMP, `merge paths on`) in the router's kernel table.
type BIRD struct {
	// Dir holds the config, the pid file and the control socket.
	Dir string
	// Socket is the control socket, for birdc -s.
	Socket string
	// ASN is the router's AS; NodeASN the nodes'.
	ASN, NodeASN uint32
}

// BIRDConfig renders the router's bird.conf, as in lab-recipes: import
// all, export none, one protocol per node and family.
func BIRDConfig(netw *Network, asn, nodeASN uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n", RouterIPv4)
	b.WriteString("protocol device {}\n")
	b.WriteString("protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }\n")
	b.WriteString("protocol kernel k6 { ipv6 { import none; export all; }; merge paths on; }\n")
	fmt.Fprintf(&b, "template bgp nodes4 { local %s as %d; ipv4 { import all; export none; }; }\n", RouterIPv4, asn)
	fmt.Fprintf(&b, "template bgp nodes6 { local %s as %d; ipv6 { import all; export none; }; }\n", RouterIPv6, asn)
	for _, nd := range netw.Nodes {
		fmt.Fprintf(&b, "protocol bgp %s_v4 from nodes4 { neighbor %s as %d; }\n", nd.Name, nd.IPv4, nodeASN)
		fmt.Fprintf(&b, "protocol bgp %s_v6 from nodes6 { neighbor %s as %d; }\n", nd.Name, nd.IPv6, nodeASN)
	}
	return b.String()
}

// BIRDProtocol is the name of the BGP protocol for a node and family
// ("4" or "6") in BIRDConfig.
func BIRDProtocol(node, family string) string { return node + "_v" + family }

// StartBIRD starts bird in the router namespace, in the foreground as a
// lab process (so Down stops it), and waits until birdc answers.
func (l *Lab) StartBIRD(ctx context.Context, asn, nodeASN uint32) (*BIRD, error) {
	if l.Network == nil {
		return nil, fmt.Errorf("starting BIRD: the lab has no network")
	}
	b := &BIRD{Dir: filepath.Join(l.Dir, "bird-router"), ASN: asn, NodeASN: nodeASN}
	b.Socket = filepath.Join(b.Dir, "bird.ctl")
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating BIRD directory: %w", err)
	}
	conf := filepath.Join(b.Dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(BIRDConfig(l.Network, asn, nodeASN)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", conf, err)
	}
	if _, err := l.StartProcess("bird", nil, "ip", "netns", "exec", l.Network.NS("router"),
		"bird", "-f", "-c", conf, "-s", b.Socket, "-P", filepath.Join(b.Dir, "bird.pid")); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := b.Birdc(ctx, "show", "status")
		if err == nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("BIRD did not answer birdc: %w: %s (log in %s)", err, out, l.Dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Birdc runs one birdc command against this instance.
func (b *BIRD) Birdc(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", b.Socket}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("birdc %v: %w", args, err)
	}
	return out, nil
}
