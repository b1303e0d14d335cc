package app

import (
	"context"
	"time"
)

// defaultDeadlineInterval is how often passed task deadlines are looked for.
const defaultDeadlineInterval = time.Second

// startDeadlines starts the deadline timer: one goroutine that asks the store
// for open tasks whose deadline passed (an index range read) and cancels
// them, every interval. The timer is durable because the deadlines live in
// the store: a restarted server, or any other server on the same database,
// finds the same tasks; the closing transaction rechecks each one, so a task
// is cancelled once. stopDeadlines ends the goroutine and waits for it.
func (a *App) startDeadlines(interval time.Duration) {
	if interval <= 0 {
		interval = defaultDeadlineInterval
	}
	ctx, cancel := context.WithCancel(a.baseCtx)
	a.stopDeadlinesFn = cancel
	a.deadlines.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			// A sweep fills a whole batch only when many deadlines passed at
			// once; then the next batch follows without waiting.
			for {
				n, err := a.Services.TaskService.CancelDue(ctx)
				if err != nil && ctx.Err() == nil {
					a.log.Warn("deadline sweep", "err", err)
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
	})
}

func (a *App) stopDeadlines() {
	if a.stopDeadlinesFn != nil {
		a.stopDeadlinesFn()
		a.deadlines.Wait()
	}
}
