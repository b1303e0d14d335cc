package coordination

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// The scheduler's own judgement, on fakes: what it records and asks of the
// store around a start and a stop. The store's decisions (limits, order,
// dead receivers) are proven on both databases in internal/store, and the
// whole with real servers and plugins in cmd/ipa.

type schedFake struct {
	mu        sync.Mutex
	tasks     map[string]*ipa.Task
	admit     ipa.Admission
	blocking  []string
	queued    map[string]bool
	released  []string
	dequeued  []string
	grants    []store.Grant
	dispatchN int
}

func (f *schedFake) Admit(_ context.Context, t *ipa.Task, _, _ string, _ time.Time) (ipa.Admission, []string, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.admit, f.blocking, 3, nil
}
func (f *schedFake) Dispatch(context.Context, string, time.Time, time.Time) ([]store.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dispatchN++
	return f.grants, nil
}
func (f *schedFake) Grants(context.Context, string) ([]store.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.grants
	f.grants = nil
	return g, nil
}
func (f *schedFake) ReleaseGrant(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, id)
	return true, nil
}
func (f *schedFake) Dequeue(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dequeued = append(f.dequeued, id)
	ok := f.queued[id]
	delete(f.queued, id)
	return ok, nil
}
func (f *schedFake) Now(context.Context) (time.Time, error) { return time.Unix(1000, 0), nil }
func (f *schedFake) GetTask(_ context.Context, id string) (*ipa.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tasks[id]; ok {
		c := *t
		return &c, nil
	}
	return nil, ipa.TaskNotFound(id)
}
func (f *schedFake) GetTasks(ctx context.Context, ids []string) (map[string]*ipa.Task, error) {
	out := map[string]*ipa.Task{}
	for _, id := range ids {
		if t, err := f.GetTask(ctx, id); err == nil {
			out[id] = t
		}
	}
	return out, nil
}
func (f *schedFake) WaitingTasks(context.Context, int) ([]*ipa.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ipa.Task
	for _, t := range f.tasks {
		if t.PodState == ipa.PodWaiting && !t.Status.Closed() {
			c := *t
			out = append(out, &c)
		}
	}
	return out, nil
}

type recFake struct {
	mu   sync.Mutex
	evs  []ipa.NewEvent
	fail error
}

func (r *recFake) RecordPodEvent(_ context.Context, _ string, ev ipa.NewEvent) (ipa.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return ipa.Event{}, r.fail
	}
	r.evs = append(r.evs, ev)
	return ipa.Event{Type: ev.Type}, nil
}

type localFake struct {
	mu      sync.Mutex
	started []string
	stopped []string
	fail    error
}

func (l *localFake) StartPod(_ context.Context, t *ipa.Task, _, _ string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return false, l.fail
	}
	l.started = append(l.started, t.ID)
	return true, nil
}
func (l *localFake) StopPod(_ context.Context, id, _ string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = append(l.stopped, id)
	return ipa.ErrPodNotRunning
}
func (l *localFake) RestartPod(context.Context, *ipa.Task) error { return nil }
func (l *localFake) PausePod(context.Context, string) error      { return nil }
func (l *localFake) ResumePod(context.Context, string) error     { return nil }
func (l *localFake) Status(string) ipa.PodStatus                 { return ipa.PodStatus{} }
func (l *localFake) Forget(string)                               {}

func newSchedFixture() (*schedFake, *recFake, *localFake, *Scheduler, *ScheduledPods) {
	st := &schedFake{tasks: map[string]*ipa.Task{}, queued: map[string]bool{}}
	rec := &recFake{}
	local := &localFake{}
	s := NewScheduler(SchedConfig{Store: st, Recorder: rec, ID: "me", TTL: time.Second})
	s.Attach(local)
	return st, rec, local, s, s.Wrap(local)
}

