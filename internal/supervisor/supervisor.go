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
// restart, one waiting for the back-off timer; one retrying the pod facts
// kept while the store was unreachable (outbox.go); per warm pool slot, one
// keeping an idle plugin (warmpool.go, awaited by Shutdown before the pods
// stop). Linux only.
//
// supervisor.go holds the type and the pod bookkeeping, launch.go starts
// pods, exit.go notices exits and crashes, restart.go applies the restart
// policy (whose arithmetic is policy.go's restartTracker: pure, time passed
// in), stop.go stops pods and the supervisor, reconcile.go settles what a
// previous server left behind, and warmpool.go keeps idle plugins that
// starts take (--warm-pods).
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// errClosed is returned by StartPod when the supervisor is not running.
var errClosed = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The pod supervisor is not running.")

// PodSpec is what StartPod needs to know about a task.
type PodSpec struct {
	Task        *ipa.Task // ID, Title, Description, Runtime, RuntimeConfig, RestartPolicy are used
	CausationID string    // the event that caused the start (task_created for autoStart), if any
	Trigger     string    // recorded in pod_started; see the ipa.Trigger constants
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

	out  *outbox   // pod facts waiting for the store
	pool *warmPool // idle plugin processes per runtime; nil without --warm-pods

	mu      sync.Mutex
	state   int // stateNew, stateRunning, stateClosed
	pods    map[string]*pod
	stopped chan struct{} // closed when Shutdown has finished
	// stopOnce runs Stop's Shutdown once; stopErr is what it returned.
	stopOnce sync.Once
	stopErr  error
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
	if cfg.InstanceID != "" {
		cfg.Recorder = fencedRecorder{cfg.Recorder, cfg.InstanceID}
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("supervisor metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{
		cfg: cfg, log: cfg.Logger.With(slog.String("component", "supervisor")), m: m,
		ctx: ctx, cancel: cancel, out: newOutbox(cfg.OutboxLimit), pods: map[string]*pod{}, stopped: make(chan struct{}),
	}
	if s.pool, err = newWarmPool(s, cfg.WarmPods); err != nil {
		return nil, fmt.Errorf("supervisor metrics: %w", err)
	}
	return s, nil
}

// Start makes the supervisor accept pods. It is idempotent; it returns an
// error only after Shutdown. Its one background loop writes the pod facts
// kept while the store was unreachable; the other goroutines are per pod.
func (s *Supervisor) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		s.state = stateRunning
		s.wg.Add(1)
		go s.retryOutbox()
		if s.pool != nil {
			s.pool.start()
		}
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
	restarts      restartTracker // crashes and automatic restarts the policy counts
	seeded        bool           // restarts holds the history of the task's stream (or a person reset it)
	crashes       []ipa.PodCrash // newest last, bounded
	pending       *pendingRestart
	nextAttemptAt *time.Time
	live          podapi.StateResponse
}

// pendingRestart is a restart the policy scheduled. cancel is closed (under
// the pod's operation lock) to call it off.
type pendingRestart struct {
	attempt    int
	cancel     chan struct{}
	causation  string
	storeWaits int // times this restart was put off because the store was unreachable
	// span is the pod.crash span that scheduled this restart: its pod.restart
	// is a child of it.
	span trace.SpanContext
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
	startSpan      trace.SpanContext // its pod.start, linked from a crash
	stopping       atomic.Bool       // a stop was asked for: its exit is not a crash
	unresponsive   atomic.Bool       // killed for failing health checks
	outlived       atomic.Bool       // counted in restart success already
	stopPoll       func()            // ends the poller
	pollDone       chan struct{}     // closed when the poller has returned
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

// ownCtx is the context for events the supervisor records on its own.
func (s *Supervisor) ownCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.RecordTimeout)
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
	st.Restarts = p.restarts.restartsInWindow(pol, now)
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

// List returns the pods that are not STOPPED, CRASHED and FAILED included,
// in no particular order.
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
// restart counters, a pending restart) once the task is closed. TaskService
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
	p.crashes = nil
	p.restarts.reset()
	if p.run != nil {
		return
	}
	p.forgotten = true
	s.mu.Lock()
	delete(s.pods, taskID)
	s.mu.Unlock()
}
