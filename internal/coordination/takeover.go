package coordination

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/supervisor"
)

// takeOver claims this instance's part of the leases of dead instances and
// settles them (pod_lost instance_lost, then the restart policy). Leases
// whose designated survivor has not taken them after another TTL (it died
// too, or the survivors disagreed on who is alive) are then claimed by
// anyone, a share per round. Nothing is claimed while this instance's own
// view of the store is not continuous for one TTL (see canJudge). Every
// time is the database's clock.
func (c *Coordinator) takeOver(ctx context.Context) {
	if ok, from := c.canJudge(); !ok {
		if !from.IsZero() {
			c.armAt(ctx, from.Sub(c.clock.Now()))
		}
		return
	}
	defer c.armTakeover(ctx)
	now, err := c.st.Now(ctx)
	if err != nil {
		return
	}
	cutoff := now.Add(-c.ttl)
	claimed, err := c.st.ClaimDeadLeasePartition(ctx, c.self, cutoff, now)
	if err != nil {
		c.log.Warn("takeover", slog.Any("error", err))
		return
	}
	late := cutoff.Add(-c.ttl)
	if share, err := c.st.DeadLeaseShare(ctx, c.self, late); err == nil && share > 0 {
		more, err := c.st.ClaimDeadLeases(ctx, c.self, late, share, now)
		if err != nil {
			c.log.Warn("takeover", slog.Any("error", err))
		}
		claimed = append(claimed, more...)
	}
	if len(claimed) == 0 {
		return
	}
	taken := make([]supervisor.Takeover, 0, len(claimed))
	for _, cl := range claimed {
		var l supervisor.Lease
		if err := json.Unmarshal(cl.Lease, &l); err != nil {
			l = supervisor.Lease{}
		}
		l.TaskID = cl.TaskID
		tk := supervisor.Takeover{Lease: l, PreviousOwner: cl.PreviousOwner, Epoch: cl.Epoch}
		if t, err := c.st.GetTask(ctx, cl.TaskID); err == nil {
			tk.Task = t
		}
		taken = append(taken, tk)
	}
	c.log.Warn("took over pods of a dead instance", slog.Int("pods", len(taken)))
	c.pods.TakeOver(ctx, taken)
}

// armTakeover schedules a takeover round for the moment the first other
// lease holder's heartbeat passes the TTL. Without it a survivor would only
// notice on its next heartbeat tick, up to one interval later; with it, the
// pods of an instance that died are claimed as soon as its leases may be.
// Every round re-arms the timer, so a heartbeat that did arrive only moves
// the moment later. The wait is a difference of two readings of the
// database's clock, so this instance's own clock does not matter.
func (c *Coordinator) armTakeover(ctx context.Context) {
	now, err := c.st.Now(ctx)
	if err != nil {
		return
	}
	at, ok, err := c.st.NextLeaseExpiry(ctx, c.self, c.ttl, now)
	if err != nil || !ok {
		return
	}
	c.armAt(ctx, at.Sub(now))
}

// armAt (re)sets the takeover timer to fire after wait.
func (c *Coordinator) armAt(ctx context.Context, wait time.Duration) {
	wait = max(wait, 0) + expirySlack
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	var fire func()
	fire = func() {
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		switch {
		case stopped || ctx.Err() != nil:
		case c.takeover.Load():
			// The round that armed this timer is still finishing.
			c.mu.Lock()
			if !c.stopped {
				c.expiry = c.clock.AfterFunc(expirySlack, fire)
			}
			c.mu.Unlock()
		default:
			c.async(ctx, &c.takeover, c.takeOver)
		}
	}
	c.expiry = c.clock.AfterFunc(wait, fire)
}
