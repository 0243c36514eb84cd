package kube

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

// TestClientAndRecorder runs the typed clients and the Event recorder
// against a real API server: every verb the speaker uses, on a built-in
// kind (protobuf) and on a custom resource with a status subresource
// (JSON), then Events and their repeats.
func TestClientAndRecorder(t *testing.T) {
	c, err := New(apiservertest.Start(t), corev1.AddToScheme, v1beta1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cms := For[corev1.ConfigMap, corev1.ConfigMapList](c, "configmaps", "default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Data: map[string]string{"k": "1"}}, metav1.CreateOptions{})
	if err != nil || cm.ResourceVersion == "" {
		t.Fatalf("create: %v, %+v", err, cm)
	}
	// From any version: the watch starts with what exists. (From the
	// latest, a freshly started API server's watch cache may still be
	// behind etcd and refuse it.)
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := <-w.ResultChan(); ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "a" {
		t.Errorf("watch saw %v %+v, want the ConfigMap added", ev.Type, ev.Object)
	}
	cm.Data["k"] = "2"
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil || cm.Data["k"] != "2" {
		t.Fatalf("update: %v, %+v", err, cm)
	}
	if cm, err = cms.Patch(ctx, "a", types.MergePatchType, []byte(`{"data":{"k":"3"}}`), metav1.PatchOptions{}); err != nil || cm.Data["k"] != "3" {
		t.Fatalf("patch: %v, %+v", err, cm)
	}
	if got, err := cms.Get(ctx, "a", metav1.GetOptions{}); err != nil || got.Data["k"] != "3" {
		t.Fatalf("get: %v, %+v", err, got)
	}
	if l, err := cms.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Fatalf("list: %v, %+v", err, l)
	}

	// A status subresource takes the status, not the rest.
	ns := "default"
	sts := For[v1beta1.ServiceL2Status, v1beta1.ServiceL2StatusList](c, "servicel2statuses", ns)
	st, err := sts.Create(ctx, &v1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Status.Node = "node1"
	st.Labels = map[string]string{"ignored": "yes"}
	if st, err = sts.UpdateStatus(ctx, st, metav1.UpdateOptions{}); err != nil || st.Status.Node != "node1" || st.Labels["ignored"] != "" {
		t.Fatalf("update status: %v, %+v", err, st)
	}
	if err := sts.Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sts.Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v, want not found", err)
	}

	// Events: a repeat counts in the first; another message is another
	// Event; a custom resource is referred to by its kind.
	rec, stop := c.Recorder("ironlb-test", "host1", slog.New(slog.DiscardHandler))
	peer := &v1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tor", UID: "u1"}}
	for range 3 {
		rec.Eventf(cm, corev1.EventTypeNormal, "Tested", "same %s", "message")
	}
	rec.Eventf(cm, corev1.EventTypeWarning, "Tested", "another")
	rec.Eventf(peer, corev1.EventTypeWarning, "SessionDown", "down")
	stop()
	events, err := For[corev1.Event, corev1.EventList](c, "events", ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]corev1.Event{}
	for _, e := range events.Items {
		got[e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+"/"+e.Message] = e
	}
	if len(events.Items) != 3 {
		t.Errorf("%d Events, want 3: %v", len(events.Items), got)
	}
	if e := got["ConfigMap/a/same message"]; e.Count != 3 || e.Type != corev1.EventTypeNormal || e.Source.Component != "ironlb-test" || e.Source.Host != "host1" {
		t.Errorf("repeated Event: %+v, want count 3 from ironlb-test on host1", e)
	}
	if e := got["ConfigMap/a/another"]; e.Count != 1 || e.Type != corev1.EventTypeWarning {
		t.Errorf("second Event: %+v", e)
	}
	if e := got["BGPPeer/tor/down"]; e.InvolvedObject.APIVersion != v1beta1.GroupVersion.String() || e.InvolvedObject.UID != "u1" || e.Reason != "SessionDown" {
		t.Errorf("Event on a BGPPeer: %+v", e)
	}
}
