// Package lab runs a small IronLB cluster on this machine: etcd and a real
// kube-apiserver as long-lived processes, IronLB's CRDs, and IronLB's own
// binaries, all recorded in a state directory so that another program can
// stop them later.
//
// It is a library so that the demo (e2etest/cmd/lab), the end-to-end tests
// and benchmarks, and later a network-namespace lab share one way to start
// and stop things. Addresses are configurable for that reason: the API
// server binds to loopback today and to a lab bridge address later.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/ironlb/ironlb/api/v1beta1"
)

// DefaultDir is the demo's state directory unless IRONLB_LAB_DIR says
// otherwise.
const DefaultDir = "/tmp/ironlb-lab"

// DirFromEnv returns IRONLB_LAB_DIR, or DefaultDir.
func DirFromEnv() string {
	if d := os.Getenv("IRONLB_LAB_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

// ErrAlreadyUp is returned, wrapped, by Start and Up when the state
// directory already holds a running lab; the returned Lab is that lab.
var ErrAlreadyUp = errors.New("lab already up")

// Config says where a lab lives and what it runs.
type Config struct {
	// Dir is the state directory: certificates, etcd data, logs, the
	// kubeconfig and state.json. It is created, and removed by Down.
	Dir string
	// Root is the repository's top directory: manifests/ is read from it.
	Root string
	// Assets holds kube-apiserver and etcd; default Root/bin/k8s.
	Assets string
	// BindAddress is where the API server listens; default 127.0.0.1.
	BindAddress string
	// ServiceCIDRs is the API server's --service-cluster-ip-range; default
	// dual-stack 10.96.0.0/16,fd00:96::/108.
	ServiceCIDRs string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("lab config: no state directory")
	}
	if c.Root == "" {
		return errors.New("lab config: no repository root")
	}
	if c.Assets == "" {
		c.Assets = filepath.Join(c.Root, "bin", "k8s")
	}
	if c.BindAddress == "" {
		c.BindAddress = "127.0.0.1"
	}
	if c.ServiceCIDRs == "" {
		c.ServiceCIDRs = "10.96.0.0/16,fd00:96::/108"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Lab is a running lab. Its exported fields are what state.json holds.
type Lab struct {
	Dir        string `json:"dir"`
	Kubeconfig string `json:"kubeconfig"`
	// Server is the API server's URL.
	Server    string     `json:"server"`
	Processes []*Process `json:"processes"`
	// Extra holds what callers want to find again after a restart of the
	// program that started the lab (the demo keeps its URLs here).
	Extra map[string]string `json:"extra,omitempty"`
	// Network is the lab's namespaces, when it has nodes.
	Network *Network `json:"network,omitempty"`

	mu   sync.Mutex
	rest *rest.Config
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// save writes state.json atomically. It is called after every process
// start, so that Down finds everything even if Start fails half-way.
func (l *Lab) save() error {
	l.mu.Lock()
	b, err := json.MarshalIndent(l, "", "  ")
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encoding lab state: %w", err)
	}
	tmp := statePath(l.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	if err := os.Rename(tmp, statePath(l.Dir)); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	return nil
}

// Load reads the lab recorded in dir. It returns an error wrapping
// os.ErrNotExist when there is none.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("loading lab state from %s: %w", dir, err)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", statePath(dir), err)
	}
	return l, nil
}

// Process returns the recorded process with that name, the latest one if
// it was started more than once.
func (l *Lab) Process(name string) *Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range slices.Backward(l.Processes) {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Alive reports whether every recorded process that was not stopped on
// purpose still runs; names lists those that do not.
func (l *Lab) Alive() (dead []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	latest := map[string]*Process{}
	for _, p := range l.Processes {
		latest[p.Name] = p
	}
	for name, p := range latest {
		if !p.Alive() {
			dead = append(dead, name)
		}
	}
	slices.Sort(dead)
	return dead
}

// StartProcess starts argv as a lab process named name, logging to
// Dir/<name>.log, and records it in state.json before returning. To run it
// in a network namespace, prefix argv with "ip", "netns", "exec", NS: ip
// execs the program, so the recorded PID is the program's own.
func (l *Lab) StartProcess(name string, env []string, argv ...string) (*Process, error) {
	p, err := startProcess(name, filepath.Join(l.Dir, name+".log"), env, argv...)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.Processes = append(l.Processes, p)
	l.mu.Unlock()
	return p, l.save()
}

// Rest returns a client config for the lab's cluster admin.
func (l *Lab) Rest() (*rest.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rest == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading lab kubeconfig %s: %w", l.Kubeconfig, err)
		}
		// Labs create many objects at once; the client must not be the limit.
		cfg.QPS, cfg.Burst = 1000, 2000
		l.rest = cfg
	}
	return rest.CopyConfig(l.rest), nil
}

// Scheme knows core Kubernetes types, CRDs and IronLB's types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextv1.AddToScheme, v1beta1.AddToScheme} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("building scheme: %v", err))
		}
	}
	return s
}

// Client returns a controller-runtime client for the lab's cluster admin.
// Make a new one after installing CRDs, so that it discovers them.
func (l *Lab) Client() (client.Client, error) {
	cfg, err := l.Rest()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, fmt.Errorf("creating client for %s: %w", l.Server, err)
	}
	return c, nil
}

