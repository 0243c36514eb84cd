package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Network is the lab's wiring, all in network namespaces named after
// Prefix: a switch (a bridge) joining a router and the nodes on the LAN
// 192.168.100.0/24 and fd00:100::/64, and a client behind the router on
// 192.168.200.0/24 and fd00:200::/64. The root namespace joins the switch
// on a management subnet of its own, 10.255.<Index>.0/24, where the API
// server listens so that speakers in the nodes can reach it; labs with
// different Index values can run side by side.
type Network struct {
	Prefix string `json:"prefix"`
	Index  int    `json:"index"`
	Nodes  []Node `json:"nodes"`
	// Pods are one pod namespace per node, on its own veth to the node.
	Pods []Pod `json:"pods"`
}

// Pod is one pod namespace: podN behind nodeN, at 10.244.N.2/24 and
// fd00:244:N::2/64 with the node at 10.244.N.1 and fd00:244:N::1 as its
// default gateways.
type Pod struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	Node string     `json:"node"`
	IP   netip.Addr `json:"ip"`
	IPv6 netip.Addr `json:"ipv6"`
}

// Node is one node namespace.
type Node struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
	// Mgmt is the node's address on the management subnet.
	Mgmt netip.Addr `json:"mgmt"`
	// MAC is eth0's address, the one that answers ARP for won IPs.
	MAC string `json:"mac"`
}

// Router addresses on the LAN, and the client's.
var (
	RouterIPv4 = netip.MustParseAddr("192.168.100.1")
	RouterIPv6 = netip.MustParseAddr("fd00:100::1")
	ClientIPv4 = netip.MustParseAddr("192.168.200.2")
	ClientIPv6 = netip.MustParseAddr("fd00:200::2")
)

// NS returns the full name of one of the lab's namespaces: "sw", "router",
// "client" or a node name.
func (n *Network) NS(name string) string { return n.Prefix + "-" + name }

// HostIf is the root namespace's interface on the management subnet.
func (n *Network) HostIf() string { return n.Prefix + "-mg" }

// HostAddr is the root namespace's management address, where the API
// server listens.
func (n *Network) HostAddr() netip.Addr {
	return netip.AddrFrom4([4]byte{10, 255, byte(n.Index), 1})
}

