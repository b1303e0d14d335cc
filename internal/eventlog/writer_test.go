package eventlog_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// The write side against a real SQLite file: what commits, what is refused,
// and what the live feeds are told.

// recorder is a Publisher that keeps what it was told, in order.
type recorder struct {
	mu      sync.Mutex
	commits []feed.Commit
}

func (r *recorder) Publish(c feed.Commit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = append(r.commits, c)
}

func (r *recorder) all() []feed.Commit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]feed.Commit(nil), r.commits...)
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ipa.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func createReq(key string) ipa.CreateTaskRequest {
	return ipa.CreateTaskRequest{
		TaskID:         uuid.NewString(),
		Created:        ipa.TaskCreatedData{Title: "t", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()},
		Actor:          "ann",
		IdempotencyKey: key,
	}
}

// note is a runtime event: any open task takes it.
func note(n int) ipa.DecideFunc {
	return func(*ipa.Task) ([]ipa.NewEvent, error) {
		return []ipa.NewEvent{{Type: "runtime.note", Data: json.RawMessage(`{"n":` + strconv.Itoa(n) + `}`)}}, nil
	}
}

func readAll(t *testing.T, st *store.Store, taskID string) []ipa.Event {
	t.Helper()
	evs, err := st.ReadEvents(context.Background(), ipa.EventQuery{TaskID: taskID, Limit: 1000})
	require.NoError(t, err)
	return evs
}

// A create and an append are published after they commit, with the task's
// version, the position of the commit's last event, its events and the row;
// the actor is the append's and the correlation id the context's.
func TestWriterPublishesWhatCommitted(t *testing.T) {
	st := openStore(t)
	pub := &recorder{}
	w := eventlog.NewWriter(st, pub)
	ctx := ipa.WithCorrelationID(context.Background(), "corr-1")

	created, err := w.CreateTask(ctx, createReq(""))
	require.NoError(t, err)
	id := created.Task.ID
	task, evs, err := w.Append(ctx, eventlog.Append{TaskID: id, Actor: "bob", Decide: note(1)})
	require.NoError(t, err)
	require.EqualValues(t, 2, task.Version)
	require.Len(t, evs, 1)
	require.Equal(t, "bob", evs[0].ActorID)
	require.Equal(t, "corr-1", evs[0].CorrelationID)

	got := pub.all()
	require.Len(t, got, 2)
	require.Equal(t, ipa.EventTaskCreated, got[0].Events[0].Type)
	require.EqualValues(t, 1, got[0].Version)
	c := got[1]
	require.Equal(t, id, c.TaskID)
	require.EqualValues(t, 2, c.Version)
	require.Equal(t, evs[0].Position, c.Position)
	require.Equal(t, evs, c.Events)
	require.Equal(t, task, c.Task)
	require.Equal(t, readAll(t, st, id)[1].ID, evs[0].ID, "what was published is what the store holds")
}

// An append naming a version that is not the task's is a conflict: nothing
// is written, nothing is published, the decision is not retried.
func TestWriterExpectedVersionConflict(t *testing.T) {
	st := openStore(t)
	pub := &recorder{}
	w := eventlog.NewWriter(st, pub)
	ctx := context.Background()
	created, err := w.CreateTask(ctx, createReq(""))
	require.NoError(t, err)
	id := created.Task.ID

	v1 := int64(1)
	_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Expected: &v1, Actor: "ann", Decide: note(1)})
	require.NoError(t, err)
	decided := 0
	_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Expected: &v1, Actor: "ann", Decide: func(t *ipa.Task) ([]ipa.NewEvent, error) {
		decided++
		return note(2)(t)
	}})
	require.Equal(t, ipa.ReasonVersionConflict, ipa.ErrorReason(err), "%v", err)
	require.Zero(t, decided, "a stale version is refused before deciding")
	require.Len(t, readAll(t, st, id), 2)
	require.Len(t, pub.all(), 2)
}

