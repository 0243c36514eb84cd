package lab

import (
	"context"
	"fmt"
	"net/netip"
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
	return birdConfig(netw, asn, nodeASN, BIRDOptions{})
}

// BIRDOptions lets a BIRD instance run beside FRR in the router
// namespace: FRR listens on *:179 and owns the main table, so BIRD gets
// an address and port of its own for the nodes to dial, and a kernel
// table of its own for its routes. The zero value is BIRD alone, as in
// lab-recipes.
type BIRDOptions struct {
	// Address is BIRD's IPv4 address on the router's eth0 (added to it,
	// /24) and its router ID. Zero means RouterIPv4, already there.
	Address netip.Addr
	// Port is the TCP port BIRD listens on; 0 means 179.
	Port uint16
	// Table is the kernel table its kernel protocols export to; 0 means
	// the main table.
	Table int
	// Passive makes BIRD wait for the nodes to connect.
	Passive bool
}

func birdConfig(netw *Network, asn, nodeASN uint32, o BIRDOptions) string {
	v4 := RouterIPv4
	if o.Address.IsValid() {
		v4 = o.Address
	}
	var local, bgpOpts, table string
	if o.Port != 0 {
		local = fmt.Sprintf(" port %d", o.Port)
	}
	if o.Passive {
		bgpOpts = " passive on;"
	}
	if o.Table != 0 {
		table = fmt.Sprintf(" kernel table %d;", o.Table)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n", v4)
	b.WriteString("protocol device {}\n")
	fmt.Fprintf(&b, "protocol kernel k4 {%s ipv4 { import none; export all; }; merge paths on; }\n", table)
	fmt.Fprintf(&b, "protocol kernel k6 {%s ipv6 { import none; export all; }; merge paths on; }\n", table)
	fmt.Fprintf(&b, "template bgp nodes4 { local %s%s as %d;%s ipv4 { import all; export none; }; }\n", v4, local, asn, bgpOpts)
	fmt.Fprintf(&b, "template bgp nodes6 { local %s%s as %d;%s ipv6 { import all; export none; }; }\n", RouterIPv6, local, asn, bgpOpts)
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
	return l.StartBIRDWith(ctx, asn, nodeASN, BIRDOptions{})
}

// StartBIRDWith is StartBIRD with BIRDOptions, for a BIRD beside FRR.
// Stop it with l.Process("bird").Stop; the address stays on eth0.
func (l *Lab) StartBIRDWith(ctx context.Context, asn, nodeASN uint32, o BIRDOptions) (*BIRD, error) {
	if l.Network == nil {
		return nil, fmt.Errorf("starting BIRD: the lab has no network")
	}
	if o.Address.IsValid() && o.Address != RouterIPv4 {
		if out, err := l.Network.Exec(ctx, "router", "ip", "addr", "replace", netip.PrefixFrom(o.Address, 24).String(), "dev", "eth0"); err != nil {
			return nil, fmt.Errorf("adding BIRD's address %s to the router: %w: %s", o.Address, err, out)
		}
	}
	b := &BIRD{Dir: filepath.Join(l.Dir, "bird-router"), ASN: asn, NodeASN: nodeASN}
	b.Socket = filepath.Join(b.Dir, "bird.ctl")
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating BIRD directory: %w", err)
	}
	conf := filepath.Join(b.Dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(l.Network, asn, nodeASN, o)), 0o644); err != nil {
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