func TestSchedStartQueues(t *testing.T) {
	ctx := context.Background()
	st, rec, local, _, pods := newSchedFixture()
	task := &ipa.Task{ID: "t1", Runtime: "demo"}
	st.tasks["t1"] = task
	st.admit, st.blocking = ipa.Queued, []string{"global"}
	started, err := pods.StartPod(ctx, task, "", "cause")
	if err != nil || started {
		t.Fatalf("queued start: started %v err %v", started, err)
	}
	if len(local.started) != 0 {
		t.Fatal("a queued pod was started")
	}
	if len(rec.evs) != 1 || rec.evs[0].Type != ipa.EventPodQueued || rec.evs[0].CausationID != "cause" {
		t.Fatalf("recorded %+v", rec.evs)
	}
	d := rec.evs[0].Data.(ipa.PodQueuedData)
	if d.Trigger != ipa.TriggerManual || d.InstanceID != "me" || d.Position != 3 || d.Limits[0] != "global" {
		t.Fatalf("pod_queued data %+v", d)
	}

	// pod_queued that cannot be recorded takes the pod out of the queue.
	rec.evs, rec.fail = nil, errors.New("store down")
	if _, err := pods.StartPod(ctx, task, "", ""); err == nil {
		t.Fatal("an unrecorded queueing answered no error")
	}
	if len(st.dequeued) != 1 {
		t.Fatalf("dequeued %v", st.dequeued)
	}
}

func TestSchedFailedStartGivesSlotBack(t *testing.T) {
	ctx := context.Background()
	st, _, local, _, pods := newSchedFixture()
	task := &ipa.Task{ID: "t1", Runtime: "demo"}
	st.admit = ipa.Admitted
	local.fail = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "no")
	if _, err := pods.StartPod(ctx, task, "", ""); err == nil {
		t.Fatal("want the start's error")
	}
	if len(st.released) != 1 || st.released[0] != "t1" {
		t.Fatalf("released %v: a failed start must give its slot back", st.released)
	}
	local.fail = nil
	st.released = nil
	if started, err := pods.StartPod(ctx, task, "", ""); err != nil || !started {
		t.Fatalf("admitted start: %v %v", started, err)
	}
	if len(st.released) != 0 {
		t.Fatalf("a started pod gave its slot back: %v", st.released)
	}
}

func TestSchedDependenciesWait(t *testing.T) {
	ctx := context.Background()
	st, rec, local, s, pods := newSchedFixture()
	st.tasks["dep"] = &ipa.Task{ID: "dep", Status: ipa.StatusActive}
	st.tasks["done"] = &ipa.Task{ID: "done", Status: ipa.StatusCompleted}
	task := &ipa.Task{ID: "t1", Runtime: "demo", DependsOn: []string{"done", "dep", "deleted"}}
	st.tasks["t1"] = task
	st.admit = ipa.Admitted
	if started, err := pods.StartPod(ctx, task, ipa.TriggerAutoStart, ""); err != nil || started {
		t.Fatalf("start with a pending dependency: %v %v", started, err)
	}
	if len(rec.evs) != 1 || rec.evs[0].Type != ipa.EventPodWaiting {
		t.Fatalf("recorded %+v", rec.evs)
	}
	if d := rec.evs[0].Data.(ipa.PodWaitingData); len(d.WaitingFor) != 1 || d.WaitingFor[0] != "dep" || d.Trigger != ipa.TriggerAutoStart {
		t.Fatalf("pod_waiting data %+v", d)
	}
	// Asked again while WAITING: nothing new.
	st.tasks["t1"].PodState = ipa.PodWaiting
	task.PodState = ipa.PodWaiting
	if _, err := pods.StartPod(ctx, task, "", ""); err != nil || len(rec.evs) != 1 {
		t.Fatalf("second start: %v, recorded %d", err, len(rec.evs))
	}
	// Still pending: a look at the waiting pods starts nothing.
	s.startReady(ctx)
	if len(local.started) != 0 {
		t.Fatal("started with a dependency not completed")
	}
	// Completed: the next look starts it.
	st.tasks["dep"].Status = ipa.StatusCompleted
	s.startReady(ctx)
	if len(local.started) != 1 || local.started[0] != "t1" {
		t.Fatalf("started %v", local.started)
	}
	// A stop of a waiting pod records its end, and touches no process.
	rec.evs = nil
	if err := pods.StopPod(ctx, "t1", "no longer"); err != nil {
		t.Fatal(err)
	}
	if len(rec.evs) != 1 || rec.evs[0].Type != ipa.EventPodStopped || len(local.stopped) != 0 {
		t.Fatalf("recorded %+v, local stops %v", rec.evs, local.stopped)
	}
}