// A decision's refusal and an unknown task are passed back unchanged, and
// nothing is published.
func TestWriterPassesRefusalsBack(t *testing.T) {
	st := openStore(t)
	pub := &recorder{}
	w := eventlog.NewWriter(st, pub)
	ctx := context.Background()
	created, err := w.CreateTask(ctx, createReq(""))
	require.NoError(t, err)

	refusal := ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidTransition, "no")
	_, _, err = w.Append(ctx, eventlog.Append{TaskID: created.Task.ID, Actor: "ann",
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return nil, refusal }})
	require.ErrorIs(t, err, refusal)

	_, _, err = w.Append(ctx, eventlog.Append{TaskID: uuid.NewString(), Actor: "ann", Decide: note(1)})
	require.Equal(t, ipa.ReasonTaskNotFound, ipa.ErrorReason(err), "%v", err)

	// A decision that writes nothing commits nothing and publishes nothing.
	task, evs, err := w.Append(ctx, eventlog.Append{TaskID: created.Task.ID, Actor: "ann",
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return nil, nil }})
	require.NoError(t, err)
	require.Empty(t, evs)
	require.EqualValues(t, 1, task.Version)
	require.Len(t, pub.all(), 1, "only the create")
}

// A create with an idempotency key seen before returns the first task and
// writes and publishes nothing.
func TestWriterCreateIdempotent(t *testing.T) {
	st := openStore(t)
	pub := &recorder{}
	w := eventlog.NewWriter(st, pub)
	ctx := context.Background()

	first, err := w.CreateTask(ctx, createReq("k1"))
	require.NoError(t, err)
	again, err := w.CreateTask(ctx, createReq("k1"))
	require.NoError(t, err)
	require.True(t, again.Existing)
	require.Equal(t, first.Task.ID, again.Task.ID)
	require.Empty(t, again.Events)
	require.Len(t, pub.all(), 1)

	other, err := w.CreateTask(ctx, createReq("k2"))
	require.NoError(t, err)
	require.False(t, other.Existing)
	require.NotEqual(t, first.Task.ID, other.Task.ID)
	require.Len(t, pub.all(), 2)
}

// A Writer without a publisher (tools that write without live feeds)
// writes all the same.
func TestWriterWithoutPublisher(t *testing.T) {
	st := openStore(t)
	w := eventlog.NewWriter(st, nil)
	created, err := w.CreateTask(context.Background(), createReq(""))
	require.NoError(t, err)
	_, _, err = w.Append(context.Background(), eventlog.Append{TaskID: created.Task.ID, Actor: "ann", Decide: note(1)})
	require.NoError(t, err)
	require.Len(t, readAll(t, st, created.Task.ID), 2)
}

// racingStore is the real store behind a door that makes the next appends
// lose an optimistic-concurrency race first (on SQLite's single writer no
// race can be lost for real; on PostgreSQL it can).
type racingStore struct {
	*store.Store
	mu    sync.Mutex
	lose  int // how many appends still lose
	calls int
}

func (s *racingStore) Append(ctx context.Context, req ipa.AppendRequest) (ipa.AppendResult, error) {
	s.mu.Lock()
	s.calls++
	lose := s.lose > 0
	if lose {
		s.lose--
	}
	s.mu.Unlock()
	if lose {
		return ipa.AppendResult{}, ipa.VersionConflict(req.ExpectedVersion, req.ExpectedVersion+1)
	}
	return s.Store.Append(ctx, req)
}

// Without an expected version a lost race is retried, a bounded number of
// times; with one it is the client's conflict and is not retried.
func TestWriterRetriesLostRacesOnlyWithoutExpectedVersion(t *testing.T) {
	st := &racingStore{Store: openStore(t)}
	w := eventlog.NewWriter(st, nil)
	ctx := context.Background()
	created, err := w.CreateTask(ctx, createReq(""))
	require.NoError(t, err)
	id := created.Task.ID

	st.lose, st.calls = 3, 0
	task, _, err := w.Append(ctx, eventlog.Append{TaskID: id, Actor: "ann", Decide: note(1)})
	require.NoError(t, err)
	require.EqualValues(t, 2, task.Version)
	require.Equal(t, 4, st.calls)

	st.lose, st.calls = 100, 0
	_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Actor: "ann", Decide: note(2)})
	require.Equal(t, ipa.ReasonVersionConflict, ipa.ErrorReason(err))
	require.Equal(t, 6, st.calls, "one try and five retries, then the conflict")

	st.lose, st.calls = 1, 0
	v := task.Version
	_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Expected: &v, Actor: "ann", Decide: note(3)})
	require.Equal(t, ipa.ReasonVersionConflict, ipa.ErrorReason(err))
	require.Equal(t, 1, st.calls)
	require.Len(t, readAll(t, st.Store, id), 2)
}

