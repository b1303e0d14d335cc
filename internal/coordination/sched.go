package coordination

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// Scheduling: concurrency limits and the queue of pods waiting for a slot.
// The decisions live in the store (store.Admit, store.Dispatch), serial
// across every instance; the Scheduler is this instance's part: it asks the
// store before a start, records pod_queued, and starts the pods the store
// granted a slot to this instance. A slot frees when a pod's lease goes
// (its pod stopped, completed, failed for good, or crashed with no restart
// to follow): the instance that let it go dispatches at once, and the
// instances the grants are for hear of it on the pod command channel. A
// pod backing off before a restart by policy keeps its lease, so it keeps
// its slot: restarts never queue.

// SchedStore is the part of the store the Scheduler uses.
type SchedStore interface {
	Admit(ctx context.Context, t *ipa.Task, instance, trigger string, now time.Time) (ipa.Admission, []string, int, error)
	Dispatch(ctx context.Context, me string, cutoff, now time.Time) ([]store.Grant, error)
	Grants(ctx context.Context, instance string) ([]store.Grant, error)
	ReleaseGrant(ctx context.Context, taskID string) (bool, error)
	Dequeue(ctx context.Context, taskID string) (bool, error)
	Now(ctx context.Context) (time.Time, error)
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
	GetTasks(ctx context.Context, ids []string) (map[string]*ipa.Task, error)
	WaitingTasks(ctx context.Context, limit int) ([]*ipa.Task, error)
}

// PodRecorder appends a pod fact to a task's stream.
type PodRecorder interface {
	RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error)
}

// SchedConfig configures a Scheduler.
type SchedConfig struct {
	Store    SchedStore
	Recorder PodRecorder
	ID       string        // this instance
	TTL      time.Duration // an instance silent this long is dead: its queued pods start elsewhere
	// Poll is how often the queue is looked at without being woken (a lost
	// notice, a grant to an instance that died); default one second.
	Poll time.Duration
	// Starts bounds the granted pods this instance starts at once; default 8.
	Starts int
	Logger *slog.Logger
	// OnStart, if set, hears how long a pod waited in the queue once its
	// granted start succeeded (for metrics).
	OnStart func(taskID string, waited time.Duration)
}

// Scheduler is this instance's part of scheduling. Create it with
// NewScheduler, give it the local supervisor with Attach, Start it, Stop it.
type Scheduler struct {
	cfg   SchedConfig
	log   *slog.Logger
	local LocalPods
	pods  *ScheduledPods // what Wrap returned: waiting pods start through it
	kick  chan struct{}

	life lifecycle.Base
	sem  chan struct{}

	mu       sync.Mutex
	inflight map[string]bool
}

// NewScheduler returns a Scheduler that is not started.
func NewScheduler(cfg SchedConfig) *Scheduler {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Starts <= 0 {
		cfg.Starts = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Scheduler{
		cfg: cfg, log: cfg.Logger.With(slog.String("component", "scheduler")),
		kick: make(chan struct{}, 1), sem: make(chan struct{}, cfg.Starts), inflight: map[string]bool{},
	}
}

// Attach names the supervisor that starts this instance's granted pods
// (the supervisor is built after the lease store that kicks the Scheduler).
func (s *Scheduler) Attach(local LocalPods) { s.local = local }

// Kick makes the Scheduler look at the queue now: a slot may have freed.
// It never blocks.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Heard is told the instance a notice on the pod command channel is for;
// one for this instance may be a grant.
func (s *Scheduler) Heard(instanceID string) {
	if instanceID == s.cfg.ID {
		s.Kick()
	}
}

// Start starts the loop that dispatches the queue and starts this
// instance's granted pods. They run until Stop, whatever ctx does.
func (s *Scheduler) Start(ctx context.Context) error {
	ctx, ok := s.life.StartInit(context.WithoutCancel(ctx))
	if ok {
		s.life.Go(func() { s.loop(ctx) })
	}
	return nil
}

// Stop ends the loop and waits for the starts it began. Safe before Start
// and twice.
func (s *Scheduler) Stop() { s.life.Stop() }

func (s *Scheduler) loop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		s.dispatch(ctx)
	}
}

// dispatch gives free slots to queued pods (the store decides), then starts
// the ones granted to this instance.
func (s *Scheduler) dispatch(ctx context.Context) {
	s.startReady(ctx)
	now, err := s.cfg.Store.Now(ctx)
	if err != nil {
		s.log.Warn("scheduler: read the database clock", slog.Any("error", err))
		return
	}
	if _, err := s.cfg.Store.Dispatch(ctx, s.cfg.ID, now.Add(-s.cfg.TTL), now); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: dispatch", slog.Any("error", err))
		}
		return
	}
	grants, err := s.cfg.Store.Grants(ctx, s.cfg.ID)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: read grants", slog.Any("error", err))
		}
		return
	}
	for _, g := range grants {
		s.mu.Lock()
		busy := s.inflight[g.TaskID]
		s.inflight[g.TaskID] = true
		s.mu.Unlock()
		if busy {
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		release := func() {
			s.mu.Lock()
			delete(s.inflight, g.TaskID)
			s.mu.Unlock()
			<-s.sem
		}
		if !s.life.Go(func() {
			defer release()
			s.startGranted(ctx, g)
		}) {
			release() // stopping: the grant stays for the next look
			return
		}
	}
}