// CreateNetwork builds the namespaces and links. On error it removes what
// it made.
func CreateNetwork(ctx context.Context, prefix string, index, nodes int) (_ *Network, err error) {
	if index < 1 || index > 254 {
		return nil, fmt.Errorf("network index %d: want 1..254", index)
	}
	if len(prefix)+3 > 15 {
		return nil, fmt.Errorf("network prefix %q: at most 12 characters (interface names)", prefix)
	}
	n := &Network{Prefix: prefix, Index: index}
	for i := 1; i <= nodes; i++ {
		n.Nodes = append(n.Nodes, Node{
			Name: fmt.Sprintf("node%d", i),
			NS:   n.NS(fmt.Sprintf("node%d", i)),
			IPv4: netip.AddrFrom4([4]byte{192, 168, 100, byte(10 + i)}),
			IPv6: netip.MustParseAddr(fmt.Sprintf("fd00:100::%d", 10+i)),
			Mgmt: netip.AddrFrom4([4]byte{10, 255, byte(index), byte(10 + i)}),
		})
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("pod%d", i)
		n.Pods = append(n.Pods, Pod{Name: name, NS: n.NS(name), Node: fmt.Sprintf("node%d", i),
			IP: netip.AddrFrom4([4]byte{10, 244, byte(i), 2}), IPv6: netip.MustParseAddr(fmt.Sprintf("fd00:244:%d::2", i))})
	}
	defer func() {
		if err != nil {
			_ = n.Destroy()
		}
	}()
	sw, router, client := n.NS("sw"), n.NS("router"), n.NS("client")
	var cmds [][]string
	add := func(args ...string) { cmds = append(cmds, args) }
	for _, ns := range append([]string{sw, router, client}, n.nodeNamespaces()...) {
		add("ip", "netns", "add", ns)
		add("ip", "-n", ns, "link", "set", "lo", "up")
	}
	for _, pod := range n.Pods {
		add("ip", "netns", "add", pod.NS)
		add("ip", "-n", pod.NS, "link", "set", "lo", "up")
	}
	add("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	add("ip", "-n", sw, "link", "set", "br0", "up")
	plug := func(ns, port string) {
		add("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		add("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
		add("ip", "-n", ns, "link", "set", "eth0", "up")
	}
	plug(router, "sw-router")
	add("ip", "-n", router, "addr", "add", RouterIPv4.String()+"/24", "dev", "eth0")
	add("ip", "-n", router, "addr", "add", RouterIPv6.String()+"/64", "dev", "eth0", "nodad")
	for _, nd := range n.Nodes {
		plug(nd.NS, "sw-"+nd.Name)
		add("ip", "-n", nd.NS, "addr", "add", nd.IPv4.String()+"/24", "dev", "eth0")
		add("ip", "-n", nd.NS, "addr", "add", nd.IPv6.String()+"/64", "dev", "eth0", "nodad")
		add("ip", "-n", nd.NS, "addr", "add", nd.Mgmt.String()+"/24", "dev", "eth0")
		add("ip", "-n", nd.NS, "route", "add", "default", "via", RouterIPv4.String())
		add("ip", "-n", nd.NS, "-6", "route", "add", "default", "via", RouterIPv6.String())
	}
	// Each pod on a veth to its node; the node routes for it.
	for i, pod := range n.Pods {
		node := n.Nodes[i].NS
		gw := netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 1})
		add("ip", "-n", node, "link", "add", "veth-"+pod.Name, "type", "veth", "peer", "name", "eth0", "netns", pod.NS)
		add("ip", "-n", node, "link", "set", "veth-"+pod.Name, "up")
		add("ip", "-n", pod.NS, "link", "set", "eth0", "up")
		add("ip", "-n", node, "addr", "add", gw.String()+"/24", "dev", "veth-"+pod.Name)
		add("ip", "-n", pod.NS, "addr", "add", pod.IP.String()+"/24", "dev", "eth0")
		add("ip", "-n", pod.NS, "route", "add", "default", "via", gw.String())
		gw6 := fmt.Sprintf("fd00:244:%d::1", i+1)
		add("ip", "-n", node, "addr", "add", gw6+"/64", "dev", "veth-"+pod.Name, "nodad")
		add("ip", "-n", pod.NS, "addr", "add", pod.IPv6.String()+"/64", "dev", "eth0", "nodad")
		add("ip", "-n", pod.NS, "-6", "route", "add", "default", "via", gw6)
	}
	// The client, behind the router.
	add("ip", "-n", router, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", client)
	add("ip", "-n", router, "link", "set", "eth1", "up")
	add("ip", "-n", client, "link", "set", "eth0", "up")
	add("ip", "-n", router, "addr", "add", "192.168.200.1/24", "dev", "eth1")
	add("ip", "-n", router, "addr", "add", "fd00:200::1/64", "dev", "eth1", "nodad")
	add("ip", "-n", client, "addr", "add", ClientIPv4.String()+"/24", "dev", "eth0")
	add("ip", "-n", client, "addr", "add", ClientIPv6.String()+"/64", "dev", "eth0", "nodad")
	add("ip", "-n", client, "route", "add", "default", "via", "192.168.200.1")
	add("ip", "-n", client, "-6", "route", "add", "default", "via", "fd00:200::1")
	add("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// The root namespace on the management subnet only.
	add("ip", "link", "add", n.HostIf(), "type", "veth", "peer", "name", "mg", "netns", sw)
	add("ip", "-n", sw, "link", "set", "mg", "master", "br0", "up")
	add("ip", "link", "set", n.HostIf(), "up")
	add("ip", "addr", "add", n.HostAddr().String()+"/24", "dev", n.HostIf())
	for _, c := range cmds {
		if _, err := run(ctx, c...); err != nil {
			return nil, err
		}
	}
	for i := range n.Nodes {
		out, err := run(ctx, "ip", "-n", n.Nodes[i].NS, "-br", "link", "show", "eth0")
		if err != nil {
			return nil, err
		}
		// "eth0@if12  UP  aa:bb:cc:dd:ee:ff <...>"
		f := strings.Fields(string(out))
		if len(f) < 3 {
			return nil, fmt.Errorf("reading %s eth0 MAC from %q", n.Nodes[i].Name, out)
		}
		n.Nodes[i].MAC = f[2]
	}
	return n, nil
}

func (n *Network) nodeNamespaces() []string {
	var out []string
	for _, nd := range n.Nodes {
		out = append(out, nd.NS)
	}
	return out
}

// PodOn returns the pod behind node.
func (n *Network) PodOn(node string) (Pod, bool) {
	for _, p := range n.Pods {
		if p.Node == node {
			return p, true
		}
	}
	return Pod{}, false
}

// Destroy removes the namespaces and the root namespace's interface. It
// kills nothing: stop processes first (deleting a namespace does not).
func (n *Network) Destroy() error {
	var errs []error
	ctx := context.Background()
	if _, err := run(ctx, "ip", "link", "show", n.HostIf()); err == nil {
		if _, err := run(ctx, "ip", "link", "del", n.HostIf()); err != nil {
			errs = append(errs, err)
		}
	}
	namespaces := append([]string{n.NS("sw"), n.NS("router"), n.NS("client")}, n.nodeNamespaces()...)
	for _, p := range n.Pods {
		namespaces = append(namespaces, p.NS)
	}
	for _, ns := range namespaces {
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Node returns the named node.
func (n *Network) Node(name string) (Node, bool) {
	for _, nd := range n.Nodes {
		if nd.Name == name {
			return nd, true
		}
	}
	return Node{}, false
}

// Exec runs argv in the lab namespace ns (a short name such as "router")
// and returns its combined output.
func (n *Network) Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", n.NS(ns)}, argv...)...)
}

// FreeIndex returns a management subnet index in [from, 254] that no root
// namespace interface uses now.
func FreeIndex(ctx context.Context, from int) (int, error) {
	out, err := run(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return 0, err
	}
	for i := from; i <= 254; i++ {
		if !bytes.Contains(out, []byte(" 10.255."+strconv.Itoa(i)+".1/")) {
			return i, nil
		}
	}
	return 0, errors.New("no free management subnet in 10.255.0.0/16")
}

func run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}
