package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/cursor"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// The fakes below stand in for the store, the event log and the supervisor,
// so the services' rules run in microseconds. They fold events with the same
// ipa.Apply the store uses; the store, the feed and the API keep their own
// real-database tests.

// memLog is an in-memory task log: rows folded from events, and a journal
// of everything that happened (appends and pod calls) in order.
type memLog struct {
	mu      sync.Mutex
	tasks   map[string]*ipa.Task
	events  map[string][]ipa.Event
	journal []string
	now     time.Time
}

func newMemLog() *memLog {
	return &memLog{tasks: map[string]*ipa.Task{}, events: map[string][]ipa.Event{}, now: time.Unix(1_700_000_000, 0).UTC()}
}

func (l *memLog) note(format string, args ...any) {
	l.journal = append(l.journal, fmt.Sprintf(format, args...))
}

func (l *memLog) fold(t *ipa.Task, taskID, actor string, evs []ipa.NewEvent) ([]ipa.Event, error) {
	var out []ipa.Event
	for _, ne := range evs {
		data, err := json.Marshal(ne.Data)
		if err != nil {
			return nil, err
		}
		l.now = l.now.Add(time.Millisecond)
		e := ipa.Event{ID: uuid.NewString(), TaskID: taskID, Version: t.Version + 1, Type: ne.Type, Data: data, ActorID: actor, CausationID: ne.CausationID, OccurredAt: l.now}
		if err := ipa.Apply(t, e); err != nil {
			return nil, err
		}
		out = append(out, e)
		l.note("append %s", ne.Type)
	}
	return out, nil
}

func (l *memLog) CreateTask(_ context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &ipa.Task{}
	evs, err := l.fold(t, req.TaskID, req.Actor, []ipa.NewEvent{{Type: ipa.EventTaskCreated, Data: req.Created}})
	if err != nil {
		return ipa.CreateTaskResult{}, err
	}
	l.tasks[req.TaskID], l.events[req.TaskID] = t, evs
	cp := *t
	return ipa.CreateTaskResult{Task: &cp, Events: evs}, nil
}

func (l *memLog) Append(_ context.Context, a eventlog.Append) (*ipa.Task, []ipa.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.tasks[a.TaskID]
	if !ok {
		return nil, nil, ipa.TaskNotFound(a.TaskID)
	}
	if a.Expected != nil && *a.Expected != cur.Version {
		return nil, nil, ipa.VersionConflict(*a.Expected, cur.Version)
	}
	next := *cur
	news, err := a.Decide(&next)
	if err != nil {
		return nil, nil, err
	}
	evs, err := l.fold(&next, a.TaskID, a.Actor, news)
	if err != nil {
		return nil, nil, err
	}
	l.tasks[a.TaskID] = &next
	l.events[a.TaskID] = append(l.events[a.TaskID], evs...)
	cp := next
	return &cp, evs, nil
}

func (l *memLog) GetTask(_ context.Context, id string) (*ipa.Task, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.tasks[id]
	if !ok {
		return nil, ipa.TaskNotFound(id)
	}
	cp := *t
	return &cp, nil
}

func (l *memLog) FindTasks(context.Context, ipa.TaskQuery) (ipa.TaskPage, error) {
	return ipa.TaskPage{}, nil
}

func (l *memLog) CountTasks(_ context.Context, f ipa.TaskFilter) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.tasks {
		if f.Matches(t) {
			n++
		}
	}
	return int64(n), nil
}

func (l *memLog) ReadEvents(_ context.Context, q ipa.EventQuery) ([]ipa.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ipa.Event
	for _, e := range l.events[q.TaskID] {
		if len(q.Types) == 0 || contains(q.Types, e.Type) {
			out = append(out, e)
		}
	}
	if q.Newest {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (l *memLog) CountEvents(_ context.Context, taskID string, _ []string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.events[taskID])), nil
}

func (l *memLog) TasksWithPods(context.Context) ([]*ipa.Task, error) { return nil, nil }

