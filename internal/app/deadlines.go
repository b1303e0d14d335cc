package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/lifecycle"
)

// defaultDeadlineInterval is how often passed task deadlines are looked for.
const defaultDeadlineInterval = time.Second

// deadlineTimer is the deadline timer: one goroutine that asks the store for
// open tasks whose deadline passed (an index range read) and cancels them,
// every interval. The timer is durable because the deadlines live in the
// store: a restarted server, or any other server on the same database,
// finds the same tasks; the closing transaction rechecks each one, so a task
// is cancelled once. A lifecycle.Service.
type deadlineTimer struct {
	tasks    dueCanceller
	interval time.Duration // zero: defaultDeadlineInterval
	log      *slog.Logger
	life     lifecycle.Base
}

// dueCanceller cancels the open tasks whose deadline passed, a batch at a
// time (service.TaskService).
type dueCanceller interface {
	CancelDue(ctx context.Context) (int, error)
}

// Start starts the timer; it runs until Stop or until ctx ends.
func (d *deadlineTimer) Start(ctx context.Context) error {
	ctx, ok := d.life.StartInit(ctx)
	if ok {
		d.life.Go(func() { d.run(ctx) })
	}
	return nil
}

// Stop ends the timer and waits for it.
func (d *deadlineTimer) Stop() { d.life.Stop() }

func (d *deadlineTimer) run(ctx context.Context) {
	interval := d.interval
	if interval <= 0 {
		interval = defaultDeadlineInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// A sweep fills a whole batch only when many deadlines passed at
		// once; then the next batch follows without waiting.
		for {
			n, err := d.tasks.CancelDue(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("deadline sweep", "err", err)
			}
			if err != nil || n == 0 || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
