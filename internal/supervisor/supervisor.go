// Package supervisor runs pods: one out-of-process runtime plugin per task,
// spoken to through podapi over go-plugin. It starts and stops them, learns of
// a process exit the instant it happens (waitid on its own children, a pidfd
// on a plugin adopted after a server restart), records every lifecycle fact
// through a Recorder, applies each task's restart policy with capped
// exponential back-off, and on server start reattaches to the plugins that
// outlived the previous server (Reconcile).
//
// Every pod has an operation lock (a one-slot channel, so waits honour a
// context): starts, stops, crash handling, scheduled restarts and reconcile
// of one pod run one at a time, which is what makes StartPod idempotent under
// any concurrency. Status and List read a snapshot under a plain mutex and
// never wait on a plugin: a goroutine per running pod polls State and Health
// and caches the answer.
//
// Goroutines, all owned by the Supervisor and all awaited by Shutdown: per
// running pod, one waiting for its exit and one polling it; per pending
// restart, one waiting for the back-off timer. Linux only.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// errClosed is returned by StartPod when the supervisor is not running.
var errClosed = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The pod supervisor is not running.")

// PodSpec is what StartPod needs to know about a task.
type PodSpec struct {
	Task        *ipa.Task // ID, Title, Description, Runtime, RuntimeConfig, RestartPolicy are used
	CausationID string    // the event that caused the start (task_created for autoStart), if any
}

// Supervisor runs the pods of one server. Create it with New, Start it, and
// Shutdown it; all methods are safe for concurrent use.
type Supervisor struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	// ctx lives from Start to Shutdown; every goroutine the supervisor owns
	// watches it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	state   int // stateNew, stateRunning, stateClosed
	pods    map[string]*pod
	stopped chan struct{} // closed when Shutdown has finished
}

const (
	stateNew = iota
	stateRunning
	stateClosed
)

// New validates cfg (filling in defaults) and returns a Supervisor that is
// not yet started. Returns an error naming every invalid field, or the
// registration error of a metric.
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("supervisor metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{
		cfg: cfg, log: cfg.Logger.With(slog.String("component", "supervisor")), m: m,
		ctx: ctx, cancel: cancel, pods: map[string]*pod{}, stopped: make(chan struct{}),
	}, nil
}

// Start makes the supervisor accept pods. It is idempotent; it returns an
// error only after Shutdown. The supervisor needs no background loop of its
// own: the goroutines are per pod.
func (s *Supervisor) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		s.state = stateRunning
		s.log.Info("supervisor started")
		return nil
	case stateRunning:
		return nil
	}
	return errClosed
}

// Running reports whether the supervisor accepts pods (for /readyz).
func (s *Supervisor) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateRunning
}

// pod is one task's pod: its operation lock and the state Status reads.
type pod struct {
	taskID string
	sem    chan struct{} // operation lock

	mu            sync.Mutex // guards the fields below
	forgotten     bool       // removed from the map; re-fetch
	task          ipa.Task   // last spec seen (runtime, policy, config)
	state         ipa.PodState
	run           *run
	attempt       int            // attempt number of the last launch, 1-based
	crashTimes    []time.Time    // crashes inside the policy window (what the limit counts)
	restartTimes  []time.Time    // automatic restarts inside the window (Status.Restarts)
	crashes       []ipa.PodCrash // newest last, bounded
	pending       *pendingRestart
	nextAttemptAt *time.Time
	live          podapi.StateResponse
}

// pendingRestart is a restart the policy scheduled. cancel is closed (under
// the pod's operation lock) to call it off.
type pendingRestart struct {
	attempt   int
	cancel    chan struct{}
	causation string
}

// run is one plugin process of a pod, from launch (or adoption) to its end.
type run struct {
	conn           *pluginConn
	proc           *proc
	runtime        string
	attempt        int
	trigger        string
	startedAt      time.Time
	stderr         *stderrTail
	startedEventID string
	stopping       atomic.Bool   // a stop was asked for: its exit is not a crash
	unresponsive   atomic.Bool   // killed for failing health checks
	outlived       atomic.Bool   // counted in restart success already
	stopPoll       func()        // ends the poller
	pollDone       chan struct{} // closed when the poller has returned
}

