package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ClusterConfig is a lab with a network of nodes, the controller, and one
// speaker per node running in the node's namespace.
type ClusterConfig struct {
	Config
	// Prefix names the lab's namespaces; at most 12 characters.
	Prefix string
	// Index picks the management subnet 10.255.<Index>.0/24.
	Index int
	// Nodes is how many node namespaces to make (default 3).
	Nodes int
	// Controller, Speaker and PodServer are the binaries; PodServer
	// (e2etest/cmd/podserver) serves HTTP in every pod namespace.
	Controller, Speaker, PodServer string
	// SpeakerArgs are extra flags for every speaker (--dataplane=nftables),
	// ControllerArgs for the controller (--ip-mode=Proxy to match).
	SpeakerArgs, ControllerArgs []string
	// Forwarding turns on IPv4 and IPv6 forwarding in the node namespaces,
	// which a node needs to DNAT service traffic on to its pods.
	Forwarding bool
}

// PodPort is where every pod's HTTP server listens.
const PodPort = 8080

// speakerLabels mark the speaker Pods, as the DaemonSet's template does.
var speakerLabels = map[string]string{"app.kubernetes.io/name": "ironlb", "app.kubernetes.io/component": "speaker"}

// Speaker ports inside each node namespace.
const (
	SpeakerMetricsPort = 7473
	SpeakerHealthPort  = 8082
)

// StartCluster builds the network, starts the API server on the management
// subnet, registers the nodes as Node objects with a speaker Pod each (no
// kubelet runs: their status is written here), and starts the controller
// and the speakers.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Lab, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if err := cfg.Config.defaults(); err != nil {
		return nil, err
	}
	if old, err := Load(cfg.Dir); err == nil {
		if len(old.Alive()) == 0 && old.ready(ctx) == nil {
			return old, fmt.Errorf("%w in %s", ErrAlreadyUp, cfg.Dir)
		}
		if err := Down(cfg.Dir); err != nil {
			return nil, err
		}
	}
	netw, err := CreateNetwork(ctx, cfg.Prefix, cfg.Index, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	if cfg.Forwarding {
		for _, nd := range netw.Nodes {
			if _, err := run(ctx, "ip", "netns", "exec", nd.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
				_ = netw.Destroy()
				return nil, fmt.Errorf("turning on forwarding in %s: %w", nd.Name, err)
			}
		}
	}
	cfg.BindAddress = netw.HostAddr().String()
	l, err := Start(ctx, cfg.Config)
	if l == nil {
		_ = netw.Destroy()
		return nil, err
	}
	l.Network = netw
	if serr := l.save(); serr != nil {
		return l, errors.Join(err, serr)
	}
	if err != nil {
		return l, err
	}
	c, err := l.Client()
	if err != nil {
		return l, err
	}
	if err := registerNodes(ctx, c, netw); err != nil {
		return l, err
	}
	ports, err := FreePorts("127.0.0.1", 2)
	if err != nil {
		return l, err
	}
	if err := l.StartController(ctx, cfg.Controller, fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), cfg.ControllerArgs...); err != nil {
		return l, err
	}
	for _, pod := range netw.Pods {
		if cfg.PodServer == "" {
			break // pods without an application: fine for tests of announcing alone
		}
		if _, err := l.StartProcess("pod-"+pod.Name, nil, "ip", "netns", "exec", pod.NS, cfg.PodServer,
			"--name="+pod.Name, fmt.Sprintf("--listen=:%d", PodPort)); err != nil { // both families
			return l, err
		}
	}
	for _, nd := range netw.Nodes {
		if err := l.StartSpeaker(ctx, cfg.Speaker, nd.Name, cfg.SpeakerArgs...); err != nil {
			return l, err
		}
	}
	return l, nil
}

// registerNodes creates the Node objects, Ready and with their addresses,
// a speaker Pod on each, and the memberlist key Secret.
func registerNodes(ctx context.Context, c client.Client, netw *Network) error {
	// Without kube-controller-manager nobody creates the default
	// ServiceAccount, which Pod admission wants.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: Namespace}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating default service account: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "memberlist", Namespace: Namespace},
		StringData: map[string]string{"secretkey": base64.StdEncoding.EncodeToString(key)}}
	if err := c.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating memberlist secret: %w", err)
	}
	for _, nd := range netw.Nodes {
		if err := SetNodeReady(ctx, c, nd, true); err != nil {
			return err
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + nd.Name, Namespace: Namespace, Labels: speakerLabels},
			Spec: corev1.PodSpec{
				NodeName:    nd.Name,
				HostNetwork: true,
				Containers:  []corev1.Container{{Name: "speaker", Image: "ironlb/speaker:dev"}},
			},
		}
		if err := c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating speaker pod for %s: %w", nd.Name, err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: nd.IPv4.String(), PodIP: nd.IPv4.String(),
			PodIPs: []corev1.PodIP{{IP: nd.IPv4.String()}}}
		if err := c.Status().Update(ctx, pod); err != nil {
			return fmt.Errorf("writing speaker pod status for %s: %w", nd.Name, err)
		}
	}
	return nil
}

// SetNodeReady creates or updates a node's Node object with its addresses
// and a Ready condition, as a kubelet would.
func SetNodeReady(ctx context.Context, c client.Client, nd Node, ready bool) error {
	var node corev1.Node
	err := c.Get(ctx, client.ObjectKey{Name: nd.Name}, &node)
	if apierrors.IsNotFound(err) {
		node = corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd.Name, Labels: map[string]string{"kubernetes.io/hostname": nd.Name}}}
		if err := c.Create(ctx, &node); err != nil {
			return fmt.Errorf("creating node %s: %w", nd.Name, err)
		}
	} else if err != nil {
		return fmt.Errorf("reading node %s: %w", nd.Name, err)
	}
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	now := metav1.NewTime(time.Now())
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: "Lab",
		LastHeartbeatTime: now, LastTransitionTime: now}}
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: nd.IPv4.String()},
		{Type: corev1.NodeInternalIP, Address: nd.IPv6.String()},
		{Type: corev1.NodeHostName, Address: nd.Name},
	}
	if err := c.Status().Update(ctx, &node); err != nil {
		return fmt.Errorf("writing node %s status: %w", nd.Name, err)
	}
	return nil
}

// StartSpeaker starts the speaker for node inside its namespace and waits
// until its /readyz answers (its first election is done).
func (l *Lab) StartSpeaker(ctx context.Context, bin, node string, extraArgs ...string) error {
	nd, ok := l.Network.Node(node)
	if !ok {
		return fmt.Errorf("no node %q in the lab", node)
	}
	args := append([]string{"ip", "netns", "exec", nd.NS, bin,
		"--kubeconfig=" + l.Kubeconfig,
		"--node-name=" + node,
		"--namespace=" + Namespace,
		fmt.Sprintf("--metrics-addr=:%d", SpeakerMetricsPort),
		fmt.Sprintf("--health-addr=:%d", SpeakerHealthPort),
	}, extraArgs...)
	p, err := l.StartProcess("speaker-"+node, nil, args...)
	if err != nil {
		return err
	}
	return WaitHTTPOK(ctx, fmt.Sprintf("http://%s/readyz", netip.AddrPortFrom(nd.Mgmt, SpeakerHealthPort)), 60*time.Second, p)
}
