package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// policy returns the restart policy in force for t.
func (s *Supervisor) policy(t ipa.Task) ipa.RestartPolicy {
	if t.RestartPolicy.WindowSeconds == 0 {
		return s.cfg.DefaultPolicy
	}
	return t.RestartPolicy
}

// cancelPending calls off a scheduled restart. Operation lock held.
func (s *Supervisor) cancelPending(p *pod, pr *pendingRestart) {
	if pr == nil {
		return
	}
	close(pr.cancel)
	p.mu.Lock()
	if p.pending == pr {
		p.pending, p.nextAttemptAt = nil, nil
	}
	p.mu.Unlock()
}

// applyPolicy decides what follows a crash (or a lost pod) at time at after
// a run of uptime: nothing (no auto restart), FAILED (the window's limit is
// spent) or BACKOFF with a restart scheduled. Operation lock held.
//
// parent carries the span of the crash (its restart's span is a child of it).
func (s *Supervisor) applyPolicy(parent context.Context, p *pod, at time.Time, uptime time.Duration, causation string) {
	sc := trace.SpanContextFromContext(parent)
	p.mu.Lock()
	pol := s.policy(p.task)
	log := s.log.With(slog.String("task_id", p.taskID))
	d := p.restarts.crash(pol, at, uptime)
	if d.Action == restartOff {
		p.mu.Unlock()
		s.dropLease(p.taskID)
		log.Info("pod not restarted", slog.String("decision", "policy_off"))
		return
	}
	ctx, cancel := s.ownCtx()
	defer cancel()
	ctx = withSpanOf(ctx, sc)
	if d.Action == restartFailed {
		p.nextAttemptAt = nil
		p.mu.Unlock()
		s.m.restartLimit.WithLabelValues(p.task.Runtime).Inc()
		log.Error("pod failed", slog.String("decision", "restart_limit_reached"), slog.Int("crashes_in_window", d.Crashes), slog.Int("max_attempts", pol.MaxAttempts))
		_, _ = s.record(ctx, p.taskID, ipa.EventPodRestartLimitReached, ipa.PodRestartLimitReachedData{MaxAttempts: pol.MaxAttempts, WindowSeconds: pol.WindowSeconds}, causation)
		s.dropLease(p.taskID)
		// FAILED shows only once its event is in the history, so whoever
		// sees the state can also read why.
		p.mu.Lock()
		p.state = ipa.PodFailed
		p.mu.Unlock()
		return
	}
	next := at.Add(d.Delay)
	pr := &pendingRestart{attempt: d.Attempt, cancel: make(chan struct{}), span: sc}
	task := p.task
	p.mu.Unlock()
	// The pending restart keeps the pod's lease: the pod has an owner while
	// it backs off, so no other instance counts it lost.
	if err := s.claimLease(ctx, task, d.Attempt); err != nil && errors.Is(err, ipa.ErrLeaseHeld) {
		p.setState(ipa.PodStopped)
		log.Warn("pod restart dropped", slog.String("decision", "lease_held_elsewhere"))
		return
	}
	p.mu.Lock()
	p.state, p.nextAttemptAt, p.pending = ipa.PodBackoff, &next, pr
	p.mu.Unlock()
	if !s.reserve(1) {
		return // shutting down: nothing restarts any more
	}
	timer := s.cfg.After(d.Delay)
	log.Info("pod restart scheduled", slog.String("decision", "backoff"), slog.Int("attempt", pr.attempt), slog.Duration("delay", d.Delay))
	// The goroutine reads pr.causation only after taking the operation lock,
	// which this caller holds: set it before.
	late := s.warnLate(p.taskID, "pod restart held up", "pod_restart_scheduled to be recorded")
	pr.causation, _ = s.record(ctx, p.taskID, ipa.EventPodRestartScheduled, ipa.PodRestartScheduledData{Attempt: d.Restart, DelayMs: d.Delay.Milliseconds(), At: next}, causation)
	late()
	go s.restartAfter(p, pr, timer)
}

// lateAfter is how long one step of a pod's start or scheduled restart may
// wait before the server says what it waits for. Such a wait (for the store,
// or for another operation on the pod) is otherwise silent until it ends:
// the log would stop at "pod restart scheduled" with nothing to say why.
const lateAfter = time.Second