func (p *pod) lock(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pod) unlock() { <-p.sem }

func (p *pod) setState(st ipa.PodState) {
	p.mu.Lock()
	p.state = st
	p.mu.Unlock()
}

// lockPod returns the pod of taskID with its operation lock held, creating
// the entry when create is set. It returns (nil, nil) for an unknown task
// when create is false, and errClosed once the supervisor is shut down.
func (s *Supervisor) lockPod(ctx context.Context, taskID string, create bool) (*pod, error) {
	for {
		s.mu.Lock()
		if s.state != stateRunning {
			s.mu.Unlock()
			return nil, errClosed
		}
		p := s.pods[taskID]
		if p == nil {
			if !create {
				s.mu.Unlock()
				return nil, nil
			}
			p = &pod{taskID: taskID, sem: make(chan struct{}, 1), state: ipa.PodStopped}
			s.pods[taskID] = p
		}
		s.mu.Unlock()
		if err := p.lock(ctx); err != nil {
			return nil, err
		}
		p.mu.Lock()
		gone := p.forgotten
		p.mu.Unlock()
		if !gone {
			if s.closing() {
				p.unlock()
				return nil, errClosed
			}
			return p, nil
		}
		p.unlock()
	}
}

// closing reports whether Shutdown has begun.
func (s *Supervisor) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != stateRunning
}

// reserve adds n goroutines to the wait group unless Shutdown has begun
// waiting for them (adding then would race its Wait). It reports whether the
// goroutines may be started.
func (s *Supervisor) reserve(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Add(n)
	return true
}

// policy returns the restart policy in force for t.
func (s *Supervisor) policy(t ipa.Task) ipa.RestartPolicy {
	if t.RestartPolicy.WindowSeconds == 0 {
		return s.cfg.DefaultPolicy
	}
	return t.RestartPolicy
}

// record appends ev to the task's stream and returns the event id ("" on
// failure, which is logged: a lost lifecycle event must not stop the
// supervisor from acting on what happened).
func (s *Supervisor) record(ctx context.Context, taskID string, typ string, data any, causation string) (string, error) {
	ev, err := s.cfg.Recorder.RecordPodEvent(ctx, taskID, ipa.NewEvent{Type: typ, Data: data, CausationID: causation})
	if err != nil {
		s.log.Error("record pod event", slog.String("task_id", taskID), slog.String("type", typ), slog.Any("error", err))
		return "", err
	}
	return ev.ID, nil
}

// ownCtx is the context for events the supervisor records on its own.
func (s *Supervisor) ownCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.RecordTimeout)
}

