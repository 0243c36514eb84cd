// Package apiservertest starts a real kube-apiserver and etcd for tests, with
// IronLB's CRDs installed, through controller-runtime's envtest.
//
// The binaries come from KUBEBUILDER_ASSETS, or from bin/k8s at the root of
// the repository, where `make test` builds and caches them. A test run
// without them fails rather than skips: a skipped integration test would
// read as a pass.
package apiservertest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository's top directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// AssetsDir is where the kube-apiserver and etcd binaries are looked for.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(Root(), "bin", "k8s")
}

// Start starts an API server with IronLB's CRDs and returns a client config
// for a cluster admin. The server is stopped when the test ends.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	env := &envtest.Environment{
		BinaryAssetsDirectory: AssetsDir(),
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "manifests", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	// Dual-stack, so Services can ask for both families.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16,fd00:10::/108")
	cfg, err := env.Start()
	if err != nil {
		// envtest leaves etcd and the API server running when a later step
		// (installing CRDs) fails.
		_ = env.Stop()
		t.Fatalf("starting kube-apiserver and etcd from %s (run `make test`, which builds them): %v", AssetsDir(), err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver: %v", err)
		}
	})
	// Tests create many objects quickly; the client must not be the limit.
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// WriteKubeconfig writes a kubeconfig file for cfg to path, for tests that
// run real binaries against the server.
func WriteKubeconfig(t testing.TB, cfg *rest.Config, path string) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("writing kubeconfig %s: %v", path, err)
	}
}
