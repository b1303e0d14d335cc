package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// ReconcileTarget is a task whose stream says it should have a pod or a
// pending restart: its projection says ACTIVE, or its pod BACKOFF or FAILED.
type ReconcileTarget struct {
	Task *ipa.Task
}

// reconcileParallelism bounds how many leases are checked at once: reattach
// is a dial and two small calls, so a few hundred pods finish in seconds.
const reconcileParallelism = 16

// Reconcile brings the supervisor in line with the world after a server
// start, before the API serves. For every lease in the LeaseStore:
//
//   - the task is an open target, and the leased process is alive and really
//     ours (pidfd, then the start time in /proc/<pid>/stat equals the lease's,
//     so a recycled pid is never adopted): reattach with go-plugin, call the
//     runtime's Attach with a fresh Host, record pod_reattached;
//   - the process is dead or is not ours: record pod_lost and apply the
//     restart policy;
//   - the reattach fails, or the task is not an open target: kill the
//     verified process (an old plugin never runs unsupervised), record
//     pod_lost.
//
// Targets whose task is ACTIVE and that have no lease get pod_lost and the
// policy; a pod that was in BACKOFF keeps its scheduled restart (nothing ran,
// so nothing is lost and no attempt is spent); targets in FAILED stay FAILED.
// ctx is used for the events recorded; each lease gets ReattachTimeout.
// Returns the LeaseStore's error when leases cannot be listed (nothing else
// is done then), and errClosed when the supervisor is not running.
func (s *Supervisor) Reconcile(ctx context.Context, targets []ReconcileTarget) error {
	if s.closing() {
		return errClosed
	}
	leases, err := s.cfg.Leases.List(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	byID := make(map[string]ipa.Task, len(targets))
	for _, t := range targets {
		if t.Task != nil && t.Task.ID != "" {
			byID[t.Task.ID] = *t.Task
		}
	}
	began := time.Now()
	leased := make(map[string]bool, len(leases))
	var wg sync.WaitGroup
	sem := make(chan struct{}, reconcileParallelism)
	for _, l := range leases {
		leased[l.TaskID] = true
		t, ok := byID[l.TaskID]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ended := s.reconcileLease(ctx, l, t, ok && !t.Status.Closed()); ended && ok && !t.Status.Closed() {
				s.reconcileUnleased(ctx, t) // as had the lease been deleted in time
			}
		}()
	}
	wg.Wait()
	for id, t := range byID {
		if leased[id] || t.Status.Closed() {
			continue
		}
		s.reconcileUnleased(ctx, t)
	}
	s.log.Info("reconcile done", slog.Int("leases", len(leases)), slog.Int("targets", len(byID)), slog.Duration("took", time.Since(began)))
	return nil
}

