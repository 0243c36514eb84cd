// Command lab starts and stops IronLB's demo: a lab of network namespaces
// (a switch, a router, a client and three nodes), a real kube-apiserver,
// the controller, one speaker per node, and an example pool and dual-stack
// LoadBalancer Service that a speaker announces with ARP and NDP.
//
//	lab up     start (or, when already up, show it again and start any
//	           stopped speaker)
//	lab down   stop every process, remove the namespaces, the root
//	           namespace's interface and the state directory
//
// It needs root. The state directory is /tmp/ironlb-lab unless
// IRONLB_LAB_DIR says otherwise; the binaries are bin/controller and
// bin/speaker unless IRONLB_CONTROLLER or IRONLB_SPEAKER name others. Run
// it from the repository root (make demo does).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ironlb/ironlb/e2etest/lab"
)

// prefix names the demo's namespaces (ilb-router, ilb-node1, ...) and its
// root namespace interface (ilb-mg).
const prefix = "ilb"

// The example Service the demo shows.
var demoService = client.ObjectKey{Namespace: "demo", Name: "web"}

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: lab up|down")
		os.Exit(2)
	}
	// The lab uses controller-runtime's client, which warns with a stack
	// trace when no logger is set; its logs are not wanted here.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir := lab.DirFromEnv()
	var err error
	if os.Args[1] == "up" {
		err = up(ctx, dir)
	} else {
		err = down(ctx, dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func up(ctx context.Context, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces)")
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("run from the repository root (no go.mod in %s)", root)
	}
	examples, err := filepath.Glob(filepath.Join(root, "e2etest", "testdata", "demo", "*.yaml"))
	if err != nil {
		return err
	}
	binary := func(env, name string) string {
		if p := os.Getenv(env); p != "" {
			return p
		}
		return filepath.Join(root, "bin", name)
	}
	index, err := pickIndex(ctx, dir)
	if err != nil {
		return err
	}
	l, err := lab.Up(ctx, lab.UpConfig{
		ClusterConfig: lab.ClusterConfig{
			Config:     lab.Config{Dir: dir, Root: root, Log: os.Stdout},
			Prefix:     prefix,
			Index:      index,
			Controller: binary("IRONLB_CONTROLLER", "controller"),
			Speaker:    binary("IRONLB_SPEAKER", "speaker"),
			PodServer:  binary("IRONLB_PODSERVER", "podserver"),
			// The speakers forward to their node's pods, so a curl from the
			// client reaches a pod through the address.
			SpeakerArgs:    []string{"--dataplane=nftables"},
			ControllerArgs: []string{"--ip-mode=Proxy"},
			Forwarding:     true,
		},
		Examples: examples,
	})
	switch {
	case errors.Is(err, lab.ErrAlreadyUp):
		fmt.Printf("the lab is already up in %s\n", dir)
	case err != nil:
		// Leave nothing half-started behind.
		if downErr := lab.Down(dir); downErr != nil {
			err = errors.Join(err, downErr)
		}
		return err
	}
	return show(ctx, l)
}

// pickIndex returns the management subnet index: the recorded lab's, else
// 1 unless something uses 10.255.1.1 already. It refuses to start when the
// demo's namespaces exist without a lab recorded in dir, as CreateNetwork
// would fail half-way.
func pickIndex(ctx context.Context, dir string) (int, error) {
	if old, err := lab.Load(dir); err == nil && old.Network != nil {
		return old.Network.Index, nil
	}
	if left := leftovers(ctx, prefix); len(left) > 0 {
		return 0, fmt.Errorf("%s exist(s) but no lab is recorded in %s: a demo started with another IRONLB_LAB_DIR "+
			"(stop it with that IRONLB_LAB_DIR and make demo-down), or leftovers of a crashed one "+
			"(remove them with ip netns del / ip link del)", strings.Join(left, ", "), dir)
	}
	return lab.FreeIndex(ctx, 1)
}

// leftovers lists the namespaces named prefix-* and the root namespace
// interface prefix-mg that exist now.
func leftovers(ctx context.Context, prefix string) []string {
	var left []string
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
				left = append(left, "namespace "+f[0])
			}
		}
	}
	hostIf := (&lab.Network{Prefix: prefix}).HostIf()
	if exec.CommandContext(ctx, "ip", "link", "show", hostIf).Run() == nil {
		left = append(left, "interface "+hostIf)
	}
	return left
}

func down(ctx context.Context, dir string) error {
	p := prefix
	if old, err := lab.Load(dir); err == nil && old.Network != nil {
		p = old.Network.Prefix
	}
	if err := lab.Down(dir); err != nil {
		return err
	}
	if left := leftovers(ctx, p); len(left) > 0 {
		return fmt.Errorf("lab in %s stopped, but %s remain(s) (another IRONLB_LAB_DIR's demo, or leftovers of a crashed one)",
			dir, strings.Join(left, ", "))
	}
	fmt.Printf("lab in %s stopped; no %s-* namespace or %s-mg interface is left\n", dir, p, p)
	return nil
}

