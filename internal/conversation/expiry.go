package conversation

import (
	"context"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/lifecycle"
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
// It is a lifecycle.Service: one goroutine, every interval, from Start
// until Stop (or until Start's ctx ends).
type Expiry struct {
	s        *Service
	interval time.Duration
	log      *slog.Logger
	life     lifecycle.Base
}

// NewExpiry returns the sweep of s's requests and budgets, not started.
func NewExpiry(s *Service, interval time.Duration, log *slog.Logger) *Expiry {
	if interval <= 0 {
		interval = DefaultExpiryInterval
	}
	if log == nil {
		log = slog.Default()
	}
	return &Expiry{s: s, interval: interval, log: log}
}

// Start starts the sweep.
func (x *Expiry) Start(ctx context.Context) error {
	ctx, ok := x.life.StartInit(ctx)
	if ok {
		x.life.Go(func() { x.run(ctx) })
	}
	return nil
}

func (x *Expiry) run(ctx context.Context) {
	t := time.NewTicker(x.interval)
	defer t.Stop()
	for tick := 0; ; tick++ {
		// Pod time passes without reports: budgets of running pods
		// are checked every few sweeps.
		if tick%budgetSweepEvery == 0 {
			if err := x.s.SweepBudgets(ctx); err != nil && ctx.Err() == nil {
				x.log.Warn("budget sweep", "err", err)
			}
		}
		for {
			n, err := x.s.ExpireDue(ctx)
			if err != nil && ctx.Err() == nil {
				x.log.Warn("input request expiry sweep", "err", err)
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

// Stop ends the sweep and waits for it. Safe before Start and twice.
func (x *Expiry) Stop() { x.life.Stop() }