// reconcileLease settles one lease (see Reconcile). It reports true for the
// stale lease of a run whose end the stream already records (its deletion
// failed, e.g. while the database was unreachable): that lease is dropped
// and nothing recorded, and the caller settles the task as an unleased one.
func (s *Supervisor) reconcileLease(ctx context.Context, l Lease, t ipa.Task, wanted bool) (ended bool) {
	log := s.log.With(slog.String("task_id", l.TaskID), slog.Int("pid", l.PID), slog.Int("attempt", l.Attempt))
	if !wanted {
		t = ipa.Task{ID: l.TaskID, Runtime: l.Runtime}
	}
	p, err := s.lockPod(ctx, l.TaskID, true)
	if err != nil {
		log.Error("reconcile lease", slog.Any("error", err))
		return false
	}
	defer p.unlock()
	p.mu.Lock()
	p.task = t
	running := p.run != nil
	p.mu.Unlock()
	if running {
		return false // already supervised: Reconcile ran twice
	}
	if l.PID <= 0 {
		// A claim with no process (a restart pending, or a launch that had
		// not spawned its process yet) when the previous server stopped:
		// nothing to find. A queued pod whose granted start it was queues
		// again; any other task is settled as one without a lease.
		if s.requeue(ctx, l.TaskID, log) {
			s.forgetIdle(p)
			return false
		}
		s.dropLease(l.TaskID)
		return true
	}
	hist := s.runHistoryOf(ctx, l)
	if hist.unrecorded() {
		// The previous server saved this run's lease and stopped before it
		// recorded the run's pod_started: the history never saw it start,
		// so nothing about it is recorded now either. Whatever is left of
		// it is killed; a queued pod whose granted start it was queues
		// again, any other task is settled as one without a lease.
		s.killLeased(l, log)
		if s.requeue(ctx, l.TaskID, log) {
			s.forgetIdle(p)
			return false
		}
		s.dropLease(l.TaskID)
		log.Warn("run without pod_started ended", slog.String("decision", "kill_unrecorded"))
		return true
	}
	// Status shows the restarts of the window from the first moment.
	s.seedHistory(ctx, p)

	var pr *proc
	if l.BootID == "" || l.BootID == bootID() {
		pr, err = adopt(l.PID, l.StartTicks)
	} else {
		err = fmt.Errorf("lease from another boot: %w", errNotOurs)
	}
	dropLease := func() {
		if err := s.cfg.Leases.Delete(context.WithoutCancel(ctx), l.TaskID); err != nil {
			log.Error("delete lease", slog.Any("error", err))
		}
	}
	if err != nil {
		dropLease()
		if hist.ended {
			log.Info("stale lease dropped", slog.String("decision", "run_end_recorded"))
			return true
		}
		log.Warn("pod lost", slog.String("decision", "process_gone"), slog.Any("error", err))
		if wanted {
			s.lost(ctx, p, l, ipa.LostProcessGone)
		}
		return false
	}
	if !wanted {
		s.killAdopted(pr, log)
		dropLease()
		log.Warn("pod lost", slog.String("decision", "kill_not_active"))
		s.lost(ctx, p, l, ipa.LostNotActive)
		return false
	}

	conn, err := s.reattach(ctx, l, pr, t)
	if err != nil {
		s.killAdopted(pr, log)
		dropLease()
		log.Warn("pod lost", slog.String("decision", "kill_reattach_failed"), slog.Any("error", err))
		s.lost(ctx, p, l, ipa.LostReattachFailed)
		return false
	}
	r := &run{conn: conn, proc: pr, runtime: l.Runtime, attempt: l.Attempt, trigger: "reattach", startedAt: l.StartedAt,
		stderr: newStderrTail(log.With(slog.String("source", "plugin")))}
	if !s.reserve(2) {
		conn.close(pr, closeWait)
		s.killAdopted(pr, log)
		conn.release(pr)
		return false
	}
	r.startedEventID, _ = s.record(ctx, l.TaskID, ipa.EventPodReattached, ipa.PodReattachedData{PID: l.PID, Attempt: l.Attempt, Runtime: l.Runtime}, "")
	s.adoptRun(p, r)
	if t.PodState == ipa.PodPaused {
		p.setState(ipa.PodPaused) // its processes are still stopped
	}
	s.m.starts.WithLabelValues(l.Runtime, "reattach").Inc()
	log.Info("pod reattached", slog.String("decision", "reattached"))
	return false
}

// reattach connects to an adopted plugin and re-binds its host service,
// within ReattachTimeout. On error the caller kills the process.
func (s *Supervisor) reattach(ctx context.Context, l Lease, pr *proc, t ipa.Task) (*pluginConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReattachTimeout)
	defer cancel()
	type result struct {
		conn *pluginConn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := reattachPlugin(l, pr, s.log)
		if err == nil {
			var resp podapi.AttachResponse
			resp, err = c.rt.Attach(ctx, podapi.AttachRequest{TaskID: l.TaskID, Host: s.cfg.HostFactory(l.TaskID, t.Runtime)})
			if err == nil && resp.TaskID != "" && resp.TaskID != l.TaskID {
				err = fmt.Errorf("plugin runs task %s, not %s", resp.TaskID, l.TaskID)
			}
			if err != nil {
				c.close(pr, closeWait)
				c = nil
			}
		}
		done <- result{c, err}
	}()
	select {
	case res := <-done:
		return res.conn, res.err
	case <-ctx.Done():
		// Killing the process (the caller does) ends the dial; the goroutine
		// then sends into its buffered channel and ends.
		return nil, errors.Join(errors.New("reattach timed out"), ctx.Err())
	}
}

// killAdopted kills a verified process and waits (KillWait) for its exit.
func (s *Supervisor) killAdopted(pr *proc, log *slog.Logger) {
	if err := terminate(pr, s.cfg.KillWait); err != nil {
		log.Error("kill old plugin", slog.Any("error", err))
	}
}

