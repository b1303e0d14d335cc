package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/cursor"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// stoppingPods is a supervisor over a real store: a stop records pod_stopped
// through the real recorder (so it carries the request's actor and
// correlation id, or the server's own actor when asRemote says another
// instance carried it out). during, when set, runs inside every stop before
// anything is recorded: a write landing while the pod stops.
type stoppingPods struct {
	rec      eventlog.PodRecorder
	mu       sync.Mutex
	running  map[string]bool
	asRemote bool
	during   func(taskID string)
}

func (p *stoppingPods) StartPod(ctx context.Context, t *ipa.Task, _, _ string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[t.ID] {
		return false, nil
	}
	p.running[t.ID] = true
	_, err := p.rec.RecordPodEvent(ctx, t.ID, ipa.NewEvent{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{Trigger: ipa.TriggerManual}})
	return true, err
}

func (p *stoppingPods) StopPod(ctx context.Context, taskID, reason string) error {
	if p.during != nil {
		p.during(taskID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running[taskID] {
		return ipa.ErrPodNotRunning
	}
	delete(p.running, taskID)
	if p.asRemote {
		ctx = context.Background() // the owner's own context: no actor, no correlation id
	}
	_, err := p.rec.RecordPodEvent(ctx, taskID, ipa.NewEvent{Type: ipa.EventPodStopped, Data: ipa.PodStoppedData{Reason: reason}})
	return err
}

func (p *stoppingPods) RestartPod(context.Context, *ipa.Task) error { return nil }
func (p *stoppingPods) Status(string) ipa.PodStatus                 { return ipa.PodStatus{} }
func (p *stoppingPods) Forget(string)                               {}
func (p *stoppingPods) PausePod(context.Context, string) error      { return ipa.ErrPodNotRunning }
func (p *stoppingPods) ResumePod(context.Context, string) error     { return ipa.ErrPodNotRunning }

// closeFixture is a TaskService over a real database.
type closeFixture struct {
	st    *store.Store
	w     *eventlog.Writer
	pods  *stoppingPods
	tasks *TaskService
}

func newCloseFixture(t *testing.T, backend string) *closeFixture {
	t.Helper()
	st, err := store.Open(context.Background(), dbtest.URL(t, backend), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	w := eventlog.NewWriter(st, nil)
	p := &stoppingPods{rec: eventlog.NewPodRecorder(w), running: map[string]bool{}}
	ts, err := NewTaskService(TaskConfig{
		Logger: slog.New(slog.DiscardHandler),
		Store:  st, Writer: w, Pods: p, Cursors: cursor.New([]byte("0123456789abcdef0123456789abcdef")),
		Runtimes: runtimes,
	})
	require.NoError(t, err)
	return &closeFixture{st: st, w: w, pods: p, tasks: ts}
}

// request is an operator's request context with its own correlation id.
func request(id string) context.Context {
	return ipa.WithCorrelationID(as(ipa.RoleOperator), id)
}

// relabel changes the task's labels as another client would, at any version.
func (f *closeFixture) relabel(t *testing.T, taskID, value string) {
	t.Helper()
	_, err := f.tasks.UpdateTask(request("other-client"), taskID, ipa.UpdateTaskInput{Labels: json.RawMessage(`{"w":"` + value + `"}`)}, nil)
	require.NoError(t, err)
}

func (f *closeFixture) types(t *testing.T, taskID string) []string {
	t.Helper()
	evs, err := f.st.ReadEvents(context.Background(), ipa.EventQuery{TaskID: taskID, Limit: 100})
	require.NoError(t, err)
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// A close with expectedVersion is atomic with respect to it: it commits only
// when, since that version, the stream holds nothing but its own stop's
// pod_stopped; a write that lands while it stops the pod (or, with no pod,
// between its check and its append) fails it with VERSION_CONFLICT and the
// current version, and the task stays open.
func TestCloseWithExpectedVersionIsAtomic(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		t.Run("OwnStopOnly", func(t *testing.T) {
			f := newCloseFixture(t, backend)
			task, err := f.tasks.CreateTask(request("c0"), ipa.CreateTaskInput{Title: "a task"})
			require.NoError(t, err)
			_, err = f.pods.StartPod(request("c1"), task, ipa.TriggerManual, "")
			require.NoError(t, err)
			v := int64(2)
			done, err := f.tasks.CompleteTask(request("c2"), task.ID, &v)
			require.NoError(t, err)
			require.Equal(t, ipa.StatusCompleted, done.Status)
			require.Equal(t, int64(4), done.Version)
			require.Equal(t, []string{ipa.EventTaskCreated, ipa.EventPodStarted, ipa.EventPodStopped, ipa.EventTaskCompleted}, f.types(t, task.ID))
		})

		t.Run("StopCarriedOutElsewhere", func(t *testing.T) {
			f := newCloseFixture(t, backend)
			f.pods.asRemote = true
			task, err := f.tasks.CreateTask(request("c0"), ipa.CreateTaskInput{Title: "a task"})
			require.NoError(t, err)
			_, err = f.pods.StartPod(request("c1"), task, ipa.TriggerManual, "")
			require.NoError(t, err)
			v := int64(2)
			done, err := f.tasks.CancelTask(request("c2"), task.ID, "not needed", &v)
			require.NoError(t, err)
			require.Equal(t, ipa.StatusCancelled, done.Status)
			require.Equal(t, int64(4), done.Version)
		})

		for _, pod := range []bool{true, false} {
			name := "ChangeWhileStopping"
			if !pod {
				name = "ChangeWithoutPod"
			}
			t.Run(name, func(t *testing.T) {
				f := newCloseFixture(t, backend)
				task, err := f.tasks.CreateTask(request("c0"), ipa.CreateTaskInput{Title: "a task"})
				require.NoError(t, err)
				v := int64(1)
				if pod {
					_, err = f.pods.StartPod(request("c1"), task, ipa.TriggerManual, "")
					require.NoError(t, err)
					v = 2
				}
				var once sync.Once
				n := 0
				f.pods.during = func(id string) {
					once.Do(func() { n++; f.relabel(t, id, fmt.Sprint("x", n)) })
				}
				for _, close := range []func(context.Context) (*ipa.Task, error){
					func(ctx context.Context) (*ipa.Task, error) { return f.tasks.CancelTask(ctx, task.ID, "stop", &v) },
					func(ctx context.Context) (*ipa.Task, error) { return f.tasks.CompleteTask(ctx, task.ID, &v) },
				} {
					once = sync.Once{}
					_, err = close(request("c2"))
					requireCode(t, err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
					var e *ipa.Error
					require.ErrorAs(t, err, &e)
					cur, gerr := f.st.GetTask(context.Background(), task.ID)
					require.NoError(t, gerr)
					require.Equal(t, cur.Version, e.Extensions["currentVersion"], "the conflict names the version now")
					require.False(t, cur.Status.Closed(), "a close that lost its version race closes nothing")
					v = cur.Version // the next close names the version as it is now
				}
				f.pods.during = nil
				done, err := f.tasks.CancelTask(request("c3"), task.ID, "stop", &v)
				require.NoError(t, err)
				require.Equal(t, ipa.StatusCancelled, done.Status)
				require.Equal(t, v+1, done.Version, "nothing ran, nothing stopped: the close lands right on the named version")
			})
		}

		t.Run("SomeoneElsesStop", func(t *testing.T) {
			f := newCloseFixture(t, backend)
			task, err := f.tasks.CreateTask(request("c0"), ipa.CreateTaskInput{Title: "a task"})
			require.NoError(t, err)
			_, err = f.pods.StartPod(request("c1"), task, ipa.TriggerManual, "")
			require.NoError(t, err)
			// Another client's request stops the pod with the very reason a
			// cancellation gives, after this one checked the version.
			f.pods.during = func(id string) {
				f.pods.during = nil
				require.NoError(t, f.pods.StopPod(request("other-client"), id, "task cancelled"))
			}
			v := int64(2)
			_, err = f.tasks.CancelTask(request("c2"), task.ID, "stop", &v)
			requireCode(t, err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
		})
	})
}
