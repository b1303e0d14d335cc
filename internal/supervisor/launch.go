package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// StartPod starts the task's pod unless one runs already. Any number of
// concurrent calls for one task start exactly one process: the first one
// launches it and returns started=true, the others wait for it and return
// started=false. The call counts as a person's (or the manager's on one's
// behalf): it clears FAILED, resets the restart counter and calls off a
// pending restart (starting now instead). trigger is recorded in pod_started
// (ipa.TriggerManual, TriggerAutoStart, TriggerResume; "" is manual), with
// ctx (actor, correlation id).
//
// A start that fails is recorded as a crash (pod_crashed, reason
// start_failed, with a message a person can read) and the task's restart
// policy applies, as for any crash; the error is returned all the same.
//
// Returns an UNAVAILABLE/RUNTIME_FAILED *ipa.Error (wrapped with the cause)
// when the plugin cannot be launched or refuses Start, an EINVALID one for an
// unknown runtime, ctx's error when ctx ends while waiting for another
// operation on the pod, and the Recorder's error when pod_started cannot be
// recorded (the process is then killed: no pod runs unrecorded).
func (s *Supervisor) StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (started bool, err error) {
	started, err = s.startPod(ctx, PodSpec{Task: t, CausationID: causationID, Trigger: trigger}, true)
	if errors.Is(err, ipa.ErrLeaseHeld) {
		// Another server sharing the database runs this pod: as far as the
		// caller is concerned, a pod already runs.
		return false, nil
	}
	return started, err
}

// startPod starts the pod of spec.Task; manual is true when a person (or the
// API on one's behalf) asked, which calls off BACKOFF and FAILED.
func (s *Supervisor) startPod(ctx context.Context, spec PodSpec, manual bool) (started bool, err error) {
	if spec.Task == nil || spec.Task.ID == "" {
		return false, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "A pod needs a task.")
	}
	t := *spec.Task
	p, err := s.lockPod(ctx, t.ID, true)
	if err != nil {
		return false, err
	}
	defer p.unlock()

	p.mu.Lock()
	p.task = t
	state, pending := p.state, p.pending
	p.mu.Unlock()
	switch {
	case p.run != nil:
		return false, nil
	case (state == ipa.PodBackoff || state == ipa.PodFailed) && !manual:
		return false, nil
	}
	switch {
	case manual && spec.Trigger == ipa.TriggerResume:
		// A resume carries on the pod this server's clean shutdown stopped
		// (perhaps while it backed off): no person asked, so the restart
		// window's accounting goes on from the stream instead of starting
		// afresh, and a crash loop cannot dodge its limit by a restart of
		// the server.
		s.cancelPending(p, pending)
		s.seedHistory(ctx, p)
	case manual:
		s.cancelPending(p, pending)
		p.mu.Lock()
		p.restarts.reset()
		p.seeded = true // what came before a person's start does not count
		p.mu.Unlock()
	}
	trigger := spec.Trigger
	if trigger == "" {
		trigger = ipa.TriggerManual
	}
	if err := s.launch(ctx, p, t, 1, trigger, spec.CausationID); err != nil {
		if notAStartFailure(ctx, err) || s.closing() {
			p.mu.Lock()
			if p.state == ipa.PodStarting {
				p.state = state
				if state == ipa.PodBackoff || state == ipa.PodFailed {
					p.state = ipa.PodStopped // the manual start called those off
				}
			}
			p.mu.Unlock()
			if errors.Is(err, ipa.ErrLeaseHeld) {
				s.forgetIdle(p) // another instance's pod: its view is the store's, not ours
			}
			return false, err
		}
		s.startFailed(ctx, p, t, 1, err, spec.CausationID)
		return false, err
	}
	return true, nil
}

// notAStartFailure reports whether a launch error says nothing about the
// runtime: the caller went away, or another instance owns the pod.
func notAStartFailure(ctx context.Context, err error) bool {
	return errors.Is(err, ipa.ErrLeaseHeld) || errors.Is(err, errClosed) ||
		(ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)))
}

// startFailure is a launch error with the cause recorded in pod_crashed: a
// sentence a person can read, which names no path (the error, for the logs,
// may).
type startFailure struct {
	err     error
	message string
	stderr  []string
}

func (e *startFailure) Error() string { return e.err.Error() }
func (e *startFailure) Unwrap() error { return e.err }

// failStart wraps err with the message recorded for it.
func failStart(err error, stderr []string, format string, args ...any) error {
	return &startFailure{err: err, message: fmt.Sprintf(format, args...), stderr: stderr}
}

