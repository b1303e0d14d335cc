package supervisor

import (
	"context"
	"log/slog"
	"sync"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Takeover is a pod lease this instance has just claimed from a dead one:
// the lease as the previous owner wrote it, its new fencing epoch, and the
// task as the store has it now.
type Takeover struct {
	Lease         Lease
	PreviousOwner string
	Epoch         int64
	Task          *ipa.Task // nil when the task is gone
}

// TakeOver settles pods whose owner died (its heartbeat is older than the
// lease TTL); the caller has already moved their leases to this instance.
// For each: a process of the old run still alive on this machine (same boot,
// verified start time) is killed first, so one task's work never runs twice;
// an open task records pod_lost (reason instance_lost, with the previous
// owner and the new epoch) and its restart policy applies here, except a pod
// the old owner was backing off (no process), whose scheduled restart simply
// goes on here; a closed task's lease is just dropped. It returns when every
// pod is settled.
func (s *Supervisor) TakeOver(ctx context.Context, taken []Takeover) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, reconcileParallelism)
	for _, tk := range taken {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.takeOver(ctx, tk)
		}()
	}
	wg.Wait()
}

func (s *Supervisor) takeOver(ctx context.Context, tk Takeover) {
	l := tk.Lease
	log := s.log.With(slog.String("task_id", l.TaskID), slog.String("previous_owner", tk.PreviousOwner), slog.Int64("epoch", tk.Epoch))
	s.killLeased(l, log.With(slog.String("decision", "kill_at_takeover")))
	if tk.Task == nil || tk.Task.Status.Closed() {
		s.dropLease(l.TaskID)
		log.Info("lease taken over and dropped", slog.String("decision", "task_closed"))
		return
	}
	unrecorded := s.runHistoryOf(ctx, l).unrecorded()
	if (unrecorded || l.PID <= 0) && tk.Task.PodState == ipa.PodQueued && s.requeue(ctx, l.TaskID, log) {
		// The dead owner was starting a queued pod granted a slot (its
		// claim, or its process, killed above) and never recorded the
		// start: nothing ran that the history saw. It queues again.
		return
	}
	if unrecorded {
		// The dead owner saved the run's lease but never recorded its
		// pod_started: no run is lost that the history saw start. The
		// task is settled from what its history does record.
		s.dropLease(l.TaskID)
		log.Warn("taken-over run without pod_started", slog.String("decision", "settle_unleased"))
		s.reconcileUnleased(ctx, *tk.Task)
		return
	}
	if l.PID <= 0 && tk.Task.PodState == ipa.PodBackoff && s.policy(*tk.Task).AutoRestart {
		// The dead owner was backing off: no process ran, so nothing is
		// lost and no attempt is spent; its scheduled restart goes on here.
		log.Info("pending restart taken over", slog.String("decision", "backoff_kept"))
		s.keepBackoff(ctx, *tk.Task)
		return
	}
	p, err := s.lockPod(ctx, l.TaskID, true)
	if err != nil {
		return
	}
	defer p.unlock()
	p.mu.Lock()
	p.task = *tk.Task
	running := p.run != nil
	p.mu.Unlock()
	if running {
		return
	}
	now := s.cfg.Now()
	p.setState(ipa.PodCrashed)
	s.m.lost.WithLabelValues(l.Runtime).Inc()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	s.seedHistory(rctx, p)
	log.Warn("pod lost", slog.String("decision", "instance_lost"))
	s.lostWith(rctx, p, l, ipa.PodLostData{Reason: ipa.LostInstanceLost, PID: l.PID, InstanceID: tk.PreviousOwner, Epoch: tk.Epoch}, now)
}

// Owned returns the tasks this instance runs a pod for or has a restart
// pending for: what it must hold a lease of.
func (s *Supervisor) Owned() []string {
	s.mu.Lock()
	pods := make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	s.mu.Unlock()
	var out []string
	for _, p := range pods {
		p.mu.Lock()
		if p.run != nil || p.pending != nil {
			out = append(out, p.taskID)
		}
		p.mu.Unlock()
	}
	return out
}

// Abandon lets go of a pod whose lease another instance now holds (this one
// was paused or cut off past the TTL and was taken over): whatever still
// runs for it here is killed and a pending restart is called off, and
// nothing is recorded — the stream belongs to the new owner.
func (s *Supervisor) Abandon(taskID string) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartTimeout+s.cfg.StopTimeout)
	defer cancel()
	p, err := s.lockPod(ctx, taskID, false)
	if err != nil || p == nil {
		return
	}
	defer p.unlock()
	p.mu.Lock()
	r, pending := p.run, p.pending
	p.mu.Unlock()
	s.cancelPending(p, pending)
	log := s.log.With(slog.String("task_id", taskID))
	if r != nil {
		r.stopping.Store(true)
		r.conn.close(r.proc, closeWait)
		if err := terminate(r.proc, s.cfg.KillWait); err != nil {
			log.Error("abandon: kill plugin", slog.Any("error", err))
		}
		s.endRun(p, r)
	}
	log.Warn("pod abandoned", slog.String("decision", "lease_taken_over"))
	p.mu.Lock()
	p.state, p.crashes = ipa.PodStopped, nil
	p.restarts.reset()
	p.forgotten = true
	p.mu.Unlock()
	s.mu.Lock()
	delete(s.pods, taskID)
	s.mu.Unlock()
}

// forgetIdle drops the pod's entry when nothing runs or waits for it here,
// so Status answers from the store (another instance owns the pod).
// Operation lock held.
func (s *Supervisor) forgetIdle(p *pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil || p.pending != nil {
		return
	}
	p.forgotten = true
	s.mu.Lock()
	if s.pods[p.taskID] == p {
		delete(s.pods, p.taskID)
	}
	s.mu.Unlock()
}
