package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// StopPod stops the task's pod: runtime Stop with a StopTimeout deadline,
// then the plugin is asked to exit, and whatever of its process group is still
// alive at the deadline is killed. It records pod_stopped with reason. A stop
// during BACKOFF calls off the scheduled restart and records pod_stopped
// (cancelledRestart: true); the pod is then STOPPED. The stop goes on even if
// ctx ends (it is not abandoned half-way); ctx only bounds the wait for
// another operation on the pod.
//
// Returns ipa.ErrPodNotRunning when no pod runs and no restart is pending (FAILED
// stays FAILED), and the Recorder's error when pod_stopped cannot be recorded
// (the pod is stopped all the same).
func (s *Supervisor) StopPod(ctx context.Context, taskID, reason string) error {
	p, err := s.lockPod(ctx, taskID, false)
	if err != nil {
		return err
	}
	if p == nil {
		return ipa.ErrPodNotRunning
	}
	defer p.unlock()
	return s.stopLocked(context.WithoutCancel(ctx), p, reason)
}

func (s *Supervisor) stopLocked(ctx context.Context, p *pod, reason string) (err error) {
	p.mu.Lock()
	runtime := p.task.Runtime
	p.mu.Unlock()
	ctx, span := startSpan(ctx, "pod.stop", p.taskID, runtime, attribute.String("ipa.pod.stop.reason", reason))
	defer func() { endSpan(span, err) }()
	p.mu.Lock()
	r, pending := p.run, p.pending
	p.mu.Unlock()
	log := s.log.With(slog.String("task_id", p.taskID))
	if r == nil {
		if pending == nil {
			return ipa.ErrPodNotRunning
		}
		s.cancelPending(p, pending)
		p.setState(ipa.PodStopped)
		log.Info("pod restart called off", slog.String("decision", "stop_during_backoff"), slog.String("reason", reason))
		_, err = s.record(ctx, p.taskID, ipa.EventPodStopped, ipa.PodStoppedData{Reason: reason, CancelledRestart: true, InstanceID: s.shutdownOwner(reason)}, pending.causation)
		s.dropLease(p.taskID)
		return err
	}
	data := s.stopRun(ctx, p, r, reason)
	data.InstanceID = s.shutdownOwner(reason)
	p.setState(ipa.PodStopped)
	_, err = s.record(ctx, p.taskID, ipa.EventPodStopped, data, r.startedEventID)
	s.dropLease(p.taskID)
	return err
}

// shutdownOwner is the instance id recorded in a pod_stopped of reason: this
// server's on its own shutdown (what Resume looks for), else none.
func (s *Supervisor) shutdownOwner(reason string) string {
	if reason == ipa.StopShutdown {
		return s.cfg.InstanceID
	}
	return ""
}

// stopRun ends r gracefully if it can, forcibly if it must, and detaches it.
// Operation lock held. Only traced's span is used (the runtime's Stop is
// its child); the stop is never cut short by traced.
func (s *Supervisor) stopRun(traced context.Context, p *pod, r *run, reason string) ipa.PodStoppedData {
	r.stopping.Store(true)
	p.mu.Lock()
	paused := p.state == ipa.PodPaused
	p.mu.Unlock()
	if paused {
		// A pod paused with signals is resumed to end cleanly (one that
		// paused itself ends its paused work on Stop). Only a paused one:
		// a plugin something else froze stays frozen and is killed on time.
		thaw(r)
	}
	p.setState(ipa.PodStopping)
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid))
	r.stopPoll()
	deadline := time.Now().Add(s.cfg.StopTimeout)
	ctx, cancel := context.WithDeadline(withSpanOf(context.Background(), trace.SpanContextFromContext(traced)), deadline)
	defer cancel()
	forced := false
	if r.proc.alive() {
		if _, err := r.conn.rt.Stop(ctx, podapi.StopRequest{Deadline: deadline, Reason: reason}); err != nil {
			log.Warn("runtime stop failed", slog.Any("error", err))
		}
		// go-plugin's controller Shutdown: the plugin process exits. A frozen
		// plugin answers neither: the deadline stands.
		r.conn.close(r.proc, time.Until(deadline))
		select {
		case <-r.proc.exited():
		case <-ctx.Done():
			forced = true
			log.Warn("pod did not exit in time", slog.String("decision", "kill"), slog.Duration("stop_timeout", s.cfg.StopTimeout))
			if err := terminate(r.proc, s.cfg.KillWait); err != nil {
				log.Error("pod survived SIGKILL", slog.Any("error", err))
			}
		}
	}
	ex := r.proc.exitStatus()
	uptime := s.cfg.Now().Sub(r.startedAt)
	s.endRun(p, r)
	log.Info("pod stopped", slog.String("decision", "stopped"), slog.String("reason", reason), slog.Bool("forced", forced))
	return ipa.PodStoppedData{Reason: reason, PID: r.proc.pid, ExitCode: ex.Code, Signal: ex.Signal, Forced: forced, UptimeMs: uptime.Milliseconds()}
}