// startFailed records a launch that failed (attempt of t) as a crash with
// reason start_failed and applies the restart policy. Operation lock held;
// the pod has no run.
func (s *Supervisor) startFailed(ctx context.Context, p *pod, t ipa.Task, attempt int, err error, causation string) {
	msg, stderr := "The runtime could not be started.", []string(nil)
	var sf *startFailure
	if errors.As(err, &sf) {
		msg, stderr = sf.message, sf.stderr
	}
	c := ipa.PodCrash{At: s.cfg.Now(), Reason: ipa.CrashStartFailed, Message: msg}
	s.noteCrash(trace.SpanContextFromContext(ctx), trace.SpanContext{}, p, c,
		ipa.PodCrashedData{Attempt: attempt, Runtime: t.Runtime, Reason: ipa.CrashStartFailed, Message: msg, Stderr: stderr}, causation, 0)
}

// launch starts a plugin for t and makes it the pod's run: handshake, lease, Start,
// pod_started, then the exit watcher and poller. Operation lock held.
// On error nothing of the attempt is left running.
func (s *Supervisor) launch(ctx context.Context, p *pod, t ipa.Task, attempt int, trigger, causation string) (err error) {
	ctx, span := startSpan(ctx, "pod.start", t.ID, t.Runtime, attribute.Int("ipa.pod.attempt", attempt), attribute.String("ipa.pod.trigger", trigger))
	defer func() { endSpan(span, err) }()
	if s.closing() {
		return errClosed
	}
	log := s.log.With(slog.String("task_id", t.ID), slog.String("runtime", t.Runtime), slog.Int("attempt", attempt))
	// The task's kept facts (a crash during an outage, its restart) go
	// before its pod_started; while they cannot, no plugin is launched.
	if err := s.flushTask(ctx, t.ID); err != nil {
		log.Warn("pod start waits", slog.String("decision", "store_unavailable"), slog.Any("error", err))
		return err
	}
	var w *warmProc
	if s.pool != nil {
		w = s.pool.take(t.Runtime)
	}
	// A cold start claims the pod the moment its process exists, naming
	// the process (launchRun); a warm process exists already but has no
	// task until Start: the lease saved with its pid is the claim.
	return s.launchRun(ctx, p, t, attempt, trigger, causation, span, log, w)
}