// StartPod starts the task's pod unless one runs already. Any number of
// concurrent calls for one task start exactly one process: the first one
// launches it and returns started=true, the others wait for it and return
// started=false. manual says a person asked: it clears FAILED, resets the
// restart counter and calls off a pending restart (starting now instead); a
// non-manual call leaves a pending restart or FAILED alone (started=false).
// pod_started is recorded with ctx (actor, correlation id).
//
// Returns an UNAVAILABLE/RUNTIME_FAILED *ipa.Error (wrapped with the cause)
// when the plugin cannot be launched or refuses Start, an EINVALID one for an
// unknown runtime, ctx's error when ctx ends while waiting for another
// operation on the pod, and the Recorder's error when pod_started cannot be
// recorded (the process is then killed: no pod runs unrecorded).
func (s *Supervisor) StartPod(ctx context.Context, t *ipa.Task, causationID string) (started bool, err error) {
	started, err = s.startPod(ctx, PodSpec{Task: t, CausationID: causationID}, true)
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
	if manual {
		s.cancelPending(p, pending)
		p.mu.Lock()
		p.crashTimes, p.restartTimes = nil, nil
		p.mu.Unlock()
	}
	trigger := "auto"
	if manual {
		trigger = "manual"
	}
	if err := s.launch(ctx, p, t, 1, trigger, spec.CausationID); err != nil {
		p.mu.Lock()
		if p.state == ipa.PodStarting {
			p.state = state
			if state == ipa.PodBackoff || state == ipa.PodFailed {
				p.state = ipa.PodStopped // the manual start called those off
			}
		}
		p.mu.Unlock()
		return false, err
	}
	return true, nil
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

// launch starts a plugin for t and makes it the pod's run: handshake, Start,
// lease, pod_started, then the exit watcher and poller. Operation lock held.
// On error nothing of the attempt is left running.
func (s *Supervisor) launch(ctx context.Context, p *pod, t ipa.Task, attempt int, trigger, causation string) error {
	if s.closing() {
		return errClosed
	}
	log := s.log.With(slog.String("task_id", t.ID), slog.String("runtime", t.Runtime), slog.Int("attempt", attempt))
	cmd, err := s.cfg.Launcher.Command(t.Runtime)
	if err != nil {
		log.Warn("pod start refused", slog.String("decision", "unknown_runtime"), slog.Any("error", err))
		return err
	}
	p.setState(ipa.PodStarting)
	began := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()

	tail := newStderrTail(log.With(slog.String("source", "plugin")))
	conn, pr, err := launchPlugin(startCtx, cmd, tail, log, s.cfg.StartTimeout)
	if err != nil {
		s.m.startFailures.WithLabelValues(t.Runtime).Inc()
		log.Error("pod start failed", slog.String("decision", "launch_failed"), slog.Any("error", err), slog.Any("stderr", tail.Tail()))
		return runtimeFailed(t, err)
	}
	log = log.With(slog.Int("pid", pr.pid))
	r := &run{conn: conn, proc: pr, runtime: t.Runtime, attempt: attempt, trigger: trigger, startedAt: s.cfg.Now(), stderr: tail}
	abort := func(err error) error {
		conn.close()
		_ = terminate(pr, s.cfg.KillWait)
		conn.release()
		_ = s.cfg.Leases.Delete(context.WithoutCancel(ctx), t.ID)
		return err
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
		s.m.startFailures.WithLabelValues(t.Runtime).Inc()
		log.Error("pod start failed", slog.String("decision", "runtime_refused_start"), slog.Any("error", err), slog.Any("stderr", tail.Tail()))
		var de *ipa.Error
		if errors.As(err, &de) && de.Code == ipa.EINVALID {
			return abort(err) // a bad runtime config is the caller's to fix
		}
		return abort(runtimeFailed(t, err))
	}

	network, addr, protocol, version := reattachInfo(conn)
	lease := Lease{
		TaskID: t.ID, Runtime: t.Runtime, Attempt: attempt, PID: pr.pid, StartTicks: pr.startTicks, BootID: bootID(),
		Network: network, Addr: addr, Protocol: protocol, ProtocolVersion: version, StartedAt: r.startedAt,
	}
	if err := s.cfg.Leases.Save(ctx, lease); err != nil {
		log.Error("pod start failed", slog.String("decision", "lease_failed"), slog.Any("error", err))
		return abort(fmt.Errorf("save lease of task %s: %w", t.ID, err))
	}
	if !s.reserve(2) {
		return abort(errClosed)
	}
	evID, err := s.record(ctx, t.ID, ipa.EventPodStarted, ipa.PodStartedData{PID: pr.pid, Attempt: attempt, Runtime: t.Runtime, Trigger: trigger}, causation)
	if err != nil {
		s.wg.Add(-2)
		log.Error("pod start undone", slog.String("decision", "record_failed"))
		return abort(err)
	}
	r.startedEventID = evID
	s.adoptRun(p, r)
	s.m.starts.WithLabelValues(t.Runtime, trigger).Inc()
	s.m.startSeconds.WithLabelValues(t.Runtime).Observe(time.Since(began).Seconds())
	log.Info("pod running", slog.String("decision", "started"), slog.String("trigger", trigger), slog.Duration("took", time.Since(began)))
	return nil
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
	window := time.Duration(s.policy(p.task).WindowSeconds) * time.Second
	p.mu.Unlock()
	if r.trigger == "restart" && s.cfg.Now().Sub(r.startedAt) > window && r.outlived.CompareAndSwap(false, true) {
		s.m.restartSuccess.WithLabelValues(r.runtime).Inc()
	}
}

// endRun detaches r from the pod after its process ended: poller stopped,
// go-plugin released, lease deleted. Operation lock held.
func (s *Supervisor) endRun(p *pod, r *run) {
	r.stopPoll()
	<-r.pollDone // returns promptly: every poll call has HealthTimeout
	r.conn.release()
	p.mu.Lock()
	if p.run == r {
		p.run = nil
		p.live = podapi.StateResponse{}
	}
	p.mu.Unlock()
	s.m.running.Dec()
	ctx, cancel := s.ownCtx()
	defer cancel()
	if err := s.cfg.Leases.Delete(ctx, p.taskID); err != nil {
		s.log.Error("delete lease", slog.String("task_id", p.taskID), slog.Any("error", err))
	}
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
	now := s.cfg.Now()
	uptime := now.Sub(r.startedAt)
	s.endRun(p, r)
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid), slog.Int("attempt", r.attempt))
	ctx, cancel := s.ownCtx()
	defer cancel()

	if ex.Known && ex.Signal == "" && ex.Code != nil && *ex.Code == 0 && !r.unresponsive.Load() {
		log.Info("pod exited", slog.String("decision", "finished"), slog.Duration("uptime", uptime))
		_, _ = s.record(ctx, p.taskID, ipa.EventPodStopped, ipa.PodStoppedData{
			Reason: ipa.StopExited, PID: r.proc.pid, ExitCode: ex.Code, UptimeMs: uptime.Milliseconds(),
		}, r.startedEventID)
		// The state changes after the event is committed, so a reader never
		// sees a stopped pod on a task whose row still says ACTIVE.
		p.setState(ipa.PodStopped)
		return
	}
	reason := ipa.CrashExited
	switch {
	case r.unresponsive.Load():
		reason = ipa.CrashUnresponsive
	case ex.Signal != "":
		reason = ipa.CrashSignal
	case ex.Code != nil:
		reason = ipa.CrashExitCode
	}
	c := ipa.PodCrash{At: now, ExitCode: ex.Code, Signal: ex.Signal, Reason: reason, UptimeMs: uptime.Milliseconds()}
	s.noteCrash(p, c, ipa.PodCrashedData{
		PID: r.proc.pid, Attempt: r.attempt, Runtime: r.runtime, ExitCode: ex.Code, Signal: ex.Signal,
		Reason: reason, UptimeMs: uptime.Milliseconds(), Stderr: r.stderr.Tail(),
	}, r.startedEventID, uptime)
}