// waitingScan bounds the WAITING pods one look checks.
const waitingScan = 200

// startReady starts (or queues, under a limit) the WAITING pods whose
// dependencies are all COMPLETED now. Any instance may: the store admits
// one start, and a pod lease makes sure one pod runs.
func (s *Scheduler) startReady(ctx context.Context) {
	if s.pods == nil {
		return
	}
	waiting, err := s.cfg.Store.WaitingTasks(ctx, waitingScan)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: read waiting pods", slog.Any("error", err))
		}
		return
	}
	for _, t := range waiting {
		pending, err := s.pendingDeps(ctx, t)
		if err != nil || len(pending) > 0 {
			continue
		}
		if _, err := s.pods.admit(ctx, t, ipa.TriggerManual, ""); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler: start of a pod whose dependencies completed", slog.String("task_id", t.ID), slog.Any("error", err))
		}
	}
}

// pendingDeps returns the tasks t depends on that are not COMPLETED (a
// deleted one no longer holds anything back).
func (s *Scheduler) pendingDeps(ctx context.Context, t *ipa.Task) ([]string, error) {
	if len(t.DependsOn) == 0 {
		return nil, nil
	}
	deps, err := s.cfg.Store.GetTasks(ctx, t.DependsOn)
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, id := range t.DependsOn {
		if d, ok := deps[id]; ok && d.Status != ipa.StatusCompleted {
			pending = append(pending, id)
		}
	}
	return pending, nil
}