// lost records pod_lost for the task and applies its restart policy as for a
// crash of a run that started at the lease's StartedAt. Operation lock held.
func (s *Supervisor) lost(ctx context.Context, p *pod, l Lease, reason string) {
	now := s.cfg.Now()
	p.mu.Lock()
	p.state = ipa.PodCrashed
	p.mu.Unlock()
	s.m.lost.WithLabelValues(l.Runtime).Inc()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	s.seedHistory(rctx, p)
	s.lostWith(rctx, p, l, ipa.PodLostData{Reason: reason, PID: l.PID, InstanceID: s.cfg.InstanceID}, now)
}

// lostWith records data as the pod's pod_lost and applies the restart
// policy (not for a pod that should not run). Operation lock held.
func (s *Supervisor) lostWith(rctx context.Context, p *pod, l Lease, data ipa.PodLostData, now time.Time) {
	evID, _ := s.record(rctx, l.TaskID, ipa.EventPodLost, data, "")
	if data.Reason == ipa.LostNotActive {
		s.dropLease(l.TaskID)
		return
	}
	var uptime time.Duration
	if !l.StartedAt.IsZero() {
		uptime = now.Sub(l.StartedAt)
	}
	s.applyPolicy(context.Background(), p, now, uptime, evID)
}

// reconcileUnleased settles a target with no lease: a pod it should have is
// lost (and the policy applies); a FAILED pod is remembered as FAILED.
func (s *Supervisor) reconcileUnleased(ctx context.Context, t ipa.Task) {
	lostPod := t.Status == ipa.StatusActive || t.PodState == ipa.PodBackoff ||
		t.PodState == ipa.PodRunning || t.PodState == ipa.PodStarting || t.PodState == ipa.PodStopping
	if !lostPod && t.PodState == ipa.PodCrashed && s.policy(t).AutoRestart {
		s.restartOwed(ctx, t)
		return
	}
	if t.PodState == ipa.PodBackoff && t.Status != ipa.StatusActive && s.policy(t).AutoRestart {
		s.keepBackoff(ctx, t)
		return
	}
	if !lostPod && t.PodState != ipa.PodFailed {
		return
	}
	p, err := s.lockPod(ctx, t.ID, true)
	if err != nil {
		return
	}
	defer p.unlock()
	p.mu.Lock()
	p.task = t
	running := p.run != nil
	if !lostPod && !running {
		p.state = ipa.PodFailed
	}
	p.mu.Unlock()
	if !lostPod || running {
		s.seedHistory(ctx, p)
		return
	}
	// Claim the pod before deciding it is lost: another instance on the
	// same database may own it (its lease is newer than the caller's view),
	// and a pod another instance owns is never disturbed.
	if err := s.claimLease(ctx, t, 0); err != nil {
		s.forgetIdle(p)
		if !errors.Is(err, ipa.ErrLeaseHeld) {
			s.log.Error("reconcile: claim lease", slog.String("task_id", t.ID), slog.Any("error", err))
		}
		return
	}
	s.log.Warn("pod lost", slog.String("task_id", t.ID), slog.String("decision", "no_lease"))
	s.lost(ctx, p, Lease{TaskID: t.ID, Runtime: t.Runtime}, ipa.LostNoLease)
}

// lockIdle returns t's pod with its operation lock held and its task set
// to t, or nil when it cannot be had or a run or a pending restart is
// already there (this server settled it meanwhile).
func (s *Supervisor) lockIdle(ctx context.Context, t ipa.Task) *pod {
	p, err := s.lockPod(ctx, t.ID, true)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	p.task = t
	busy := p.run != nil || p.pending != nil
	p.mu.Unlock()
	if busy {
		p.unlock()
		return nil
	}
	return p
}

// restartOwed settles a CRASHED pod whose policy restarts it: its crash is
// recorded but what the policy decided is not (the previous server died
// before it could write that, e.g. while the database was unreachable and
// the decision waited in its outbox). The decision is taken again from the
// recorded history, in which that crash already counts once.
func (s *Supervisor) restartOwed(ctx context.Context, t ipa.Task) {
	p := s.lockIdle(ctx, t)
	if p == nil {
		return
	}
	defer p.unlock()
	if err := s.claimLease(ctx, t, 0); err != nil {
		s.forgetIdle(p) // another instance owns the pod (or the store is down: the next start settles it)
		return
	}
	s.seedHistory(ctx, p)
	p.mu.Lock()
	p.state = ipa.PodCrashed
	if n := len(p.restarts.crashes); n > 0 {
		p.restarts.crashes = p.restarts.crashes[:n-1] // applyPolicy notes it again
	}
	p.mu.Unlock()
	s.log.Warn("pod restart owed", slog.String("task_id", t.ID), slog.String("decision", "apply_policy"))
	s.applyPolicy(context.Background(), p, s.cfg.Now(), 0, "")
}