func TestSchedGrantedStarts(t *testing.T) {
	ctx := context.Background()
	st, _, local, s, pods := newSchedFixture()
	_ = pods
	st.tasks["open"] = &ipa.Task{ID: "open", Runtime: "demo"}
	st.tasks["closed"] = &ipa.Task{ID: "closed", Runtime: "demo", Status: ipa.StatusCancelled}
	st.grants = []store.Grant{{TaskID: "open", InstanceID: "me", Trigger: "manual"}, {TaskID: "closed", InstanceID: "me", Trigger: "manual"}}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.Kick()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.mu.Lock()
		released := append([]string(nil), st.released...)
		st.mu.Unlock()
		local.mu.Lock()
		started := append([]string(nil), local.started...)
		local.mu.Unlock()
		if len(started) == 1 && len(released) == 1 {
			if started[0] != "open" || released[0] != "closed" {
				t.Fatalf("started %v released %v", started, released)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("started %v released %v: want open started, closed's slot given back", started, released)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSchedStopQueued(t *testing.T) {
	ctx := context.Background()
	st, rec, local, _, pods := newSchedFixture()
	st.queued["q"] = true
	st.tasks["q"] = &ipa.Task{ID: "q", PodState: ipa.PodQueued}
	if err := pods.StopPod(ctx, "q", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	if len(rec.evs) != 1 || rec.evs[0].Type != ipa.EventPodStopped || rec.evs[0].Data.(ipa.PodStoppedData).Reason != "changed my mind" {
		t.Fatalf("recorded %+v", rec.evs)
	}
	if len(local.stopped) != 0 {
		t.Fatal("a queued pod's stop reached the supervisor")
	}
	// Not queued: the stop goes to the pod.
	st.tasks["r"] = &ipa.Task{ID: "r", PodState: ipa.PodRunning}
	if err := pods.StopPod(ctx, "r", "x"); !errors.Is(err, ipa.ErrPodNotRunning) || len(local.stopped) != 1 {
		t.Fatalf("stop of a running pod: %v, local %v", err, local.stopped)
	}
}

// TestSchedRestartAndResumeQueue: a person's restart stops the pod and
// starts it through the limits, so beyond a full one it queues; a restart
// of a queued pod stops nothing; a resume beyond a full limit queues with
// trigger resume.
func TestSchedRestartAndResumeQueue(t *testing.T) {
	ctx := context.Background()
	st, rec, local, _, pods := newSchedFixture()
	task := &ipa.Task{ID: "t1", Runtime: "demo", PodState: ipa.PodRunning}
	st.tasks["t1"] = task
	st.admit, st.blocking = ipa.Queued, []string{"global"}
	if err := pods.RestartPod(ctx, task); err != nil {
		t.Fatal(err)
	}
	if len(local.stopped) != 1 || len(local.started) != 0 {
		t.Fatalf("restart beyond a full limit: stopped %v, started %v; want a stop and no start", local.stopped, local.started)
	}
	if len(rec.evs) != 1 || rec.evs[0].Type != ipa.EventPodQueued || rec.evs[0].Data.(ipa.PodQueuedData).Trigger != ipa.TriggerManual {
		t.Fatalf("recorded %+v", rec.evs)
	}

	queued := &ipa.Task{ID: "t2", Runtime: "demo", PodState: ipa.PodQueued}
	st.tasks["t2"] = queued
	st.admit, rec.evs, local.stopped = ipa.AlreadyQueued, nil, nil
	if err := pods.RestartPod(ctx, queued); err != nil {
		t.Fatal(err)
	}
	if len(local.stopped) != 0 || len(local.started) != 0 || len(rec.evs) != 0 {
		t.Fatalf("restart of a queued pod: stopped %v started %v recorded %+v", local.stopped, local.started, rec.evs)
	}

	st.admit = ipa.Queued
	if n := pods.Resume(ctx, []*ipa.Task{{ID: "t3", Runtime: "demo"}}); n != 0 {
		t.Fatalf("%d resumed beyond a full limit", n)
	}
	if len(rec.evs) != 1 || rec.evs[0].Data.(ipa.PodQueuedData).Trigger != ipa.TriggerResume || len(local.started) != 0 {
		t.Fatalf("resume beyond a full limit: recorded %+v, started %v", rec.evs, local.started)
	}
	st.admit = ipa.Admitted
	if n := pods.Resume(ctx, []*ipa.Task{{ID: "t4", Runtime: "demo"}}); n != 1 || len(local.started) != 1 {
		t.Fatalf("resume with room: %d resumed, started %v", n, local.started)
	}
}