// startGranted starts a pod the store gave a slot to; the lease its start
// saves takes the slot over. A start that cannot happen gives the slot back
// for the next queued pod.
func (s *Scheduler) startGranted(ctx context.Context, g store.Grant) {
	log := s.log.With(slog.String("task_id", g.TaskID))
	t, err := s.cfg.Store.GetTask(ctx, g.TaskID)
	if err != nil && ipa.ErrorCode(err) != ipa.ENOTFOUND {
		log.Warn("scheduler: read task", slog.Any("error", err))
		return // the grant stays: tried again on the next look
	}
	started := false
	if err == nil && !t.Status.Closed() && s.local != nil {
		started, err = s.local.StartPod(ctx, t, g.Trigger, "")
		if err != nil && ctx.Err() == nil {
			log.Warn("scheduler: start of a queued pod failed", slog.Any("error", err))
		}
	}
	if started {
		if s.cfg.OnStart != nil {
			var waited time.Duration
			if now, err := s.cfg.Store.Now(ctx); err == nil && g.QueuedAt > 0 {
				waited = now.Sub(time.Unix(0, g.QueuedAt))
			}
			s.cfg.OnStart(g.TaskID, waited)
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	if released, err := s.cfg.Store.ReleaseGrant(ctx, g.TaskID); err == nil && released {
		s.Kick()
	}
}

// ScheduledPods is the supervisor (across instances: the Router) with scheduling in
// front of its starts: a start beyond a concurrency limit queues the pod.
type ScheduledPods struct {
	LocalPods
	s *Scheduler
}

// Wrap puts scheduling in front of pods' starts and stops. Over a Router,
// the restarts and handoff starts other instances send here go through it
// too.
func (s *Scheduler) Wrap(pods LocalPods) *ScheduledPods {
	s.pods = &ScheduledPods{LocalPods: pods, s: s}
	if r, ok := pods.(*Router); ok {
		r.c.sched.Store(s.pods)
	}
	return s.pods
}

// here is this instance's own supervisor, under the Router if there is one.
func (p *ScheduledPods) here() LocalPods {
	if r, ok := p.LocalPods.(*Router); ok {
		return r.LocalPods
	}
	return p.LocalPods
}

// RestartPod restarts the task's pod on the instance that owns it (here
// when none does): it stops the pod (pod_stopped, reason restart) and
// starts it again as a person's start (FAILED and the restart counter
// cleared), through the concurrency limits like any start: the stop gives
// its slot back, and when a limit covering it is full then (lowered, or
// the slot went to a pod queued before) the pod queues. A queued pod stays
// queued, a waiting one waits: their restart is their start.
func (p *ScheduledPods) RestartPod(ctx context.Context, t *ipa.Task) error {
	if t == nil || t.ID == "" {
		return p.LocalPods.RestartPod(ctx, t)
	}
	if r, ok := p.LocalPods.(*Router); ok {
		return r.route(ctx, t.ID, CmdRestart, "restart", func() error { return p.restartHere(ctx, t) })
	}
	return p.restartHere(ctx, t)
}

// restartHere is RestartPod on the instance that owns the pod (or no one).
func (p *ScheduledPods) restartHere(ctx context.Context, t *ipa.Task) error {
	if t.PodState != ipa.PodQueued && t.PodState != ipa.PodWaiting {
		err := p.here().StopPod(context.WithoutCancel(ctx), t.ID, ipa.StopRestart)
		if err != nil && !errors.Is(err, ipa.ErrPodNotRunning) {
			return err
		}
	}
	_, err := p.StartPod(ctx, t, ipa.TriggerManual, "")
	return err
}

// Resume starts again, through the concurrency limits, the pods this
// instance stopped on its last clean shutdown (trigger resume): a resume
// takes a slot only where a limit has room, and queues otherwise, so a
// limit lowered (or filled by other instances) while this one was down
// holds. It returns how many pods started at once, after every start
// ended.
func (p *ScheduledPods) Resume(ctx context.Context, tasks []*ipa.Task) int {
	return supervisor.ResumeEach(ctx, tasks, p.StartPod, p.s.log)
}

// StartPod starts the task's pod if no concurrency limit covering it is
// full; else it queues the pod (pod_queued) and reports started false. A
// queued pod starts when a slot frees, on the instance that received the
// start (any live one when that one died).
func (p *ScheduledPods) StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (bool, error) {
	s := p.s
	pending, err := s.pendingDeps(ctx, t)
	if err != nil {
		return false, err
	}
	if len(pending) > 0 {
		if t.PodState == ipa.PodWaiting {
			return false, nil
		}
		_, err := s.cfg.Recorder.RecordPodEvent(ctx, t.ID, ipa.NewEvent{Type: ipa.EventPodWaiting, CausationID: causationID,
			Data: ipa.PodWaitingData{Trigger: triggerOr(trigger), InstanceID: s.cfg.ID, WaitingFor: pending}})
		if err == nil {
			s.Kick() // the last dependency may have completed meanwhile
		}
		return false, err
	}
	return p.admit(ctx, t, trigger, causationID)
}

// admit starts the pod now or queues it, as the store decides.
func (p *ScheduledPods) admit(ctx context.Context, t *ipa.Task, trigger, causationID string) (bool, error) {
	s := p.s
	now, err := s.cfg.Store.Now(ctx)
	if err != nil {
		return false, err
	}
	// Until its pod_queued is recorded, this instance's loop does not
	// start the pod even if a slot is granted to it at once: the stream
	// says QUEUED before it says anything of a start.
	s.mu.Lock()
	busy := s.inflight[t.ID]
	s.inflight[t.ID] = true
	s.mu.Unlock()
	if !busy {
		defer func() {
			s.mu.Lock()
			delete(s.inflight, t.ID)
			s.mu.Unlock()
			s.Kick()
		}()
	}
	adm, blocking, pos, err := s.cfg.Store.Admit(ctx, t, s.cfg.ID, triggerOr(trigger), now)
	if err != nil {
		return false, err
	}
	switch adm {
	case ipa.AlreadyQueued:
		return false, nil
	case ipa.Queued:
		_, err := s.cfg.Recorder.RecordPodEvent(ctx, t.ID, ipa.NewEvent{Type: ipa.EventPodQueued, CausationID: causationID,
			Data: ipa.PodQueuedData{Trigger: triggerOr(trigger), InstanceID: s.cfg.ID, Limits: blocking, Position: pos}})
		if err != nil {
			// Unrecorded, the pod must not wait unseen: out of the queue.
			_, _ = s.cfg.Store.Dequeue(context.WithoutCancel(ctx), t.ID)
			return false, err
		}
		// A slot may have freed between the decision and now.
		s.Kick()
		return false, nil
	}
	started, err := p.LocalPods.StartPod(ctx, t, trigger, causationID)
	if err != nil || !started {
		if released, rerr := s.cfg.Store.ReleaseGrant(context.WithoutCancel(ctx), t.ID); rerr == nil && released {
			s.Kick()
		}
	}
	return started, err
}

// StopPod takes a queued pod out of the queue, or a waiting one out of its
// wait (recording pod_stopped), or stops the running one.
func (p *ScheduledPods) StopPod(ctx context.Context, taskID, reason string) error {
	dequeued, err := p.s.cfg.Store.Dequeue(ctx, taskID)
	if err != nil {
		return err
	}
	if !dequeued {
		t, err := p.s.cfg.Store.GetTask(ctx, taskID)
		if err != nil || t.PodState != ipa.PodWaiting {
			return p.LocalPods.StopPod(ctx, taskID, reason)
		}
		// A pod waiting for its dependencies stops waiting.
	}
	_, err = p.s.cfg.Recorder.RecordPodEvent(ctx, taskID, ipa.NewEvent{Type: ipa.EventPodStopped, Data: ipa.PodStoppedData{Reason: reason}})
	return err
}

func triggerOr(t string) string {
	if t == "" {
		return ipa.TriggerManual
	}
	return t
}

// Forget is told a task closed: tasks waiting for it may start now, and a
// queued pod of it leaves the queue.
func (p *ScheduledPods) Forget(taskID string) {
	p.LocalPods.Forget(taskID)
	p.s.Kick()
}