// warnLate logs msg once, naming what the pod waits for, if the returned
// function is not called within lateAfter; that function ends the watch.
func (s *Supervisor) warnLate(taskID, msg, waitingFor string) (done func()) {
	began := time.Now()
	t := time.AfterFunc(lateAfter, func() {
		s.log.Warn(msg, slog.String("task_id", taskID), slog.String("waiting_for", waitingFor), slog.Duration("waited", time.Since(began)))
	})
	return func() { t.Stop() }
}

// restartAfter waits out a back-off and restarts the pod, unless the restart
// was called off or the supervisor shuts down first.
func (s *Supervisor) restartAfter(p *pod, pr *pendingRestart, timer <-chan time.Time) {
	defer s.wg.Done()
	select {
	case <-timer:
	case <-pr.cancel:
		return
	case <-s.ctx.Done():
		return
	}
	late := s.warnLate(p.taskID, "pod restart held up", "another operation on the pod to end")
	err := p.lock(s.ctx)
	late()
	if err != nil {
		return
	}
	defer p.unlock()
	p.mu.Lock()
	if p.pending != pr || p.forgotten {
		p.mu.Unlock()
		return
	}
	p.pending, p.nextAttemptAt = nil, nil
	t := p.task
	now := s.cfg.Now()
	p.restarts.restarted(s.policy(t), now)
	p.mu.Unlock()
	ctx, span := startSpan(withSpanOf(s.ctx, pr.span), "pod.restart", t.ID, t.Runtime, attribute.Int("ipa.pod.attempt", pr.attempt))
	defer span.End()
	err = s.launch(ctx, p, t, pr.attempt, ipa.TriggerRestart, pr.causation)
	if err == nil {
		s.m.restarts.WithLabelValues(t.Runtime).Inc()
		return
	}
	if s.closing() {
		p.setState(ipa.PodStopped)
		return
	}
	if errors.Is(err, ipa.ErrLeaseHeld) || errors.Is(err, ipa.ErrLeaseLost) {
		// Another instance took the pod over while it backed off here.
		p.setState(ipa.PodStopped)
		return
	}
	if storeUnavailable(err) {
		// The plugin is fine as far as anyone knows; the database is not.
		// This is no attempt: wait for the store and try the same restart.
		p.mu.Lock()
		p.restarts.unrestarted(now)
		p.mu.Unlock()
		s.waitForStore(p, pr, err)
		return
	}
	s.m.restarts.WithLabelValues(t.Runtime).Inc()
	span.SetStatus(codes.Error, "restart failed")
	s.startFailed(ctx, p, t, pr.attempt, err, pr.causation)
}

// waitForStore schedules pr's restart again after a back-off of its own
// (StoreRetryMin doubling up to StoreRetryMax), because it could not be
// recorded: the store is unreachable. The pod stays in BACKOFF and no restart
// attempt is spent. Operation lock held.
func (s *Supervisor) waitForStore(p *pod, pr *pendingRestart, cause error) {
	delay := s.cfg.StoreRetryMin
	for range pr.storeWaits {
		if delay >= s.cfg.StoreRetryMax {
			break
		}
		delay *= 2
	}
	delay = min(delay, s.cfg.StoreRetryMax)
	next := s.cfg.Now().Add(delay)
	again := &pendingRestart{attempt: pr.attempt, cancel: make(chan struct{}), causation: pr.causation, storeWaits: pr.storeWaits + 1}
	p.mu.Lock()
	if p.forgotten {
		p.mu.Unlock()
		return
	}
	p.state, p.nextAttemptAt, p.pending = ipa.PodBackoff, &next, again
	runtime := p.task.Runtime
	p.mu.Unlock()
	s.m.storeWaits.WithLabelValues(runtime).Inc()
	s.log.Warn("pod restart waits for the database", slog.String("task_id", p.taskID), slog.String("decision", "store_unavailable"),
		slog.Int("attempt", pr.attempt), slog.Duration("delay", delay), slog.Int("waits", again.storeWaits), slog.Any("error", cause))
	if !s.reserve(1) {
		return
	}
	go s.restartAfter(p, again, s.cfg.After(delay))
}