// launchRun is the rest of launch: a plugin process (w, an idle one of the
// warm pool, or else a new one once the pod is claimed), the lease naming
// it, Start, pod_started. A warm process found dead at Start is no failure
// of the task: the start goes on with a cold launch.
func (s *Supervisor) launchRun(ctx context.Context, p *pod, t ipa.Task, attempt int, trigger, causation string, span trace.Span, log *slog.Logger, w *warmProc) (err error) {
	baseLog := log
	var cmd *exec.Cmd
	if w == nil {
		cmd, err = s.pluginCommand(t.Runtime)
		if err != nil {
			s.dropLease(t.ID)
			log.Warn("pod start refused", slog.String("decision", "unknown_runtime"), slog.Any("error", err))
			// A refusal that says why (exec without its required sandbox)
			// is the crash's message; anything else is not for clients.
			var why *ipa.Error
			if errors.As(err, &why) && why.Code == ipa.EFAILEDPRECONDITION {
				return failStart(err, nil, "%s", why.Message)
			}
			return failStart(err, nil, "The runtime %q is not available on this server.", t.Runtime)
		}
	}
	p.setState(ipa.PodStarting)
	began := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()

	var (
		tail *stderrTail
		conn *pluginConn
		pr   *proc
	)
	if w != nil {
		// Its stderr is the task's from now on.
		conn, pr, tail = w.conn, w.proc, w.tail
		tail.setLog(log.With(slog.String("source", "plugin")))
	} else {
		tail = newStderrTail(log.With(slog.String("source", "plugin")))
		// The pod is claimed the moment its process exists, before the
		// handshake, and the claim names the process: a server that dies
		// from then on leaves a lease by which the next owner finds the
		// process and kills it, whether its start was recorded or not. (A
		// claim before the process, with no pid, would leave a plugin that
		// nobody can find beside the pod's next start.) An instance that
		// does not own the pod kills the process it just spawned: another
		// one runs the pod.
		var claimErr error
		claim := func(pr *proc) error {
			late := s.warnLate(t.ID, "pod start held up", "the pod's lease to be saved")
			claimErr = s.cfg.Leases.Save(ctx, Lease{TaskID: t.ID, Runtime: t.Runtime, Attempt: attempt,
				PID: pr.pid, StartTicks: pr.startTicks, BootID: bootID(), StartedAt: s.cfg.Now()})
			late()
			return claimErr
		}
		conn, pr, err = launchPlugin(startCtx, cmd, tail, log, s.cfg.StartTimeout, claim)
		if err != nil && claimErr != nil {
			if errors.Is(claimErr, ipa.ErrLeaseHeld) {
				log.Info("pod start skipped", slog.String("decision", "lease_held_elsewhere"))
				return claimErr
			}
			log.Error("pod start failed", slog.String("decision", "lease_failed"), slog.Any("error", claimErr))
			return failStart(fmt.Errorf("claim lease of task %s: %w", t.ID, claimErr), nil, "The server could not record which instance owns the pod.")
		}
		if err != nil {
			s.dropLease(t.ID)
			s.m.startFailures.WithLabelValues(t.Runtime).Inc()
			log.Error("pod start failed", slog.String("decision", "launch_failed"), slog.Any("error", err), slog.Any("stderr", tail.Tail()))
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return failStart(runtimeFailed(t, err), tail.Tail(), "The runtime %q did not become ready within %s.", t.Runtime, s.cfg.StartTimeout)
			}
			return failStart(runtimeFailed(t, err), tail.Tail(), "The runtime %q exited or failed its handshake before it was ready.", t.Runtime)
		}
	}
	log = log.With(slog.Int("pid", pr.pid), slog.Bool("warm", w != nil))
	r := &run{conn: conn, proc: pr, runtime: t.Runtime, attempt: attempt, trigger: trigger, startedAt: s.cfg.Now(), stderr: tail,
		startSpan: span.SpanContext()}
	span.SetAttributes(attribute.Int("ipa.pod.pid", pr.pid))
	abort := func(err error) error {
		conn.close(pr, closeWait)
		_ = terminate(pr, s.cfg.KillWait)
		conn.release(pr)
		_ = s.cfg.Leases.Delete(context.WithoutCancel(ctx), t.ID)
		return err
	}

	// The lease is saved before the work starts: a server that dies from
	// here on leaves a lease, so the next one finds this process (and
	// reattaches or kills it) instead of starting a second run beside it.
	network, addr, protocol, version := reattachInfo(conn)
	lease := Lease{
		TaskID: t.ID, Runtime: t.Runtime, Attempt: attempt, PID: pr.pid, StartTicks: pr.startTicks, BootID: bootID(),
		Network: network, Addr: addr, Protocol: protocol, ProtocolVersion: version, StartedAt: r.startedAt,
	}
	if err := s.cfg.Leases.Save(ctx, lease); err != nil {
		if w != nil && errors.Is(err, ipa.ErrLeaseHeld) {
			// The claim of a warm start: another instance owns the pod.
			// The process never had a task; the pool launches another.
			log.Info("pod start skipped", slog.String("decision", "lease_held_elsewhere"))
			conn.close(pr, closeWait)
			_ = terminate(pr, s.cfg.KillWait)
			conn.release(pr)
			return err
		}
		log.Error("pod start failed", slog.String("decision", "lease_failed"), slog.Any("error", err))
		return abort(failStart(fmt.Errorf("save lease of task %s: %w", t.ID, err), nil, "The server could not record which instance owns the pod."))
	}

	host := s.cfg.HostFactory(t.ID, t.Runtime)
	req := podapi.StartRequest{
		TaskID: t.ID, Title: t.Title, Description: t.Description,
		RuntimeConfig: []byte(t.RuntimeConfig), Attempt: attempt, Host: host,
	}
	if s.cfg.DataDir != "" {
		req.WorkDir = filepath.Join(s.cfg.DataDir, "tasks", t.ID)
	}
	if _, err := conn.rt.Start(startCtx, req); err != nil {
		if w != nil && warmGone(pr, err) {
			// The idle process died before it took the task (killed, or
			// its host connection broke): no run of the task began. The
			// lease is kept and rewritten by the cold launch.
			log.Warn("warm plugin gone at Start; launching cold", slog.Any("error", err))
			s.pool.m.deaths.WithLabelValues(t.Runtime).Inc()
			conn.close(pr, closeWait)
			_ = terminate(pr, s.cfg.KillWait)
			conn.release(pr)
			return s.launchRun(ctx, p, t, attempt, trigger, causation, span, baseLog, nil)
		}
		s.m.startFailures.WithLabelValues(t.Runtime).Inc()
		log.Error("pod start failed", slog.String("decision", "runtime_refused_start"), slog.Any("error", err), slog.Any("stderr", tail.Tail()))
		msg := fmt.Sprintf("The runtime %q refused to start.", t.Runtime)
		var de *ipa.Error
		if errors.As(err, &de) {
			// A runtime's own refusal is written for the client.
			msg = fmt.Sprintf("The runtime %q refused to start: %s", t.Runtime, de.Message)
			if de.Code == ipa.EINVALID {
				return abort(failStart(err, tail.Tail(), "%s", msg)) // a bad runtime config is the caller's to fix
			}
		}
		return abort(failStart(runtimeFailed(t, err), tail.Tail(), "%s", msg))
	}

	if !s.reserve(2) {
		return abort(errClosed)
	}
	evID, err := s.recordNow(ctx, t.ID, ipa.EventPodStarted, ipa.PodStartedData{PID: pr.pid, Attempt: attempt, Runtime: t.Runtime, Trigger: trigger}, causation)
	if err != nil {
		s.wg.Add(-2)
		log.Error("pod start undone", slog.String("decision", "record_failed"))
		return abort(failStart(err, nil, "The server could not record the pod's start."))
	}
	r.startedEventID = evID
	s.adoptRun(p, r)
	s.m.starts.WithLabelValues(t.Runtime, trigger).Inc()
	s.m.startSeconds.WithLabelValues(t.Runtime).Observe(time.Since(began).Seconds())
	log.Info("pod running", slog.String("decision", "started"), slog.String("trigger", trigger), slog.Duration("took", time.Since(began)))
	return nil
}

