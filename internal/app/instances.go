package app

import (
	"context"
	"time"

	"github.com/ipa-dev/ipa/internal/instance"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// startInstance registers this server in the instances table and starts its
// heartbeat, whose ticks run the coordinator's duties; a pod command notice
// for this instance runs them at once.
func (a *App) startInstance(ctx context.Context) error {
	a.coordCtx, a.stopCoord = context.WithCancel(context.WithoutCancel(ctx))
	a.coord = newCoordinator(a.Store, a.Supervisor, a.log, a.cfg.InstanceID, a.cfg.LeaseTTL)
	a.coord.drain = a.Drain
	reg, err := instance.Start(ctx, instance.Config{
		Store: a.Store, ID: a.cfg.InstanceID, Version: a.cfg.Version,
		Interval: a.cfg.HeartbeatInterval, TTL: a.cfg.LeaseTTL, Logger: a.log,
		Tick: func(_ context.Context, paused bool) { a.coord.tick(a.coordCtx, paused) },
	})
	if err != nil {
		return err
	}
	a.registry = reg
	a.Store.WatchPodCommands(func(id string) {
		if id == a.cfg.InstanceID {
			reg.Wake()
		}
	})
	return nil
}

// stopInstance ends the heartbeat and the coordinator's duties. The row
// stays: its heartbeat ages, and Query.instances shows the server dead.
func (a *App) stopInstance() {
	if a.registry != nil {
		a.registry.Stop()
	}
	if a.stopCoord != nil {
		a.stopCoord()
		a.coord.stop()
	}
}

// SetAddress records the address this server listens on in its instance row.
func (a *App) SetAddress(ctx context.Context, addr string) {
	if err := a.Store.SetInstanceAddress(ctx, a.cfg.InstanceID, addr); err != nil {
		a.log.Warn("instance address", "err", err)
	}
}

// Instances lists the instances sharing the database.
func (a *App) Instances(ctx context.Context) ([]ipa.Instance, error) {
	return a.Store.ListInstances(ctx, time.Now(), a.cfg.LeaseTTL)
}

// handoff hands this instance's running pods to the other live instances
// (on shutdown with Config.Handoff); see Drain.
func (a *App) handoff() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if n, err := a.Drain(ctx); err != nil {
		a.log.Warn("handoff", "err", err, "handed_off", n)
	}
}
