package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/reference"
)

// Repeats of an Event within this long count in the first one.
const eventRepeatWindow = 10 * time.Minute

// Recorder writes core/v1 Events (which clients of events.k8s.io/v1 read
// too) for one component on one host.
//
// Eventf only queues: no caller waits on the API server for an Event.
// When the queue is full (the API server away for long), Events are
// dropped and the drops logged. An Event like one written less than ten
// minutes before (same object, type, reason and message) increments that
// one's count instead of adding another, which is how kubectl shows
// repeats. Callers record on changes, not on every sync, so there is no
// further rate limit.
//
// client-go's tools/record does the same and more; it links kube-openapi
// and gnostic for strategic merge patches, several megabytes of code in
// every speaker's resident set and one of memory at start.
type Recorder struct {
	c      *Client
	source corev1.EventSource
	log    *slog.Logger
	queue  chan *corev1.Event
	stop   chan struct{}
	done   chan struct{}
	drops  atomic.Int64

	// last is the last Event written for each key: the worker's alone.
	last map[eventKey]*corev1.Event
}

type eventKey struct {
	object                     corev1.ObjectReference
	eventType, reason, message string
}

// Recorder starts a Recorder for component on host. Its stop function
// writes what is queued (for at most two seconds) and ends it.
func (c *Client) Recorder(component, host string, log *slog.Logger) (*Recorder, func()) {
	r := &Recorder{
		c: c, source: corev1.EventSource{Component: component, Host: host}, log: log,
		queue: make(chan *corev1.Event, 1000), stop: make(chan struct{}), done: make(chan struct{}),
		last: map[eventKey]*corev1.Event{},
	}
	go r.run()
	var once sync.Once
	return r, func() {
		once.Do(func() { close(r.stop) })
		<-r.done
	}
}

// Eventf records an Event about obj (an API object of a registered type,
// or a *corev1.ObjectReference).
func (r *Recorder) Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...any) {
	ref, err := reference.GetReference(r.c.scheme, obj)
	if err != nil {
		r.log.Warn("event not recorded", "reason", reason, "err", err)
		return
	}
	now := metav1.Now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	e := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		InvolvedObject:      *ref,
		Reason:              reason,
		Message:             fmt.Sprintf(messageFmt, args...),
		Source:              r.source,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Type:                eventType,
		ReportingController: r.source.Component,
		ReportingInstance:   r.source.Component + "-" + r.source.Host,
	}
	select {
	case r.queue <- e:
	default:
		if n := r.drops.Add(1); n == 1 || n%100 == 0 {
			r.log.Warn("events dropped: the queue is full", "dropped", n, "reason", reason)
		}
	}
}

func (r *Recorder) run() {
	defer close(r.done)
	ctx := context.Background()
	for {
		select {
		case e := <-r.queue:
			r.write(ctx, e)
		case <-r.stop:
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			for {
				select {
				case e := <-r.queue:
					r.write(ctx, e)
				default:
					return
				}
			}
		}
	}
}

// write creates e, or counts it in the Event it repeats.
func (r *Recorder) write(ctx context.Context, e *corev1.Event) {
	ref := e.InvolvedObject
	ref.ResourceVersion = "" // the same object at any version
	key := eventKey{object: ref, eventType: e.Type, reason: e.Reason, message: e.Message}
	events := For[corev1.Event, corev1.EventList](r.c, "events", e.Namespace)
	if prev := r.last[key]; prev != nil && e.LastTimestamp.Sub(prev.LastTimestamp.Time) < eventRepeatWindow {
		patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, prev.Count+1, e.LastTimestamp.UTC().Format(time.RFC3339))
		updated, err := events.Patch(ctx, prev.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err == nil {
			r.last[key] = updated
			return
		}
		if !apierrors.IsNotFound(err) {
			r.log.Warn("event not recorded", "reason", e.Reason, "object", ref.Name, "err", err)
			return
		}
		// Gone (expired): write it anew.
	}
	created, err := events.Create(ctx, e, metav1.CreateOptions{})
	if err != nil {
		r.log.Warn("event not recorded", "reason", e.Reason, "object", ref.Name, "err", err)
		return
	}
	if len(r.last) >= 4096 {
		clear(r.last) // repeats of old Events start new ones: harmless
	}
	r.last[key] = created
}
