package coordination

import (
	"context"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// handoffCommandTimeout bounds the write of one handoff start command.
const handoffCommandTimeout = 5 * time.Second

// Drain hands every pod this instance runs (or backs off) to the other live
// instances that are not draining, in turn: each is stopped here
// (pod_stopped, reason "handoff") and a start command goes to its new
// instance, which records pod_started with trigger "handoff". The instance
// is marked draining first, so nobody hands pods to it. With no other live
// instance nothing is handed over (a shutdown then stops the pods as
// usual). Returns how many pods were handed over, and the store's errors.
func (c *Coordinator) Drain(ctx context.Context) (int, error) {
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	if err := c.st.SetDraining(ctx, c.self, true); err != nil {
		return 0, err
	}
	insts, err := c.Instances(ctx)
	if err != nil {
		return 0, err
	}
	var targets []string
	for _, in := range insts {
		if in.Alive && !in.Draining && in.ID != c.self {
			targets = append(targets, in.ID)
		}
	}
	if len(targets) == 0 {
		c.log.Warn("drain: no other live instance to hand pods to")
		return 0, nil
	}
	n := 0
	for i, id := range c.pods.Owned() {
		if err := c.pods.StopPod(ctx, id, ipa.StopHandoff); err != nil {
			c.log.Warn("drain: stop pod", slog.String("task_id", id), slog.Any("error", err))
			continue
		}
		to := targets[i%len(targets)]
		// The pod is stopped here: its start there must be committed even
		// if ctx ends now (a shutdown), or the task would stay STOPPED.
		cmdCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handoffCommandTimeout)
		_, err := c.st.AddPodCommand(cmdCtx, store.PodCommand{TaskID: id, InstanceID: to, Command: CmdStartHandoff, Reason: ipa.StopHandoff, CreatedAt: c.clock.Now()})
		cancel()
		if err != nil {
			c.log.Error("drain: hand pod over", slog.String("task_id", id), slog.String("to", to), slog.Any("error", err))
			continue
		}
		c.log.Info("pod handed over", slog.String("task_id", id), slog.String("to", to))
		n++
	}
	return n, nil
}

// DrainInstance asks instance id (this one when "") to hand its pods to the
// other live instances: it is marked draining in the database and drains on
// its next heartbeat. Returns ENOTFOUND for an unknown instance.
func (c *Coordinator) DrainInstance(ctx context.Context, id string) (string, error) {
	if id == "" {
		id = c.self
	}
	if err := c.st.SetDraining(ctx, id, true); err != nil {
		return "", err
	}
	if id == c.self {
		c.Wake()
	}
	return id, nil
}
