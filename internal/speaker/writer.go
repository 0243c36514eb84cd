package speaker

import (
	"context"
	"sync"
)

// latest runs, one at a time and off the sync loop, the most recent of the
// writes handed to it. Status objects are one per Service: writing
// thousands of them takes the API server's time (and the client's rate
// limit) by the second, and an election must never wait for that. A write
// overtaken by a newer one before it started is dropped, never run.
type latest struct {
	mu   sync.Mutex
	next func(context.Context) error
	wake chan struct{}
}

func newLatest() *latest { return &latest{wake: make(chan struct{}, 1)} }

// set makes write the next one to run, replacing any still waiting.
func (l *latest) set(write func(context.Context) error) {
	l.mu.Lock()
	l.next = write
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run runs the writes until ctx ends; failed hears of each that failed.
func (l *latest) run(ctx context.Context, failed func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		l.mu.Lock()
		write := l.next
		l.next = nil
		l.mu.Unlock()
		if write == nil {
			continue
		}
		if err := write(ctx); err != nil {
			failed(err)
		}
	}
}
