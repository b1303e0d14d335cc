package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// Pod commands carried between instances (store.PodCommand.Command).
const (
	cmdStop         = "stop"
	cmdRestart      = "restart"
	cmdPause        = "pause"
	cmdResume       = "resume"
	cmdStartHandoff = "start_handoff"
)

// coordinator runs this instance's periodic duties among the instances
// sharing the database, after every heartbeat (and at once when a pod
// command is announced): it lets go of pods another instance took over,
// carries out the pod commands sent to it, stops pods of tasks closed
// elsewhere, and takes over the pods of dead instances (PostgreSQL). Each
// duty runs in a goroutine of its own, one at a time, so a slow stop never
// delays a heartbeat.
type coordinator struct {
	st   *store.Store
	sup  *supervisor.Supervisor
	log  *slog.Logger
	self string
	ttl  time.Duration

	wg       sync.WaitGroup
	leases   atomic.Bool // a lease check runs
	closed   atomic.Bool // a closed-task check runs
	takeover atomic.Bool // a takeover round runs
	draining atomic.Bool // a drain check runs
	drain    func(context.Context) (int, error)

	mu       sync.Mutex
	inflight map[string]bool // pod command ids being carried out
	expiry   *time.Timer     // runs a takeover round when the next lease holder's heartbeat expires
	stopped  bool            // stop was called: no more duties start
}

// expirySlack is how long after a heartbeat's expiry the takeover round
// wakes, so the heartbeat is strictly older than the TTL by then.
const expirySlack = 5 * time.Millisecond

func newCoordinator(st *store.Store, sup *supervisor.Supervisor, log *slog.Logger, self string, ttl time.Duration) *coordinator {
	return &coordinator{st: st, sup: sup, log: log.With(slog.String("component", "coordinator")), self: self, ttl: ttl, inflight: map[string]bool{}}
}

// tick runs the duties; ctx ends them (Stop waits for them).
func (c *coordinator) tick(ctx context.Context, paused bool) {
	if paused {
		// Counted dead for a while: settle leases before anything else.
		c.checkLeases(ctx)
	} else {
		c.async(ctx, &c.leases, c.checkLeases)
	}
	c.runCommands(ctx)
	c.async(ctx, &c.closed, c.stopClosed)
	c.async(ctx, &c.takeover, c.takeOver)
	c.async(ctx, &c.draining, c.checkDrain)
}

// checkDrain hands the pods over when this instance was asked to drain.
func (c *coordinator) checkDrain(ctx context.Context) {
	if c.drain == nil || len(c.sup.Owned()) == 0 {
		return
	}
	if d, err := c.st.InstanceDraining(ctx, c.self); err != nil || !d {
		return
	}
	if n, err := c.drain(ctx); n > 0 || err != nil {
		c.log.Info("drained", slog.Int("handed_off", n), slog.Any("error", err))
	}
}

// stop keeps new duties from starting and waits for the running ones.
func (c *coordinator) stop() {
	c.mu.Lock()
	c.stopped = true
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// armTakeover schedules a takeover round for the moment the first other
// lease holder's heartbeat passes the TTL. Without it a survivor would only
// notice on its next heartbeat tick, up to one interval later; with it, the
// pods of an instance that died are claimed as soon as its leases may be.
// Every round re-arms the timer, so a heartbeat that did arrive only moves
// the moment later.
func (c *coordinator) armTakeover(ctx context.Context) {
	now := time.Now()
	at, ok, err := c.st.NextLeaseExpiry(ctx, c.self, c.ttl, now)
	if err != nil || !ok {
		return
	}
	wait := at.Sub(now) + expirySlack
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case c.stopped || ctx.Err() != nil:
		case c.takeover.Load():
			// The round that armed this timer is still finishing.
			t.Reset(expirySlack)
		default:
			c.async(ctx, &c.takeover, c.takeOver)
		}
	})
	c.expiry = t
}

