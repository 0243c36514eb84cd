package speaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLatestRunsTheNewestWrite: a write handed over while another runs
// replaces any still waiting, so only the newest follows; failures are
// reported.
func TestLatestRunsTheNewestWrite(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLatest()
	failed := make(chan error, 10)
	go l.run(ctx, func(err error) { failed <- err })

	ran := make(chan int, 10)
	release := make(chan struct{})
	l.set(func(context.Context) error { ran <- 1; <-release; return nil })
	if got := <-ran; got != 1 {
		t.Fatalf("first write: %d", got)
	}
	// While write 1 blocks, 2 and 3 are handed over: 2 is overtaken.
	l.set(func(context.Context) error { ran <- 2; return nil })
	l.set(func(context.Context) error { ran <- 3; return errors.New("boom") })
	close(release)
	select {
	case got := <-ran:
		if got != 3 {
			t.Fatalf("after the first write ran write %d, want 3", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the newest write never ran")
	}
	select {
	case err := <-failed:
		if err.Error() != "boom" {
			t.Fatalf("failed with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failure was not reported")
	}
	select {
	case got := <-ran:
		t.Fatalf("write %d ran after the newest", got)
	case <-time.After(50 * time.Millisecond):
	}
}
