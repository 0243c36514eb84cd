package controller_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

// TestRunsWithManifestRBAC runs the controller as its ServiceAccount, bound
// to exactly the roles in manifests/controller/rbac.yaml, so a permission
// the code needs but the manifests lack fails here and not in a cluster.
func TestRunsWithManifestRBAC(t *testing.T) {
	e := newEnv(t)
	sa := "ironlb-controller"
	e.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: e.poolNS}})

	raw, err := os.ReadFile(filepath.Join(apiservertest.Root(), "manifests", "controller", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The manifests' roles, moved into this test's namespace and renamed so
	// parallel tests do not share them.
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if u.Object == nil {
			continue
		}
		var obj client.Object
		var subjects []rbacv1.Subject
		switch u.GetKind() {
		case "ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "Role":
			obj = &rbacv1.Role{}
		case "RoleBinding":
			obj = &rbacv1.RoleBinding{}
		default:
			t.Fatalf("unexpected kind %q in rbac.yaml", u.GetKind())
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			o.Name += "-" + e.poolNS
		case *rbacv1.ClusterRoleBinding:
			o.Name += "-" + e.poolNS
			o.RoleRef.Name += "-" + e.poolNS
			subjects = o.Subjects
		case *rbacv1.Role:
			o.Namespace = e.poolNS
		case *rbacv1.RoleBinding:
			o.Namespace = e.poolNS
			subjects = o.Subjects
		}
		for i := range subjects {
			subjects[i].Namespace = e.poolNS
		}
		e.create(obj)
	}

	e.pool("lan", v1beta1.IPAddressPoolSpec{Addresses: []string{"10.190.0.0/24"}})
	o := e.controllerOptions()
	o.LeaderElect = true
	o.Rest = rest.CopyConfig(e.cfg)
	o.Rest.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + e.poolNS + ":" + sa}
	e.startController(o)
	e.service("web")
	e.waitIPs("web", "10.190.0.0")
	e.waitEvent(e.ns, "web", "IPAllocated", "10.190.0.0")
	e.eventually("pool status written", 20*time.Second, func() error {
		if st := e.getPool("lan").Status; st.AssignedIPv4 != 1 {
			return errors.New("assignedIPv4 not 1")
		}
		return nil
	})
}
