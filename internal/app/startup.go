package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/coordination"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// settlePods registers the instance and settles the pods the previous
// server left: the leases of its former ids are taken over, the pods still
// running are reattached (or recorded lost), and those its clean shutdown
// stopped start again (Config.ResumePods).
func (a *App) settlePods(ctx context.Context, p *parts) error {
	cfg := a.cfg
	// Registered (heartbeat fresh) before reconcile: no other instance
	// takes this one's leases over while it settles them.
	a.Store.WatchPodCommands(a.Coord.CommandQueued)
	a.Store.WatchPodCommandsDone(a.Coord.CommandDone)
	a.Store.WatchPodCommands(a.Sched.Heard)
	if err := a.life.Start(ctx, a.Coord); err != nil {
		return fmt.Errorf("register instance: %w", err)
	}
	// A start that fails from here hands over what it reconciled, too.
	p.handoff = a.handoff()
	a.life.Add(p.handoff)
	for _, former := range cfg.FormerInstanceIDs {
		if err := a.Store.AdoptInstance(ctx, former, cfg.InstanceID); err != nil {
			return fmt.Errorf("adopt former instance id: %w", err)
		}
	}
	if err := a.reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile pods: %w", err)
	}
	a.requeueOrphans(ctx)
	if cfg.ResumePods {
		if err := a.resume(ctx, p.pods); err != nil {
			return fmt.Errorf("resume pods: %w", err)
		}
	}
	return nil
}

// startBackground starts the parts that work on their own. The order is
// the reverse of their stops in Close: the timers stop first (they cancel
// tasks and expire requests, which stops pods), then the conversations'
// background pod stops, the webhook workers (releasing their endpoints'
// leases while the store is open), the handoff of pods to other instances,
// and the scheduler (no more queued pods start here); the heartbeat and the
// pods, started before, stop after them.
func (a *App) startBackground(ctx context.Context, p *parts) error {
	if err := a.life.Start(ctx, a.Sched); err != nil {
		return err
	}
	// The handoff's turn on a full start: after the webhook workers, while
	// the scheduler still runs.
	a.life.Add(p.handoff)
	if err := a.life.Start(ctx, a.Webhooks); err != nil {
		return err
	}
	a.life.Add(p.convStop)
	// The timers run under the requests' context: they end with it.
	if err := a.life.Start(a.baseCtx, conversation.NewExpiry(a.Conversations, a.cfg.DeadlineInterval, a.log)); err != nil {
		return err
	}
	return a.life.Start(a.baseCtx, &deadlineTimer{tasks: a.Services.TaskService, interval: a.cfg.DeadlineInterval, log: a.log})
}

// reconcile hands the supervisor the tasks whose stream says a pod runs or
// should run (open tasks, ACTIVE or pod BACKOFF or FAILED), so it
// reattaches to the plugins the previous server left or records what was
// lost.
func (a *App) reconcile(ctx context.Context) error {
	all, err := a.Store.TasksWithPods(ctx)
	if err != nil {
		return err
	}
	// A pod another instance holds the lease of is that instance's (or,
	// once it is dead, a takeover's): joining never disturbs it.
	owners, err := a.Store.LeaseOwners(ctx)
	if err != nil {
		return err
	}
	rt := make([]supervisor.ReconcileTarget, 0, len(all))
	for _, t := range all {
		if t.Status.Closed() {
			continue
		}
		if o, ok := owners[t.ID]; ok && o != a.cfg.InstanceID {
			continue
		}
		rt = append(rt, supervisor.ReconcileTarget{Task: t})
	}
	return a.Supervisor.Reconcile(ctx, rt)
}

// resume starts the pods this instance stopped on its last clean shutdown:
// the open tasks whose pod that shutdown (under its id or a former one)
// stopped, and that nobody started or stopped since. It runs after
// reconcile (whatever the previous server left running is settled first)
// and before the API serves, so a client never sees those pods STOPPED for
// a moment and then running. A pod that fails to start is recorded as a
// crash; only a store that cannot be read fails the start-up.
func (a *App) resume(ctx context.Context, pods *coordination.ScheduledPods) error {
	if a.cfg.InstanceID == "" {
		return nil
	}
	targets, err := a.Store.ShutdownStoppedTasks(ctx, append([]string{a.cfg.InstanceID}, a.cfg.FormerInstanceIDs...)...)
	if err != nil {
		return err
	}
	if len(targets) > 0 {
		// Through the limits: a resume queues where a limit is full.
		began := time.Now()
		n := pods.Resume(ctx, targets)
		a.log.Info("resume done", slog.Int("candidates", len(targets)), slog.Int("started", n), slog.Duration("took", time.Since(began)))
	}
	return nil
}

// requeueOrphans queues again the queued pods whose place a dead server
// lost (their half-made starts were settled by reconcile, or by a takeover
// elsewhere).
func (a *App) requeueOrphans(ctx context.Context) {
	now, err := a.Store.Now(ctx)
	if err != nil {
		return
	}
	n, err := a.Store.RequeueOrphans(ctx, a.cfg.InstanceID, now.Add(-a.cfg.LeaseTTL), now)
	switch {
	case err != nil:
		a.log.Warn("requeue orphaned queued pods", slog.Any("error", err))
	case n > 0:
		a.log.Warn("queued pods that had lost their place queued again", slog.Int("pods", n))
		a.Sched.Kick()
	}
}

// handoff is the shutdown step that hands this instance's running pods to
// the other live instances (Config.Handoff; see
// coordination.Coordinator.Drain). Without Handoff it does nothing.
func (a *App) handoff() lifecycle.Service {
	return lifecycle.OnStop(func() error {
		if !a.cfg.Handoff {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		if n, err := a.Coord.Drain(ctx); err != nil {
			a.log.Warn("handoff", "err", err, "handed_off", n)
		}
		return nil
	})
}

// conversationsStop is the shutdown step that ends the conversations'
// background work (pod stops for spent budgets) and waits for it.
func conversationsStop(c *conversation.Service) lifecycle.Service {
	return lifecycle.OnStop(func() error { c.Close(); return nil })
}