func (l *memLog) ActivePodTasks(context.Context) ([]*ipa.Task, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*ipa.Task
	for _, t := range l.tasks {
		switch t.PodState {
		case ipa.PodStarting, ipa.PodRunning, ipa.PodStopping, ipa.PodBackoff:
			cp := *t
			out = append(out, &cp)
		}
	}
	return out, nil
}

func (l *memLog) ShutdownStoppedTasks(context.Context, ...string) ([]*ipa.Task, error) {
	return nil, nil
}
func (l *memLog) DueTasks(context.Context, time.Time, int) ([]*ipa.Task, error) { return nil, nil }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// memPods is a supervisor that records pod facts in the memLog, as the real
// one does through its recorder, and journals every call.
type memPods struct {
	log      *memLog
	running  map[string]bool
	startErr error
}

func (p *memPods) record(taskID, typ string) {
	p.recordData(taskID, typ, map[string]any{})
}

func (p *memPods) recordData(taskID, typ string, data any) {
	_, _, _ = p.log.Append(context.Background(), eventlog.Append{TaskID: taskID, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
		return []ipa.NewEvent{{Type: typ, Data: data}}, nil
	}})
}

// StartPod records a failed start as the supervisor does: a pod_crashed with
// reason start_failed and a message, then returns the error.
func (p *memPods) StartPod(_ context.Context, t *ipa.Task, trigger, causation string) (bool, error) {
	p.log.mu.Lock()
	p.log.note("start %s trigger=%s cause=%s", t.ID, trigger, causation)
	p.log.mu.Unlock()
	if p.startErr != nil {
		p.recordData(t.ID, ipa.EventPodCrashed, ipa.PodCrashedData{Attempt: 1, Runtime: t.Runtime, Reason: ipa.CrashStartFailed, Message: "The runtime refused to start."})
		return false, p.startErr
	}
	if p.running[t.ID] {
		return false, nil
	}
	p.running[t.ID] = true
	p.record(t.ID, ipa.EventPodStarted)
	return true, nil
}

func (p *memPods) StopPod(_ context.Context, taskID, reason string) error {
	p.log.mu.Lock()
	p.log.note("stop %s", reason)
	p.log.mu.Unlock()
	if !p.running[taskID] {
		return ipa.ErrPodNotRunning
	}
	delete(p.running, taskID)
	p.record(taskID, ipa.EventPodStopped)
	return nil
}

func (p *memPods) RestartPod(ctx context.Context, t *ipa.Task) error {
	_ = p.StopPod(ctx, t.ID, ipa.StopRestart)
	_, err := p.StartPod(ctx, t, ipa.TriggerManual, "")
	return err
}

func (p *memPods) Status(taskID string) ipa.PodStatus {
	if p.running[taskID] {
		return ipa.PodStatus{TaskID: taskID, Known: true, State: ipa.PodRunning, PID: 4242}
	}
	return ipa.PodStatus{TaskID: taskID, State: ipa.PodStopped}
}

// PausePod and ResumePod are not used by these tests (the supervisor's
// real pause is tested through the binary).
func (p *memPods) PausePod(context.Context, string) error  { return ipa.ErrPodNotRunning }
func (p *memPods) ResumePod(context.Context, string) error { return ipa.ErrPodNotRunning }

func (p *memPods) Forget(taskID string) {
	p.log.mu.Lock()
	p.log.note("forget %s", taskID)
	p.log.mu.Unlock()
}

// fixture is the services over the fakes.
type fixture struct {
	log    *memLog
	pods   *memPods
	tasks  *TaskService
	podS   *PodService
	owners leaseOwners
}

// leaseOwners is the pod leases the fixture's PodService reads owners from:
// task id → instance.
type leaseOwners map[string]string

func (o leaseOwners) LeaseOwner(_ context.Context, taskID string) (string, int64, bool, error) {
	owner, ok := o[taskID]
	return owner, 1, ok, nil
}