// noteCrash records a crash (pod_crashed) and applies the restart policy.
// Operation lock held; the pod has no run.
func (s *Supervisor) noteCrash(p *pod, c ipa.PodCrash, data ipa.PodCrashedData, causation string, uptime time.Duration) {
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", data.PID), slog.Int("attempt", data.Attempt))
	s.m.crashes.WithLabelValues(data.Runtime, data.Signal, data.Reason).Inc()
	log.Warn("pod crashed", slog.String("decision", "record_crash"), slog.String("reason", c.Reason),
		slog.Any("exit_code", c.ExitCode), slog.String("signal", c.Signal), slog.Duration("uptime", uptime))
	ctx, cancel := s.ownCtx()
	defer cancel()
	evID, _ := s.record(ctx, p.taskID, ipa.EventPodCrashed, data, causation)
	// The state changes after the event is committed, so a reader never
	// sees a crashed pod on a task whose row still says ACTIVE.
	p.mu.Lock()
	p.state = ipa.PodCrashed
	p.crashes = append(p.crashes, c)
	p.trimCrashes(c.At, s.cfg.CrashHistory, s.cfg.CrashHistoryKeep)
	p.mu.Unlock()
	s.applyPolicy(p, c.At, uptime, evID)
}

// trimCrashes keeps at most max crashes, none older than keep. p.mu held.
func (p *pod) trimCrashes(now time.Time, max int, keep time.Duration) {
	i := 0
	for i < len(p.crashes) && (len(p.crashes)-i > max || now.Sub(p.crashes[i].At) > keep) {
		i++
	}
	p.crashes = slices.Delete(p.crashes, 0, i)
}

// trimBefore drops the times before cutoff from a sorted slice.
func trimBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return slices.Delete(ts, 0, i)
}

