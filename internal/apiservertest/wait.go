package apiservertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Eventually polls fn every 50 ms until it returns nil, failing the test
// with fn's last error once timeout has passed.
func Eventually(t testing.TB, what string, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}

// WaitEvent waits up to 20 s for an Event about the object ns/name with the
// reason and a note containing every fragment; the failure lists the Events
// that were there.
func WaitEvent(t testing.TB, c client.Client, ns, name, reason string, fragments ...string) {
	t.Helper()
	Eventually(t, fmt.Sprintf("event %s on %s/%s containing %q", reason, ns, name, fragments), 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
	next:
		for _, ev := range list.Items {
			if ev.Regarding.Name != name {
				continue
			}
			seen = append(seen, ev.Reason+": "+ev.Note)
			if ev.Reason != reason {
				continue
			}
			for _, f := range fragments {
				if !strings.Contains(ev.Note, f) {
					continue next
				}
			}
			return nil
		}
		return fmt.Errorf("events seen: %q", seen)
	})
}
