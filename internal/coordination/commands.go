package coordination

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Pod commands carried between instances (store.PodCommand.Command).
const (
	CmdStop         = "stop"
	CmdRestart      = "restart"
	CmdPause        = "pause"
	CmdResume       = "resume"
	CmdStartHandoff = "start_handoff"
)

// runCommands starts carrying out the pod commands sent to this instance.
func (c *Coordinator) runCommands(ctx context.Context) {
	cmds, err := c.st.PodCommands(ctx, c.self)
	if err != nil || len(cmds) == 0 {
		return
	}
	for _, cmd := range cmds {
		c.mu.Lock()
		busy := c.inflight[cmd.ID] || c.stopped
		if !busy {
			c.inflight[cmd.ID] = true
			c.wg.Add(1)
			c.running.Add(1)
		}
		c.mu.Unlock()
		if busy {
			continue
		}
		go func() {
			defer c.wg.Done()
			defer c.running.Add(-1)
			c.runCommand(ctx, cmd)
			c.mu.Lock()
			delete(c.inflight, cmd.ID)
			c.mu.Unlock()
		}()
	}
}

func (c *Coordinator) runCommand(ctx context.Context, cmd store.PodCommand) {
	log := c.log.With(slog.String("task_id", cmd.TaskID), slog.String("command", cmd.Command))
	var err error
	switch cmd.Command {
	case CmdStop:
		err = c.pods.StopPod(ctx, cmd.TaskID, cmd.Reason)
	case CmdPause:
		err = c.pods.PausePod(ctx, cmd.TaskID)
	case CmdResume:
		err = c.pods.ResumePod(ctx, cmd.TaskID)
	case CmdRestart, CmdStartHandoff:
		var t *ipa.Task
		if t, err = c.st.GetTask(ctx, cmd.TaskID); err == nil && !t.Status.Closed() {
			sp := c.sched.Load()
			switch {
			case sp != nil && cmd.Command == CmdRestart:
				err = sp.restartHere(ctx, t)
			case sp != nil:
				// The drained instance gave the pod's slot back when it
				// stopped it: its start here is admitted like any other.
				_, err = sp.StartPod(ctx, t, ipa.TriggerHandoff, "")
			case cmd.Command == CmdRestart:
				err = c.pods.RestartPod(ctx, t)
			default:
				_, err = c.pods.StartPod(ctx, t, ipa.TriggerHandoff, "")
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

// commandWaiters are the callers waiting for pod commands to be carried
// out, by command id.
type commandWaiters struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (w *commandWaiters) add(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.m[id] = ch
	return ch
}

func (w *commandWaiters) remove(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

func (w *commandWaiters) done(id string) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		close(ch)
	}
}

// CommandDone is told (by the store's notice) that the pod command id was
// carried out and deleted; a caller waiting for it returns at once.
func (c *Coordinator) CommandDone(id string) { c.waiters.done(id) }

// LocalPods is this instance's supervisor as the services see it.
type LocalPods interface {
	StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (started bool, err error)
	StopPod(ctx context.Context, taskID, reason string) error
	RestartPod(ctx context.Context, t *ipa.Task) error
	PausePod(ctx context.Context, taskID string) error
	ResumePod(ctx context.Context, taskID string) error
	Status(taskID string) ipa.PodStatus
	Forget(taskID string)
}

// Router is the supervisor as the services see it, across instances: a stop
// or restart of a pod another instance owns is committed as a pod command
// for that owner (which is notified, acts, and deletes it, which notifies
// back), and the call waits, bounded, for that. Everything else is this
// instance's supervisor.
type Router struct {
	LocalPods
	c *Coordinator
	// wait bounds how long a command for another instance is waited for;
	// after it the call answers with the pod as it is then (e.g. STOPPING).
	wait time.Duration
}

// Router returns the Router over local that waits at most wait for another
// instance to carry out a command.
func (c *Coordinator) Router(local LocalPods, wait time.Duration) *Router {
	return &Router{LocalPods: local, c: c, wait: wait}
}

// commandCheck is how often a waiting caller looks at its command and at
// the pod's owner itself: the safety net under the done notice, which is
// lost while the notice connection is down.
const commandCheck = time.Second

// StopPod stops the pod wherever it runs. Errors are the supervisor's, or
// the store's while reading the owner.
func (r *Router) StopPod(ctx context.Context, taskID, reason string) error {
	return r.route(ctx, taskID, CmdStop, reason, func() error { return r.LocalPods.StopPod(ctx, taskID, reason) })
}

// StartPod starts the pod here unless one runs. A start whose pod_started
// was fenced off (ipa.ErrLeaseLost: another instance took the pod over
// between this one's claim and its record; the process launched here was
// killed) answers as a start that found a pod running, which it did: on
// the new owner. LEASE_LOST is no answer the contract knows.
func (r *Router) StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (bool, error) {
	started, err := r.LocalPods.StartPod(ctx, t, trigger, causationID)
	if errors.Is(err, ipa.ErrLeaseLost) {
		return false, nil
	}
	return started, err
}

// RestartPod restarts the pod on the instance that owns it, or here.
func (r *Router) RestartPod(ctx context.Context, t *ipa.Task) error {
	if t == nil {
		return r.LocalPods.RestartPod(ctx, t)
	}
	return r.route(ctx, t.ID, CmdRestart, "restart", func() error { return r.LocalPods.RestartPod(ctx, t) })
}

// PausePod pauses the pod on the instance that owns it, or here.
func (r *Router) PausePod(ctx context.Context, taskID string) error {
	return r.route(ctx, taskID, CmdPause, "pause", func() error { return r.LocalPods.PausePod(ctx, taskID) })
}

// ResumePod resumes the pod on the instance that owns it, or here.
func (r *Router) ResumePod(ctx context.Context, taskID string) error {
	return r.route(ctx, taskID, CmdResume, "resume", func() error { return r.LocalPods.ResumePod(ctx, taskID) })
}

// maxLeaseLostRetries bounds how often route sends a command on after the
// lease moved under a local run. Each retry reads the owner again, which the
// fence found to be another instance; only a lease that keeps moving back
// and forth exhausts it.
const maxLeaseLostRetries = 3

// errLeaseUnsettled answers a command whose pod kept changing hands: the
// client may send it again once the takeover settles.
var errLeaseUnsettled = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable,
	"The task's pod is changing server instances; try again.")

// route runs local when no other instance owns the task's pod, else sends
// the command to the owner and waits until it was carried out (its done
// notice, or the row found gone), the owner changed (a takeover: sent again
// to the new owner), or the wait is over.
//
// A local run that ends in ipa.ErrLeaseLost (another instance took the pod
// over while this one acted: its pod fact was fenced off) is routed again,
// to the new owner: the client asked for the pod, wherever it now runs, and
// LEASE_LOST is no answer the contract knows.
func (r *Router) route(ctx context.Context, taskID, command, reason string, local func() error) error {
	st, clock := r.c.st, r.c.clock
	deadline := clock.Now().Add(r.wait)
	lost := 0
	for {
		owner, _, found, err := st.LeaseOwner(ctx, taskID)
		if err != nil {
			return err
		}
		if !found || owner == r.c.self {
			err := local()
			if errors.Is(err, ipa.ErrLeaseLost) {
				if lost++; lost <= maxLeaseLostRetries {
					r.c.log.Info("pod command routed again: the lease moved while it ran here",
						slog.String("task_id", taskID), slog.String("command", command))
					continue
				}
				return errLeaseUnsettled
			}
			return err
		}
		id, err := st.AddPodCommand(ctx, store.PodCommand{TaskID: taskID, InstanceID: owner, Command: command, Reason: reason, CreatedAt: clock.Now()})
		if err != nil {
			return err
		}
		done, rerouted, err := r.await(ctx, id, taskID, owner, deadline)
		if err != nil || done {
			return err
		}
		if !rerouted {
			return nil // the wait is over: the command stays for the owner to carry out when it can
		}
	}
}

// await waits for command id sent to owner. done: carried out; rerouted:
// the pod changed hands (the command was withdrawn); neither: the deadline
// passed.
func (r *Router) await(ctx context.Context, id, taskID, owner string, deadline time.Time) (done, rerouted bool, err error) {
	st, clock := r.c.st, r.c.clock
	ch := r.c.waiters.add(id)
	defer r.c.waiters.remove(id)
	for {
		// The owner may have finished before the waiter was in place, and
		// a notice may be lost: look at the row itself too.
		pending, err := st.PodCommandPending(ctx, id)
		if err != nil {
			return false, false, err
		}
		if !pending {
			return true, false, nil
		}
		if o, _, f, err := st.LeaseOwner(ctx, taskID); err == nil && (!f || o != owner) {
			_ = st.DeletePodCommand(ctx, id)
			return false, true, nil
		}
		left := deadline.Sub(clock.Now())
		if left <= 0 {
			return false, false, nil
		}
		wake := make(chan struct{})
		t := clock.AfterFunc(min(left, commandCheck), func() { close(wake) })
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false, ctx.Err()
		case <-ch:
			t.Stop()
			return true, false, nil
		case <-wake:
		}
	}
}