// keepBackoff settles a pod that was backing off when the previous server
// stopped without a word (kill -9, a crash of the machine): no process ran
// for it, so nothing was lost and no attempt is spent; its scheduled restart
// is armed again, due when the recorded back-off ends (at once if that has
// passed). The due time is the policy's own arithmetic over the crashes the
// stream records inside the window, as when it was first scheduled.
func (s *Supervisor) keepBackoff(ctx context.Context, t ipa.Task) {
	p := s.lockIdle(ctx, t)
	if p == nil {
		return
	}
	defer p.unlock()
	pol := s.policy(t)
	// The pod is claimed first: another instance on the same database may
	// own it (and its pending restart) already.
	if err := s.claimLease(ctx, t, 0); err != nil {
		s.forgetIdle(p)
		if !errors.Is(err, ipa.ErrLeaseHeld) {
			s.log.Error("reconcile: claim lease", slog.String("task_id", t.ID), slog.Any("error", err))
		}
		return
	}
	s.seedHistory(ctx, p)
	now := s.cfg.Now()
	p.mu.Lock()
	n := len(p.restarts.crashes)
	due := now
	if n > 0 {
		due = p.restarts.crashes[n-1].Add(backoffDelay(pol, n))
	}
	delay := max(due.Sub(now), 0)
	next := now.Add(delay)
	pr := &pendingRestart{attempt: n + 1, cancel: make(chan struct{})}
	p.state, p.nextAttemptAt, p.pending = ipa.PodBackoff, &next, pr
	p.mu.Unlock()
	if !s.reserve(1) {
		return
	}
	s.log.Info("pod restart kept", slog.String("task_id", t.ID), slog.String("decision", "backoff_kept"),
		slog.Int("attempt", pr.attempt), slog.Duration("delay", delay))
	go s.restartAfter(p, pr, s.cfg.After(delay))
}

// runHistory is what a task's stream records of a leased run: pod events
// naming its pid since it started (a minute earlier, for clocks; a pid is
// not handed out again that soon). known is false when the history cannot
// be read or the lease names no process; the lease is then settled as if
// the stream recorded its start and not its end.
type runHistory struct {
	known   bool
	started bool // a pod_started: the run was recorded
	ended   bool // a pod_crashed or pod_lost: its end is recorded too
}

// unrecorded reports a run whose server died between saving its lease and
// recording its pod_started.
func (h runHistory) unrecorded() bool { return h.known && !h.started }

// runHistoryOf reads the leased run's history (see runHistory).
func (s *Supervisor) runHistoryOf(ctx context.Context, l Lease) runHistory {
	if s.cfg.History == nil || l.PID <= 0 {
		return runHistory{}
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	evs, err := s.cfg.History.RecentPodEvents(rctx, l.TaskID, l.StartedAt.Add(-time.Minute))
	if err != nil {
		return runHistory{}
	}
	h := runHistory{known: true}
	for _, e := range evs {
		var d struct {
			PID int `json:"pid"`
		}
		if json.Unmarshal(e.Data, &d) != nil || d.PID != l.PID {
			continue
		}
		switch e.Type {
		case ipa.EventPodStarted:
			h.started = true
		case ipa.EventPodCrashed, ipa.EventPodLost:
			h.ended = true
		}
	}
	return h
}

// killLeased kills the leased run's process when it is still alive on this
// machine (same boot, verified start time).
func (s *Supervisor) killLeased(l Lease, log *slog.Logger) {
	if l.PID <= 0 || (l.BootID != "" && l.BootID != bootID()) {
		return
	}
	if pr, err := adopt(l.PID, l.StartTicks); err == nil {
		log.Warn("old plugin still alive: killed", slog.Int("pid", l.PID))
		s.killAdopted(pr, log)
	}
}
