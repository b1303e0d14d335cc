package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/tracing"
)

// watch waits for the run's process to end (or the supervisor to be
// dropped) and hands the exit to onExit.
func (s *Supervisor) watch(p *pod, r *run) {
	defer s.wg.Done()
	select {
	case <-r.proc.exited():
		s.onExit(p, r)
	case <-s.ctx.Done():
		// Shutdown stops (or detach abandons) every run itself.
	}
}

// poll caches the runtime's live state every StateInterval and checks its
// health every HealthInterval; after HealthFailures failed checks in a row it
// kills the plugin (SIGKILL to its group), which onExit then records as a
// crash with reason "unresponsive".
func (s *Supervisor) poll(ctx context.Context, p *pod, r *run) {
	defer s.wg.Done()
	defer close(r.pollDone)
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid))
	stateT := time.NewTicker(s.cfg.StateInterval)
	defer stateT.Stop()
	healthT := time.NewTicker(s.cfg.HealthInterval)
	defer healthT.Stop()
	failures := 0
	s.pollState(ctx, p, r)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.proc.exited():
			return
		case <-stateT.C:
			s.pollState(ctx, p, r)
		case <-healthT.C:
			hctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
			resp, err := r.conn.rt.Health(hctx, podapi.HealthRequest{})
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil && resp.Healthy {
				failures = 0
				continue
			}
			failures++
			log.Warn("pod health check failed", slog.Int("failures", failures), slog.Any("error", err), slog.String("message", resp.Message))
			if failures >= s.cfg.HealthFailures {
				r.unresponsive.Store(true)
				s.m.unresponsiveKil.WithLabelValues(r.runtime).Inc()
				log.Error("pod unresponsive", slog.String("decision", "kill"), slog.Int("failures", failures))
				_ = r.proc.kill(syscall.SIGKILL)
				return
			}
		}
	}
}

func (s *Supervisor) pollState(ctx context.Context, p *pod, r *run) {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
	st, err := r.conn.rt.State(sctx, podapi.StateRequest{})
	cancel()
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.run == r {
		p.live = st
	}
	window := policyWindow(s.policy(p.task))
	p.mu.Unlock()
	if r.trigger == "restart" && s.cfg.Now().Sub(r.startedAt) > window && r.outlived.CompareAndSwap(false, true) {
		s.m.restartSuccess.WithLabelValues(r.runtime).Inc()
	}
}

// endRun detaches r from the pod after its process ended: poller stopped,
// go-plugin released. The lease stays until what follows is recorded (the
// caller deletes it, or keeps it for a pending restart), so the pod has an
// owner throughout. Operation lock held.
func (s *Supervisor) endRun(p *pod, r *run) {
	r.stopPoll()
	<-r.pollDone // returns promptly: every poll call has HealthTimeout
	r.conn.release(r.proc)
	p.mu.Lock()
	if p.run == r {
		p.run = nil
		p.live = podapi.StateResponse{}
	}
	p.mu.Unlock()
	s.m.running.Dec()
}

// onExit handles a process that ended while it was the pod's run: a crash
// (recorded, then the restart policy) or, for status 0, a finished pod.
func (s *Supervisor) onExit(p *pod, r *run) {
	if err := p.lock(context.WithoutCancel(s.ctx)); err != nil {
		return
	}
	defer p.unlock()
	p.mu.Lock()
	current := p.run == r
	p.mu.Unlock()
	if !current || r.stopping.Load() {
		return // a stop is (or was) in charge of this exit
	}
	ex := r.proc.exitStatus()
	// The plugin's exit report (its last stderr line) says why its work
	// ended when the exit status cannot: read the pipe to its end first.
	r.proc.waitStderr(stderrDrainWait)
	report, reported := r.stderr.Report()
	now := s.cfg.Now()
	uptime := now.Sub(r.startedAt)
	s.endRun(p, r)
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid), slog.Int("attempt", r.attempt))
	ctx, cancel := s.ownCtx()
	defer cancel()

	if reported && report.Reason == ipa.LostHostSilent && !r.unresponsive.Load() {
		s.hostSilent(p, r, report, now, uptime)
		return
	}
	if ex.Known && ex.Signal == "" && ex.Code != nil && *ex.Code == 0 && !r.unresponsive.Load() && !reported {
		log.Info("pod exited", slog.String("decision", "finished"), slog.Duration("uptime", uptime))
		_, _ = s.record(ctx, p.taskID, ipa.EventPodStopped, ipa.PodStoppedData{
			Reason: ipa.StopExited, PID: r.proc.pid, ExitCode: ex.Code, UptimeMs: uptime.Milliseconds(),
		}, r.startedEventID)
		s.dropLease(p.taskID)
		// The state changes after the event is committed, so a reader never
		// sees a stopped pod on a task whose row still says ACTIVE.
		p.setState(ipa.PodStopped)
		if s.cfg.Finished != nil {
			s.cfg.Finished(ctx, p.taskID)
		}
		return
	}
	reason, message := crashReason(ex, r.unresponsive.Load(), report, reported)
	c := ipa.PodCrash{At: now, ExitCode: ex.Code, Signal: ex.Signal, Reason: reason, Message: message, UptimeMs: uptime.Milliseconds()}
	s.noteCrash(trace.SpanContext{}, r.startSpan, p, c, ipa.PodCrashedData{
		PID: r.proc.pid, Attempt: r.attempt, Runtime: r.runtime, ExitCode: ex.Code, Signal: ex.Signal,
		Reason: reason, Message: message, UptimeMs: uptime.Milliseconds(), Stderr: r.stderr.Tail(),
	}, r.startedEventID, uptime)
}