func (c *coordinator) async(ctx context.Context, busy *atomic.Bool, fn func(context.Context)) {
	if !busy.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer busy.Store(false)
		fn(ctx)
	}()
}

// checkLeases abandons the pods this instance runs whose lease another
// instance now holds: it was paused or cut off past the TTL and taken over.
// Nothing is recorded (the stream is the new owner's).
func (c *coordinator) checkLeases(ctx context.Context) {
	owned := c.sup.Owned()
	if len(owned) == 0 {
		return
	}
	owners, err := c.st.LeaseOwnersOf(ctx, owned)
	if err != nil {
		return
	}
	for _, id := range owned {
		if o, ok := owners[id]; ok && o != c.self {
			c.log.Warn("pod taken over by another instance", slog.String("task_id", id), slog.String("owner", o), slog.String("decision", "abandon"))
			c.sup.Abandon(id)
		}
	}
}

// runCommands starts carrying out the pod commands sent to this instance.
func (c *coordinator) runCommands(ctx context.Context) {
	cmds, err := c.st.PodCommands(ctx, c.self)
	if err != nil || len(cmds) == 0 {
		return
	}
	for _, cmd := range cmds {
		c.mu.Lock()
		busy := c.inflight[cmd.ID]
		c.inflight[cmd.ID] = true
		c.mu.Unlock()
		if busy {
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runCommand(ctx, cmd)
			c.mu.Lock()
			delete(c.inflight, cmd.ID)
			c.mu.Unlock()
		}()
	}
}

func (c *coordinator) runCommand(ctx context.Context, cmd store.PodCommand) {
	log := c.log.With(slog.String("task_id", cmd.TaskID), slog.String("command", cmd.Command))
	var err error
	switch cmd.Command {
	case cmdStop:
		err = c.sup.StopPod(ctx, cmd.TaskID, cmd.Reason)
	case cmdPause:
		err = c.sup.PausePod(ctx, cmd.TaskID)
	case cmdResume:
		err = c.sup.ResumePod(ctx, cmd.TaskID)
	case cmdRestart, cmdStartHandoff:
		var t *ipa.Task
		if t, err = c.st.GetTask(ctx, cmd.TaskID); err == nil && !t.Status.Closed() {
			if cmd.Command == cmdRestart {
				err = c.sup.RestartPod(ctx, t)
			} else {
				_, err = c.sup.StartPod(ctx, t, ipa.TriggerHandoff, "")
			}
		}
	}
	if err != nil {
		log.Info("pod command done", slog.Any("error", err))
	} else {
		log.Info("pod command done")
	}
	if ctx.Err() != nil {
		return // shutting down: the command stays for whoever owns the pod next
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.st.DeletePodCommand(dctx, cmd.ID); err != nil {
		log.Warn("delete pod command", slog.Any("error", err))
	}
}

// stopClosed stops the pods this instance runs for tasks that are closed:
// the safety net under the stop command a close sends to the owner.
func (c *coordinator) stopClosed(ctx context.Context) {
	ids, err := c.st.ClosedLeasedTasks(ctx, c.self)
	if err != nil {
		return
	}
	for _, id := range ids {
		c.log.Warn("pod of a closed task", slog.String("task_id", id), slog.String("decision", "stop"))
		err := c.sup.StopPod(ctx, id, "task closed")
		if err != nil {
			// Nothing of it runs here (a claim left behind): drop the lease.
			_ = c.st.DeleteLease(ctx, c.self, id)
		}
		c.sup.Forget(id)
	}
}

// takeOver claims this instance's part of the leases of dead instances and
// settles them (pod_lost instance_lost, then the restart policy). Leases
// whose designated survivor has not taken them after another TTL (it died
// too, or the survivors disagreed on who is alive) are then claimed by
// anyone, a share per round.
func (c *coordinator) takeOver(ctx context.Context) {
	defer c.armTakeover(ctx)
	now := time.Now()
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
	c.sup.TakeOver(ctx, taken)
}