// backoffDelay is InitialBackoffMs doubled for each earlier crash in the
// window (n is the crash count including this one), capped at MaxBackoffMs.
func backoffDelay(pol ipa.RestartPolicy, n int) time.Duration {
	d := time.Duration(pol.InitialBackoffMs) * time.Millisecond
	max := time.Duration(pol.MaxBackoffMs) * time.Millisecond
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// applyPolicy decides what follows a crash (or a lost pod) at time at after
// a run of uptime: nothing (no auto restart), FAILED (the window's limit is
// spent) or BACKOFF with a restart scheduled. Operation lock held.
func (s *Supervisor) applyPolicy(p *pod, at time.Time, uptime time.Duration, causation string) {
	p.mu.Lock()
	pol := s.policy(p.task)
	log := s.log.With(slog.String("task_id", p.taskID))
	if !pol.AutoRestart {
		p.mu.Unlock()
		log.Info("pod not restarted", slog.String("decision", "policy_off"))
		return
	}
	window := time.Duration(pol.WindowSeconds) * time.Second
	if uptime > window {
		// It ran well for a whole window: earlier crashes no longer count.
		p.crashTimes, p.restartTimes = nil, nil
	}
	p.crashTimes = append(trimBefore(p.crashTimes, at.Add(-window)), at)
	n := len(p.crashTimes)
	ctx, cancel := s.ownCtx()
	defer cancel()
	if n > pol.MaxAttempts {
		p.state, p.nextAttemptAt = ipa.PodFailed, nil
		p.mu.Unlock()
		s.m.restartLimit.WithLabelValues(p.task.Runtime).Inc()
		log.Error("pod failed", slog.String("decision", "restart_limit_reached"), slog.Int("crashes_in_window", n), slog.Int("max_attempts", pol.MaxAttempts))
		_, _ = s.record(ctx, p.taskID, ipa.EventPodRestartLimitReached, ipa.PodRestartLimitReachedData{MaxAttempts: pol.MaxAttempts, WindowSeconds: pol.WindowSeconds}, causation)
		return
	}
	delay := backoffDelay(pol, n)
	next := at.Add(delay)
	pr := &pendingRestart{attempt: n + 1, cancel: make(chan struct{})}
	p.state, p.nextAttemptAt, p.pending = ipa.PodBackoff, &next, pr
	p.mu.Unlock()
	if !s.reserve(1) {
		return // shutting down: nothing restarts any more
	}
	timer := s.cfg.After(delay)
	log.Info("pod restart scheduled", slog.String("decision", "backoff"), slog.Int("attempt", pr.attempt), slog.Duration("delay", delay))
	// The goroutine reads pr.causation only after taking the operation lock,
	// which this caller holds: set it before.
	pr.causation, _ = s.record(ctx, p.taskID, ipa.EventPodRestartScheduled, ipa.PodRestartScheduledData{Attempt: n, DelayMs: delay.Milliseconds(), At: next}, causation)
	go s.restartAfter(p, pr, timer)
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
	if err := p.lock(s.ctx); err != nil {
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
	pol := s.policy(t)
	now := s.cfg.Now()
	p.restartTimes = append(trimBefore(p.restartTimes, now.Add(-time.Duration(pol.WindowSeconds)*time.Second)), now)
	p.mu.Unlock()
	s.m.restarts.WithLabelValues(t.Runtime).Inc()
	if err := s.launch(s.ctx, p, t, pr.attempt, "restart", pr.causation); err != nil {
		if s.closing() {
			p.setState(ipa.PodStopped)
			return
		}
		c := ipa.PodCrash{At: s.cfg.Now(), Reason: ipa.CrashStartFailed}
		s.noteCrash(p, c, ipa.PodCrashedData{Attempt: pr.attempt, Runtime: t.Runtime, Reason: ipa.CrashStartFailed}, pr.causation, 0)
	}
}

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

func (s *Supervisor) stopLocked(ctx context.Context, p *pod, reason string) error {
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
		_, err := s.record(ctx, p.taskID, ipa.EventPodStopped, ipa.PodStoppedData{Reason: reason, CancelledRestart: true}, pending.causation)
		return err
	}
	data := s.stopRun(p, r, reason)
	p.setState(ipa.PodStopped)
	_, err := s.record(ctx, p.taskID, ipa.EventPodStopped, data, r.startedEventID)
	return err
}

// stopRun ends r gracefully if it can, forcibly if it must, and detaches it.
// Operation lock held.
func (s *Supervisor) stopRun(p *pod, r *run, reason string) ipa.PodStoppedData {
	r.stopping.Store(true)
	p.setState(ipa.PodStopping)
	log := s.log.With(slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid))
	r.stopPoll()
	deadline := time.Now().Add(s.cfg.StopTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	forced := false
	if r.proc.alive() {
		if _, err := r.conn.rt.Stop(ctx, podapi.StopRequest{Deadline: deadline, Reason: reason}); err != nil {
			log.Warn("runtime stop failed", slog.Any("error", err))
		}
		r.conn.close() // go-plugin's controller Shutdown: the plugin process exits
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
	_, err = s.startPod(ctx, PodSpec{Task: t}, true)
	return err
}

// Status returns the task's pod as the supervisor knows it, from memory: it
// never calls the plugin. An unknown task's pod is STOPPED.
func (s *Supervisor) Status(taskID string) ipa.PodStatus {
	s.mu.Lock()
	p := s.pods[taskID]
	s.mu.Unlock()
	if p == nil {
		return ipa.PodStatus{TaskID: taskID, State: ipa.PodStopped}
	}
	return s.status(p)
}

func (s *Supervisor) status(p *pod) ipa.PodStatus {
	now := s.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	pol := s.policy(p.task)
	st := ipa.PodStatus{TaskID: p.taskID, Known: true, State: p.state, Runtime: p.task.Runtime, Attempt: p.attempt}
	if p.nextAttemptAt != nil {
		t := *p.nextAttemptAt
		st.NextAttemptAt = &t
	}
	for _, t := range p.restartTimes {
		if !t.Before(now.Add(-time.Duration(pol.WindowSeconds) * time.Second)) {
			st.Restarts++
		}
	}
	for i := len(p.crashes) - 1; i >= 0; i-- {
		st.Crashes = append(st.Crashes, p.crashes[i])
	}
	if r := p.run; r != nil {
		st.PID = r.proc.pid
		t := r.startedAt
		st.StartedAt = &t
		st.Runtime = r.runtime
		if len(p.live.Live) > 0 {
			st.Live = json.RawMessage(slices.Clone(p.live.Live))
		}
		st.Phase, st.Progress, st.Message = p.live.Phase, p.live.Progress, p.live.Message
	}
	return st
}

// List returns the pods that are not STOPPED (the API's activePods), in no
// particular order.
func (s *Supervisor) List() []ipa.PodStatus {
	s.mu.Lock()
	pods := make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	s.mu.Unlock()
	var out []ipa.PodStatus
	for _, p := range pods {
		if st := s.status(p); st.State != ipa.PodStopped {
			out = append(out, st)
		}
	}
	return out
}

// Forget drops what the supervisor remembers of a task (crash history,
// restart counters, a pending restart) once the task is closed. The manager
// stops the pod first; if one still runs, Forget keeps it supervised and only
// clears the history. It waits for another operation on the pod for at most
// StartTimeout+StopTimeout, and gives up (logged) after that.
func (s *Supervisor) Forget(taskID string) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartTimeout+s.cfg.StopTimeout)
	defer cancel()
	p, err := s.lockPod(ctx, taskID, false)
	if err != nil || p == nil {
		if err != nil && !errors.Is(err, errClosed) {
			s.log.Warn("forget pod", slog.String("task_id", taskID), slog.Any("error", err))
		}
		return
	}
	defer p.unlock()
	p.mu.Lock()
	pending := p.pending
	p.mu.Unlock()
	s.cancelPending(p, pending)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashes, p.crashTimes, p.restartTimes = nil, nil, nil
	if p.run != nil {
		return
	}
	p.forgotten = true
	s.mu.Lock()
	delete(s.pods, taskID)
	s.mu.Unlock()
}

// Shutdown stops every pod (runtime Stop, then SIGKILL after StopTimeout, all
// pods at once), records their pod_stopped (reason "server_shutdown"), calls
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
