package speaker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestGoneNodes(t *testing.T) {
	node := func(name string, ready corev1.ConditionStatus) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	pod := func(nodeName string, deleting bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + nodeName}, Spec: corev1.PodSpec{NodeName: nodeName}}
		if deleting {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return p
	}
	snap := snapshot{
		nodes: []corev1.Node{node("alive", corev1.ConditionTrue), node("restarting", corev1.ConditionTrue),
			node("notready", corev1.ConditionFalse), node("nopod", corev1.ConditionTrue), node("poddeleting", corev1.ConditionTrue),
			node("alive-notready", corev1.ConditionFalse)},
		speakers: []corev1.Pod{pod("alive", false), pod("restarting", false), pod("notready", false),
			pod("poddeleting", true), pod("deleted", false), pod("alive-notready", false)},
	}
	gone := goneNodes(snap, []string{"alive", "alive-notready"})
	for _, tt := range []struct {
		node string
		want bool
	}{
		{"alive", false},
		{"alive-notready", false}, // memberlist sees its speaker: it keeps its own
		{"restarting", false},     // Pod and Ready Node: a restart, not a death
		{"notready", true},
		{"nopod", true},
		{"poddeleting", true},
		{"deleted", true}, // no Node object
	} {
		if got := gone(tt.node); got != tt.want {
			t.Errorf("gone(%s) = %v, want %v", tt.node, got, tt.want)
		}
	}
}
