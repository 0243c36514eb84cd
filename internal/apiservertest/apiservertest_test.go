package apiservertest

import (
	"context"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestStartInstallsCRDs checks the harness itself: the server answers and
// every IronLB CRD is established.
func TestStartInstallsCRDs(t *testing.T) {
	cfg := Start(t)
	s := runtime.NewScheme()
	if err := apiextv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	var crds apiextv1.CustomResourceDefinitionList
	if err := c.List(context.Background(), &crds); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, crd := range crds.Items {
		got[crd.Name] = true
	}
	for _, want := range []string{"ipaddresspools.ironlb.io", "l2advertisements.ironlb.io", "bgpadvertisements.ironlb.io", "bgppeers.ironlb.io", "communities.ironlb.io"} {
		if !got[want] {
			t.Errorf("CRD %s not installed; have %v", want, got)
		}
	}
}