// runtimes are the fixture's: demo, one that validates its config, and one
// that needs ADMIN (as exec does by default).
var runtimes = []ipa.Runtime{
	{Name: "demo"},
	{Name: "picky", ValidateConfig: func(raw []byte) error {
		if string(raw) != `{"ok":true}` {
			return fmt.Errorf("want ok")
		}
		return nil
	}},
	{Name: "shell", Role: ipa.RoleAdmin},
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	l := newMemLog()
	p := &memPods{log: l, running: map[string]bool{}}
	ts, err := NewTaskService(TaskConfig{
		Logger: slog.New(slog.DiscardHandler),
		Store:  l, Writer: l, Pods: p, Cursors: cursor.New([]byte("0123456789abcdef0123456789abcdef")),
		Runtimes: runtimes,
	})
	require.NoError(t, err)
	owners := leaseOwners{}
	return &fixture{log: l, pods: p, tasks: ts, podS: NewPodService(l, owners, p, runtimes), owners: owners}
}

func as(role ipa.Role) context.Context {
	return ipa.WithActor(context.Background(), ipa.Actor{ID: "someone", Role: role})
}

func requireCode(t *testing.T, err error, code, reason string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, ipa.ErrorCode(err), "%v", err)
	if reason != "" {
		require.Equal(t, reason, ipa.ErrorReason(err), "%v", err)
	}
}

// create makes an open task as an admin.
func (f *fixture) create(t *testing.T) *ipa.Task {
	t.Helper()
	task, err := f.tasks.CreateTask(as(ipa.RoleAdmin), ipa.CreateTaskInput{Title: "a task"})
	require.NoError(t, err)
	return task
}

// memTokens is an empty token store.
type memTokens struct{}

func (memTokens) CreateToken(context.Context, ipa.Token) error { return nil }
func (memTokens) TokenByHash(context.Context, string) (*ipa.Token, error) {
	return nil, ipa.Errorf(ipa.ENOTFOUND, "", "no token")
}
func (memTokens) CountActiveTokens(context.Context) (int64, error)    { return 0, nil }
func (memTokens) TouchToken(context.Context, string, time.Time) error { return nil }
func (memTokens) ListTokens(context.Context) ([]ipa.Token, error)     { return nil, nil }
func (memTokens) RevokeToken(context.Context, string) error           { return nil }

// memFeed hands out feeds that are already closed.
type memFeed struct{}

func (memFeed) TaskEvents(context.Context, string, *int64) (<-chan *ipa.Event, error) {
	ch := make(chan *ipa.Event)
	close(ch)
	return ch, nil
}
func (memFeed) Events(context.Context, *int64, []string) (<-chan *ipa.Event, error) {
	ch := make(chan *ipa.Event)
	close(ch)
	return ch, nil
}
func (memFeed) TaskEventBatches(context.Context, string, *int64, int) (<-chan []*ipa.Event, error) {
	ch := make(chan []*ipa.Event)
	close(ch)
	return ch, nil
}
func (memFeed) EventBatches(context.Context, *int64, []string, int) (<-chan []*ipa.Event, error) {
	ch := make(chan []*ipa.Event)
	close(ch)
	return ch, nil
}
func (f memFeed) TaskEventsSource(ctx context.Context, id string, after *int64) (feed.Source[*ipa.Event], error) {
	return feed.Source[*ipa.Event]{Open: func(ctx context.Context, after int64) (<-chan *ipa.Event, error) {
		return f.TaskEvents(ctx, id, &after)
	}}, nil
}
func (f memFeed) EventsSource(ctx context.Context, after *int64, types []string) (feed.Source[*ipa.Event], error) {
	return feed.Source[*ipa.Event]{Open: func(ctx context.Context, after int64) (<-chan *ipa.Event, error) {
		return f.Events(ctx, &after, types)
	}}, nil
}
func (memFeed) TaskChanged(context.Context, ipa.TaskFilter) (<-chan *ipa.Task, error) {
	ch := make(chan *ipa.Task)
	close(ch)
	return ch, nil
}
func (memTokens) LocalDoorOpen(context.Context) (bool, error) { return false, nil }
func (memTokens) WatchTokens(func(ipa.TokenChange))           {}
