package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Namespace is where IronLB's pools and the controller's Lease live.
const Namespace = "ironlb-system"

// fieldOwner names the lab in managedFields.
const fieldOwner = client.FieldOwner("ironlb-lab")

// install applies manifests/namespace.yaml (or creates the namespace when
// the file is missing) and manifests/crds/, and waits until every CRD is
// Established.
func (l *Lab) install(ctx context.Context, cfg Config) error {
	c, err := l.Client()
	if err != nil {
		return err
	}
	nsFile := filepath.Join(cfg.Root, "manifests", "namespace.yaml")
	if _, err := os.Stat(nsFile); err == nil {
		if _, err := ApplyFiles(ctx, c, nsFile); err != nil {
			return err
		}
	} else {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
		if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", Namespace, err)
		}
	}
	crds, err := filepath.Glob(filepath.Join(cfg.Root, "manifests", "crds", "*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("no CRDs in %s", filepath.Join(cfg.Root, "manifests", "crds"))
	}
	fmt.Fprintf(cfg.Log, "installing %d CRDs\n", len(crds))
	objs, err := ApplyFiles(ctx, c, crds...)
	if err != nil {
		return err
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	return WaitCRDsEstablished(ctx, c, names...)
}

// ReadObjects decodes every YAML document in the files, in order.
func ReadObjects(paths ...string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading manifest: %w", err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("reading document %d of %s: %w", i, path, err)
			}
			u := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
				f.Close()
				return nil, fmt.Errorf("parsing document %d of %s: %w", i, path, err)
			}
			if len(u.Object) == 0 {
				continue // an empty document, such as a trailing ---
			}
			objs = append(objs, u)
		}
		f.Close()
	}
	return objs, nil
}

// ApplyFiles server-side applies every object in the files, in file and
// document order, so that a Namespace listed first exists before what
// goes in it.
func ApplyFiles(ctx context.Context, c client.Client, paths ...string) ([]*unstructured.Unstructured, error) {
	objs, err := ReadObjects(paths...)
	if err != nil {
		return nil, err
	}
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), fieldOwner, client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
		}
	}
	return objs, nil
}

// WaitCRDsEstablished waits until the named CRDs serve their resources.
func WaitCRDsEstablished(ctx context.Context, c client.Client, names ...string) error {
	pending := slices.Clone(names)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var still []string
		for _, name := range pending {
			var crd apiextv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
				return false, fmt.Errorf("getting CRD %s: %w", name, err)
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				still = append(still, name)
			}
		}
		pending = still
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRDs %v to be established: %w", pending, err)
	}
	return nil
}