// hostSilent records a run whose plugin stopped its work because this
// server was silent for the orphan grace (it was paused, or starved) and
// came back still owning the pod: the work did not finish, it was lost. So
// the stream says pod_lost (reason host_silent), the pod is CRASHED, and the
// task's restart policy applies as for any lost pod. Operation lock held;
// the run has ended.
func (s *Supervisor) hostSilent(p *pod, r *run, report podapi.ExitReport, now time.Time, uptime time.Duration) {
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid), slog.Int("attempt", r.attempt))
	log.Warn("pod lost", slog.String("decision", "host_silent"), slog.String("message", report.Message), slog.Duration("uptime", uptime))
	s.m.lost.WithLabelValues(r.runtime).Inc()
	ctx, cancel := s.ownCtx()
	defer cancel()
	s.seedHistory(ctx, p)
	evID, _ := s.record(ctx, p.taskID, ipa.EventPodLost, ipa.PodLostData{Reason: ipa.LostHostSilent, PID: r.proc.pid, InstanceID: s.cfg.InstanceID}, r.startedEventID)
	// The state changes after the event is committed, as for a crash.
	p.mu.Lock()
	p.state = ipa.PodCrashed
	p.crashes = append(p.crashes, ipa.PodCrash{At: now, Reason: ipa.CrashLost, Message: report.Message, UptimeMs: uptime.Milliseconds()})
	p.trimCrashes(now, s.cfg.CrashHistory, s.cfg.CrashHistoryKeep)
	p.mu.Unlock()
	s.applyPolicy(context.Background(), p, now, uptime, evID)
}

// stderrDrainWait bounds the wait for a dead plugin's stderr to reach its
// end; only a descendant still holding the pipe can make it last.
const stderrDrainWait = time.Second

// crashReason classifies a crash (PodCrash.reason): the supervisor's own
// verdict (unresponsive) first, then the plugin's exit report, then what the
// exit status says.
func crashReason(ex exitInfo, unresponsive bool, report podapi.ExitReport, reported bool) (reason, message string) {
	switch {
	case unresponsive:
		return ipa.CrashUnresponsive, "failed its health checks and was killed"
	case reported:
		return report.Reason, report.Message
	case !ex.Known:
		return ipa.CrashLost, "the process ended while adopted after a server restart; its exit status is unknown"
	case ex.Signal != "":
		return ipa.CrashSignal, "killed by " + ex.Signal
	case ex.Code != nil:
		return ipa.CrashExited, fmt.Sprintf("exited with code %d", *ex.Code)
	}
	return ipa.CrashLost, ""
}

// noteCrash records a crash (pod_crashed) and applies the restart policy.
// Operation lock held; the pod has no run.
//
// Its pod.crash span is a child of parent (a failed start's request) or,
// when parent is not valid, the root of a trace of its own linked to
// started, the pod.start of the run that crashed.
func (s *Supervisor) noteCrash(parent, started trace.SpanContext, p *pod, c ipa.PodCrash, data ipa.PodCrashedData, causation string, uptime time.Duration) {
	var opts []trace.SpanStartOption
	if started.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: started}))
	}
	sctx, span := tracing.Tracer().Start(withSpanOf(context.Background(), parent), "pod.crash", append(opts, trace.WithAttributes(
		attribute.String("ipa.task.id", p.taskID), attribute.String("ipa.runtime", data.Runtime), attribute.Int("ipa.pod.attempt", data.Attempt),
		attribute.String("ipa.pod.crash.reason", data.Reason), attribute.String("ipa.pod.crash.signal", data.Signal)))...)
	defer span.End()
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", data.PID), slog.Int("attempt", data.Attempt))
	s.m.crashes.WithLabelValues(data.Runtime, data.Signal, data.Reason).Inc()
	log.Warn("pod crashed", slog.String("decision", "record_crash"), slog.String("reason", c.Reason),
		slog.Any("exit_code", c.ExitCode), slog.String("signal", c.Signal), slog.Duration("uptime", uptime))
	ctx, cancel := s.ownCtx()
	defer cancel()
	ctx = withSpanOf(ctx, span.SpanContext())
	s.seedHistory(ctx, p)
	evID, _ := s.record(ctx, p.taskID, ipa.EventPodCrashed, data, causation)
	// The state changes after the event is committed, so a reader never
	// sees a crashed pod on a task whose row still says ACTIVE.
	p.mu.Lock()
	p.state = ipa.PodCrashed
	p.crashes = append(p.crashes, c)
	p.trimCrashes(c.At, s.cfg.CrashHistory, s.cfg.CrashHistoryKeep)
	p.mu.Unlock()
	s.applyPolicy(sctx, p, c.At, uptime, evID)
}

// trimCrashes keeps at most max crashes, none older than keep. p.mu held.
func (p *pod) trimCrashes(now time.Time, max int, keep time.Duration) {
	i := 0
	for i < len(p.crashes) && (len(p.crashes)-i > max || now.Sub(p.crashes[i].At) > keep) {
		i++
	}
	p.crashes = slices.Delete(p.crashes, 0, i)
}