// Shutdown stops every pod (runtime Stop, then SIGKILL after StopTimeout, all
// pods at once) but a paused one (leavePaused), records their pod_stopped
// (reason "server_shutdown"), calls
// off pending restarts and waits for every goroutine the supervisor owns.
// When ctx ends first, every plugin still alive is killed at once and the
// wait goes on for at most KillWait. Idempotent; later calls wait for the
// first. Returns ctx's error when it ended the graceful part early.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		select {
		case <-s.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.state = stateClosed
	pods := make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	s.mu.Unlock()
	defer close(s.stopped)
	s.log.Info("supervisor shutting down", slog.Int("pods", len(pods)))
	if s.pool != nil {
		// No start takes from it any more (closing): its idle processes go
		// first, in parallel with nothing to stop in them.
		s.pool.close()
	}

	// Stop runs first and only then cancel s.ctx: a pod that crashes while
	// we stop its neighbours is still recorded by its watcher.
	var stops sync.WaitGroup
	for _, p := range pods {
		stops.Add(1)
		go func() {
			defer stops.Done()
			if p.lock(ctx) != nil {
				return
			}
			defer p.unlock()
			p.mu.Lock()
			r, pending := p.run, p.pending
			p.mu.Unlock()
			if r == nil && pending == nil {
				return
			}
			if s.leavePaused(p, r) {
				return
			}
			rctx, cancel := s.ownCtx()
			defer cancel()
			_ = s.stopLocked(rctx, p, ipa.StopShutdown)
		}()
	}
	allStopped := make(chan struct{})
	go func() { stops.Wait(); close(allStopped) }()
	var err error
	select {
	case <-allStopped:
	case <-ctx.Done():
		err = ctx.Err()
		s.log.Warn("supervisor shutdown deadline: killing every plugin")
		s.killAll(pods)
		t := time.NewTimer(s.cfg.KillWait)
		select {
		case <-allStopped:
		case <-t.C:
		}
		t.Stop()
	}
	// What the store could not take (it is unreachable) gets one last
	// chance; what is left after it is dropped, loudly.
	dctx, dcancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	if ctx.Err() != nil {
		dcancel()
		dctx, dcancel = context.WithTimeout(context.Background(), s.cfg.KillWait)
	}
	s.drainOutbox(dctx)
	dcancel()
	s.mu.Lock()
	s.cancel() // under mu: no reserve after this
	s.mu.Unlock()
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	t := time.NewTimer(s.cfg.KillWait + s.cfg.HealthTimeout)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		err = errors.Join(err, errors.New("supervisor: goroutines still running after shutdown"))
	}
	s.log.Info("supervisor stopped")
	return err
}

// Stop is Shutdown bounded by Config.ShutdownTimeout, for the server's
// lifecycle (a lifecycle.StopReporter): safe before Start and twice;
// StopErr says whether the graceful part ran out of time and pods were
// killed.
func (s *Supervisor) Stop() {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			s.log.Warn("pod shutdown", slog.Any("error", err))
			s.stopErr = err
		}
	})
}

// StopErr is Shutdown's error in Stop, once Stop has returned.
func (s *Supervisor) StopErr() error { return s.stopErr }

// killAll sends SIGKILL to every plugin still running, without the operation
// lock (the last resort of Shutdown).
func (s *Supervisor) killAll(pods []*pod) {
	for _, p := range pods {
		p.mu.Lock()
		r := p.run
		p.mu.Unlock()
		if r != nil {
			_ = r.proc.kill(syscall.SIGKILL)
		}
	}
}