// pluginCommand is the command that launches a plugin of runtime, with the
// environment every plugin of this supervisor gets. Nothing in it is a
// task's, so a warm pool can launch it before any task asks.
func (s *Supervisor) pluginCommand(runtime string) (*exec.Cmd, error) {
	cmd, err := s.cfg.Launcher.Command(runtime)
	if err != nil {
		return nil, err
	}
	// The server's environment stays with the server: the plugin starts
	// from the minimal one, then the launcher's own variables.
	cmd.Env = append(s.basePluginEnv(), cmd.Env...)
	if s.cfg.OrphanGrace > 0 {
		cmd.Env = append(cmd.Env, podapi.EnvOrphanGrace+"="+s.cfg.OrphanGrace.String())
	}
	return cmd, nil
}

// recordNow appends a fact the supervisor must not act on unrecorded
// (pod_started: no pod runs unrecorded). The task's kept facts are written
// first; nothing is kept: the caller undoes what it did on error.
func (s *Supervisor) recordNow(ctx context.Context, taskID, typ string, data any, causation string) (string, error) {
	if err := s.flushTask(ctx, taskID); err != nil {
		return "", err
	}
	ev, err := s.cfg.Recorder.RecordPodEvent(ctx, taskID, ipa.NewEvent{Type: typ, Data: data, CausationID: s.out.resolveID(causation)})
	if err != nil {
		s.log.Error("record pod event", slog.String("task_id", taskID), slog.String("type", typ), slog.Any("error", err))
		return "", err
	}
	return ev.ID, nil
}

// runtimeFailed wraps a launch failure as the API's UNAVAILABLE/RUNTIME_FAILED
// (whose message names no path) with its cause for the logs.
func runtimeFailed(t ipa.Task, cause error) error {
	return fmt.Errorf("%w: %w", ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The runtime %q failed to start.", t.Runtime), cause)
}

// adoptRun makes r the pod's running process and starts its two goroutines,
// for which the caller has reserved two wait group slots. Operation lock held.
func (s *Supervisor) adoptRun(p *pod, r *run) {
	pollCtx, stop := context.WithCancel(s.ctx)
	r.stopPoll, r.pollDone = stop, make(chan struct{})
	p.mu.Lock()
	p.run, p.state, p.attempt = r, ipa.PodRunning, r.attempt
	p.live = podapi.StateResponse{}
	p.mu.Unlock()
	s.m.running.Inc()
	go s.watch(p, r)
	go s.poll(pollCtx, p, r)
}

// RestartPod stops the task's pod if one runs (recording pod_stopped with
// reason "restart"), then starts it as a manual start: FAILED and the restart
// counter are cleared. Errors are StartPod's.
func (s *Supervisor) RestartPod(ctx context.Context, t *ipa.Task) error {
	if t == nil || t.ID == "" {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "A pod needs a task.")
	}
	p, err := s.lockPod(ctx, t.ID, true)
	if err != nil {
		return err
	}
	err = s.stopLocked(context.WithoutCancel(ctx), p, ipa.StopRestart)
	p.unlock()
	if err != nil && !errors.Is(err, ipa.ErrPodNotRunning) {
		return err
	}
	// Between the unlock and StartPod another caller may start it: then it
	// runs, which is what was asked.
	_, err = s.startPod(ctx, PodSpec{Task: t, Trigger: ipa.TriggerManual}, true)
	return err
}