// show prints what the demo made, running the commands a user would.
func show(ctx context.Context, l *lab.Lab) error {
	netw := l.Network
	kc := l.Kubeconfig
	router := netw.NS("router")
	fmt.Println()
	if err := run(ctx, "kubectl get svc,ipaddresspools,servicel2statuses -A",
		"kubectl", "--kubeconfig", kc, "get", "svc,ipaddresspools,servicel2statuses", "-A"); err != nil {
		return err
	}

	c, err := l.Client()
	if err != nil {
		return err
	}
	var svc corev1.Service
	if err := c.Get(ctx, demoService, &svc); err != nil {
		return fmt.Errorf("getting Service %s: %w", demoService, err)
	}
	var v4, v6 netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil && ip.Is4() && !v4.IsValid() {
			v4 = ip
		} else if err == nil && ip.Is6() && !v6.IsValid() {
			v6 = ip
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		return fmt.Errorf("Service %s has addresses %v, want one of each family", demoService, svc.Status.LoadBalancer.Ingress)
	}
	owner := map[netip.Addr]lab.Node{}
	for _, ip := range []netip.Addr{v4, v6} {
		nd, err := l.WaitAnswer(ctx, 10*time.Second, ip)
		if err != nil {
			return err
		}
		owner[ip] = nd
	}

	arping := fmt.Sprintf("arping -c 2 -i eth0 %s", v4)
	ndisc := fmt.Sprintf("ndisc6 -1 %s eth0", v6)
	fmt.Println()
	if err := run(ctx, "ip netns exec "+router+" "+arping, append([]string{"ip", "netns", "exec", router}, strings.Fields(arping)...)...); err != nil {
		return err
	}
	fmt.Printf("=> %s is answered by %s (eth0 MAC %s)\n\n", v4, owner[v4].Name, owner[v4].MAC)
	if err := run(ctx, "ip netns exec "+router+" "+ndisc, append([]string{"ip", "netns", "exec", router}, strings.Fields(ndisc)...)...); err != nil {
		return err
	}
	fmt.Printf("=> %s is answered by %s (eth0 MAC %s)\n\n", v6, owner[v6].Name, owner[v6].MAC)

	client := netw.NS("client")
	curl := fmt.Sprintf("curl -sS --max-time 5 http://%s/", v4)
	if err := run(ctx, "ip netns exec "+client+" "+curl, append([]string{"ip", "netns", "exec", client}, strings.Fields(curl)...)...); err != nil {
		return err
	}
	fmt.Printf("=> a pod behind %s answered, and saw the client's own address %s\n\n", owner[v4].Name, lab.ClientIPv4)

	fmt.Println("Nodes (namespace, LAN addresses, eth0 MAC, speaker PID):")
	for _, nd := range netw.Nodes {
		pid := "not running"
		if p := l.Process("speaker-" + nd.Name); p != nil && p.Alive() {
			pid = fmt.Sprint(p.PID)
		}
		var announces []string
		for _, ip := range []netip.Addr{v4, v6} {
			if owner[ip].Name == nd.Name {
				announces = append(announces, ip.String())
			}
		}
		note := ""
		if len(announces) > 0 {
			note = "  announces " + strings.Join(announces, ", ")
		}
		fmt.Printf("  %-6s %-10s %-15s %-13s %s  %-6s%s\n", nd.Name, nd.NS, nd.IPv4, nd.IPv6, nd.MAC, pid, note)
	}

	logOf := func(name string) string {
		if p := l.Process(name); p != nil {
			return p.Log
		}
		return "(not running)"
	}
	failPID := "<pid>"
	if p := l.Process("speaker-" + owner[v4].Name); p != nil {
		failPID = fmt.Sprint(p.PID)
	}
	fmt.Printf(`
demo/web's endpoints are the pods pod1 (behind node1, 10.244.1.2:8080) and
pod2 (behind node2, 10.244.2.2:8080): network namespaces running an HTTP
server. No kubelet runs, so its EndpointSlice is written by hand
(e2etest/testdata/demo/20-service.yaml). It has externalTrafficPolicy
Local, so only node1 and node2 announce it, and the speakers run with
--dataplane=nftables: the announcing node DNATs to its own pod (see
ip netns exec <node ns> nft list table inet ironlb).

The lab runs in the background (state in %[1]s). Explore it, as root:
  export KUBECONFIG=%[2]s
  kubectl get svc,ipaddresspools,l2advertisements,servicel2statuses -A
  kubectl get events -n demo
  ip netns exec %[3]s %[4]s
  ip netns exec %[3]s %[5]s
  ip netns exec %[11]s %[12]s
  grep '"service announced"' %[1]s/speaker-*.log
  controller log: %[6]s   metrics: %[7]s
  speaker logs:   %[1]s/speaker-node{1,2,3}.log

Try a failover: stop the speaker of %[8]s, which announces %[9]s,
then ask again; another node's MAC answers within seconds:
  kill -TERM %[10]s
  ip netns exec %[3]s %[4]s
  kubectl get servicel2statuses -A
make demo again starts stopped speakers.

Stop it all:
  make demo-down
`, l.Dir, kc, router, arping, ndisc, logOf("controller"), l.Extra[lab.ExtraMetricsURL],
		owner[v4].Name, v4, failPID, client, curl)
	return nil
}

// run prints "$ shown", then runs argv with its output on ours.
func run(ctx context.Context, shown string, argv ...string) error {
	fmt.Println("$ " + shown)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running %s: %w", shown, err)
	}
	return nil
}