// podEnv is a store, its writer and pod recorder, and one open task.
func podEnv(t *testing.T) (*store.Store, *eventlog.Writer, eventlog.PodRecorder, string) {
	t.Helper()
	st := openStore(t)
	w := eventlog.NewWriter(st, nil)
	created, err := w.CreateTask(context.Background(), createReq(""))
	require.NoError(t, err)
	return st, w, eventlog.NewPodRecorder(w), created.Task.ID
}

// The pod recorder writes as the person in the context or as the system,
// refuses to record a start on a closed task, and still records a crash
// there (the process was running when the task closed).
func TestPodRecorder(t *testing.T) {
	st, w, rec, id := podEnv(t)
	ctx := context.Background()

	started := ipa.NewEvent{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 1, Runtime: "demo", Trigger: "manual"}}
	ev, err := rec.RecordPodEvent(ipa.WithActor(ctx, ipa.Actor{ID: "ann", Role: ipa.RoleOperator}), id, started)
	require.NoError(t, err)
	require.Equal(t, "ann", ev.ActorID)
	crashed := ipa.NewEvent{Type: ipa.EventPodCrashed, Data: ipa.PodCrashedData{PID: 1, Runtime: "demo", Reason: "exited"}}
	ev, err = rec.RecordPodEvent(ctx, id, crashed)
	require.NoError(t, err)
	require.Equal(t, eventlog.SystemActor, ev.ActorID)

	_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Actor: "ann", Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
		return []ipa.NewEvent{{Type: ipa.EventTaskCancelled, Data: ipa.TaskCancelledData{Reason: "enough"}}}, nil
	}})
	require.NoError(t, err)
	before := len(readAll(t, st, id))
	for _, typ := range []string{ipa.EventPodStarted, ipa.EventPodReattached} {
		_, err = rec.RecordPodEvent(ctx, id, ipa.NewEvent{Type: typ, Data: ipa.PodStartedData{PID: 2, Runtime: "demo"}})
		require.Equal(t, ipa.ReasonAlreadyCancelled, ipa.ErrorReason(err), "%s on a closed task: %v", typ, err)
	}
	require.Len(t, readAll(t, st, id), before)
	_, err = rec.RecordPodEvent(ctx, id, crashed)
	require.NoError(t, err, "a crash is recorded on a closed task too")
}

// PodHistory reads back the pod facts inside a window, oldest first, and
// nothing else.
func TestPodHistory(t *testing.T) {
	st, w, rec, id := podEnv(t)
	ctx := context.Background()

	var pod []ipa.Event
	for _, ne := range []ipa.NewEvent{
		{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 1, Runtime: "demo"}},
		{Type: ipa.EventPodCrashed, Data: ipa.PodCrashedData{PID: 1, Runtime: "demo", Reason: "exited"}},
		{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 2, Runtime: "demo", Attempt: 1}},
		{Type: ipa.EventPodLost, Data: ipa.PodCrashedData{PID: 2, Runtime: "demo", Reason: "host_silent"}},
	} {
		ev, err := rec.RecordPodEvent(ctx, id, ne)
		require.NoError(t, err)
		pod = append(pod, ev)
		// Not pod history: a runtime's own event between them.
		_, _, err = w.Append(ctx, eventlog.Append{TaskID: id, Actor: "ann", Decide: note(1)})
		require.NoError(t, err)
	}
	h := eventlog.NewPodHistory(st)
	got, err := h.RecentPodEvents(ctx, id, time.Time{})
	require.NoError(t, err)
	require.Equal(t, ids(pod), ids(got))

	since := pod[2].OccurredAt
	got, err = h.RecentPodEvents(ctx, id, since)
	require.NoError(t, err)
	var inside []ipa.Event
	for _, ev := range pod {
		if !ev.OccurredAt.Before(since) {
			inside = append(inside, ev)
		}
	}
	require.Equal(t, ids(inside), ids(got))
	require.NotContains(t, ids(got), pod[1].ID, "before the window")

	got, err = h.RecentPodEvents(ctx, uuid.NewString(), time.Time{})
	require.NoError(t, err)
	require.Empty(t, got)
}

func ids(evs []ipa.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}
