package conversation

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultExpiryInterval is how often passed request expiries are looked for.
// A runtime waiting on its request expires it itself at its time; the sweep
// covers requests nobody waits on (the pod or the server restarted).
const DefaultExpiryInterval = time.Second

// budgetSweepEvery is how many expiry sweeps go by per budget sweep.
const budgetSweepEvery = 3

// Expiry is the durable expiry timer: the expiries are rows of the store
// (input_requests.expires_at), so a restarted server finds them; every
// instance sweeps, and the optimistic append makes each expiry happen once.
type Expiry struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartExpiry starts the sweep: one goroutine, every interval, until Stop.
func StartExpiry(ctx context.Context, s *Service, interval time.Duration, log *slog.Logger) *Expiry {
	if interval <= 0 {
		interval = DefaultExpiryInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	x := &Expiry{cancel: cancel}
	x.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for tick := 0; ; tick++ {
			// Pod time passes without reports: budgets of running pods
			// are checked every few sweeps.
			if tick%budgetSweepEvery == 0 {
				if err := s.SweepBudgets(ctx); err != nil && ctx.Err() == nil {
					log.Warn("budget sweep", "err", err)
				}
			}
			for {
				n, err := s.ExpireDue(ctx)
				if err != nil && ctx.Err() == nil {
					log.Warn("input request expiry sweep", "err", err)
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
	return x
}

// Stop ends the sweep and waits for it. Safe on nil.
func (x *Expiry) Stop() {
	if x == nil {
		return
	}
	x.cancel()
	x.wg.Wait()
}
