// Package manifests_test checks the YAML under manifests/ against a real
// kube-apiserver.
package manifests_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/ironlb/ironlb/internal/apiservertest"
)

const namespaceFile = "namespace.yaml"

// warnings collects the API server's warnings, such as Pod Security
// violations, which a dry run reports but does not refuse.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// TestManifestsDryRun creates the namespace for real and then every other
// object listed in kustomization.yaml with a server-side dry run, so the API
// server runs defaulting, validation, RBAC escalation checks and Pod Security
// admission on them. Any error or warning fails the test.
func TestManifestsDryRun(t *testing.T) {
	cfg := apiservertest.Start(t)
	// The harness may install CRDs from elsewhere; these are the ones we ship.
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(apiservertest.Root(), "manifests", "crds")},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("installing CRDs from manifests/crds: %v", err)
	}
	warn := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warn
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	files := kustomizationResources(t)
	if !slices.Contains(files, namespaceFile) {
		t.Fatalf("kustomization.yaml does not list %s", namespaceFile)
	}
	for _, ns := range decode(t, namespaceFile) {
		if err := c.Create(ctx, ns); err != nil {
			t.Fatalf("%s: creating %s: %v", namespaceFile, ns.GetName(), err)
		}
	}
	for _, file := range files {
		if file == namespaceFile {
			continue
		}
		for _, obj := range decode(t, file) {
			id := file + ": " + obj.GetKind() + " " + obj.GetName()
			err := c.Create(ctx, obj.DeepCopy(), client.DryRunAll)
			if apierrors.IsAlreadyExists(err) {
				// The CRDs are installed already: a dry-run update checks them.
				cur := &unstructured.Unstructured{}
				cur.SetGroupVersionKind(obj.GroupVersionKind())
				if err = c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err == nil {
					obj.SetResourceVersion(cur.GetResourceVersion())
					err = c.Update(ctx, obj, client.DryRunAll)
				}
			}
			if err != nil {
				t.Errorf("%s: %v", id, err)
			}
			if w := warn.take(); len(w) > 0 {
				t.Errorf("%s: server warnings: %s", id, strings.Join(w, "; "))
			}
		}
	}
}

// TestKustomizationListsEveryManifest fails when a YAML file under manifests/
// is missing from kustomization.yaml, or when kubectl (if installed) cannot
// build the kustomization.
func TestKustomizationListsEveryManifest(t *testing.T) {
	listed := kustomizationResources(t)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "kustomization.yaml" {
			return err
		}
		if ext := filepath.Ext(path); (ext == ".yaml" || ext == ".yml") && !slices.Contains(listed, filepath.ToSlash(path)) {
			t.Errorf("%s is not listed in kustomization.yaml", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not found; not building the kustomization")
		return
	}
	out, err := exec.Command(kubectl, "kustomize", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize manifests: %v\n%s", err, out)
	}
	var want int
	for _, f := range listed {
		want += len(decode(t, f))
	}
	if got := len(decodeBytes(t, "kubectl kustomize", out)); got != want {
		t.Errorf("kubectl kustomize built %d objects, the listed files hold %d", got, want)
	}
}

func kustomizationResources(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if len(k.Resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	return k.Resources
}

func decode(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return decodeBytes(t, file, b)
}

func decodeBytes(t *testing.T, name string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := d.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatalf("%s holds no objects", name)
	}
	return objs
}