// Start starts etcd and the API server in cfg.Dir, installs IronLB's
// namespace and CRDs, and returns once the API server is ready. When
// cfg.Dir already holds a healthy lab, it returns that lab and an error
// wrapping ErrAlreadyUp; a lab found half dead is stopped and started
// afresh.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if old, err := Load(cfg.Dir); err == nil {
		dead := old.Alive()
		readyErr := old.ready(ctx)
		if len(dead) == 0 && readyErr == nil {
			return old, fmt.Errorf("%w in %s", ErrAlreadyUp, cfg.Dir)
		}
		fmt.Fprintf(cfg.Log, "lab in %s is not healthy (stopped: %v, API server: %v); restarting it\n", cfg.Dir, dead, readyErr)
		if err := Down(cfg.Dir); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating lab directory: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving lab directory %s: %w", cfg.Dir, err)
	}
	l := &Lab{Dir: dir, Extra: map[string]string{}}
	if err := l.save(); err != nil {
		return nil, err
	}
	if err := l.startControlPlane(ctx, cfg); err != nil {
		return l, fmt.Errorf("%w (logs in %s; `Down` cleans up)", err, dir)
	}
	if err := l.install(ctx, cfg); err != nil {
		return l, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return l, nil
}

func (l *Lab) startControlPlane(ctx context.Context, cfg Config) error {
	// etcd is only the API server's, so it stays on loopback wherever the
	// API server listens.
	ports, err := FreePorts("127.0.0.1", 2)
	if err != nil {
		return err
	}
	apiPort, err := FreePorts(cfg.BindAddress, 1)
	if err != nil {
		return err
	}
	ports = append(ports, apiPort...)
	etcdClient := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	etcdPeer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	fmt.Fprintf(cfg.Log, "starting etcd on %s\n", etcdClient)
	if _, err := l.StartProcess("etcd", nil,
		filepath.Join(cfg.Assets, "etcd"),
		"--name=lab",
		"--data-dir="+filepath.Join(l.Dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=lab="+etcdPeer,
		"--log-level=warn",
	); err != nil {
		return err
	}

	sans := []string{"127.0.0.1", "::1", "localhost", cfg.BindAddress, "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	p, err := writePKI(l.Dir, sans)
	if err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("generating admin token: %w", err)
	}
	token := hex.EncodeToString(tok)
	tokens := filepath.Join(l.Dir, "tokens.csv")
	// token,user,uid,"groups": system:masters is bound to cluster-admin.
	if err := os.WriteFile(tokens, []byte(token+`,lab-admin,lab-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	l.Server = "https://" + net.JoinHostPort(cfg.BindAddress, strconv.Itoa(ports[2]))
	if err := l.writeKubeconfig(p.caPEM, token); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Log, "starting kube-apiserver on %s\n", l.Server)
	if _, err := l.StartProcess("kube-apiserver", nil,
		filepath.Join(cfg.Assets, "kube-apiserver"),
		"--etcd-servers="+etcdClient,
		"--bind-address="+cfg.BindAddress,
		"--advertise-address="+cfg.BindAddress,
		"--secure-port="+strconv.Itoa(ports[2]),
		// The default reconciler refuses a loopback advertise address, and
		// nothing here needs the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(l.Dir, "certs"),
		"--tls-cert-file="+p.serveCert,
		"--tls-private-key-file="+p.serveKey,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-key-file="+p.saKey,
		"--service-account-signing-key-file="+p.saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+cfg.ServiceCIDRs,
	); err != nil {
		return err
	}
	return l.waitReady(ctx, 90*time.Second)
}

func (l *Lab) writeKubeconfig(ca []byte, token string) error {
	l.Kubeconfig = filepath.Join(l.Dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: l.Server, CertificateAuthorityData: ca}
	kc.AuthInfos["lab-admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "lab-admin", Namespace: "default"}
	kc.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*kc, l.Kubeconfig); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return l.save()
}

// waitReady polls /readyz until it answers ok, the API server dies, or d
// passes.
func (l *Lab) waitReady(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		if last = l.ready(ctx); last == nil {
			return nil
		}
		if p := l.Process("kube-apiserver"); p != nil && !p.Alive() {
			return fmt.Errorf("kube-apiserver exited before it was ready; see %s", p.Log)
		}
		if p := l.Process("etcd"); p != nil && !p.Alive() {
			return fmt.Errorf("etcd exited before the API server was ready; see %s", p.Log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s/readyz: %w (last: %v)", l.Server, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ready asks the API server's /readyz once.
func (l *Lab) ready(ctx context.Context) error {
	cfg, err := l.Rest()
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("creating readyz client: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.Server+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("readyz request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s: %s", resp.Status, body)
	}
	return nil
}

// FreePorts returns n TCP ports on host that were free a moment ago. They
// are found together, so they differ from each other.
func FreePorts(host string, n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", host, err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Stop stops the lab's processes and removes its directory.
func (l *Lab) Stop() error { return l.down() }

// Down stops every process recorded in dir (newest first, each with its
// process group) and removes dir. A dir without a lab is not an error.
func Down(dir string) error {
	l, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(dir); statErr == nil {
			// A lab that failed before writing its state: nothing runs.
			return os.RemoveAll(dir)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return l.down()
}

func (l *Lab) down() error {
	l.mu.Lock()
	procs := slices.Clone(l.Processes)
	l.mu.Unlock()
	var errs []error
	for _, p := range slices.Backward(procs) {
		if err := p.Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Keep the state so that another Down can try again.
		return fmt.Errorf("stopping lab in %s: %w", l.Dir, err)
	}
	if l.Network != nil {
		if err := l.Network.Destroy(); err != nil {
			return fmt.Errorf("removing lab network %s: %w", l.Network.Prefix, err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		return fmt.Errorf("removing lab directory: %w", err)
	}
	return nil
}
