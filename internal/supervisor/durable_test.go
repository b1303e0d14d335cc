package supervisor

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/pgtest"
	"github.com/ipa-dev/ipa/internal/store"
)

// These tests run the supervisor over a real database (SQLite file and
// PostgreSQL) through the same recorder, history and lease table the server
// uses, with real plugin processes.

// dbStore is the store the tests' writer, history and leases go through; a
// SQLite outage closes it (a closed store answers STORE_UNAVAILABLE, as an
// unreachable one does) and the end of the outage opens a new one on the same
// file in its place.
type dbStore struct{ cur atomic.Pointer[store.Store] }

func (d *dbStore) st() *store.Store { return d.cur.Load() }

func (d *dbStore) CreateTask(ctx context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error) {
	return d.st().CreateTask(ctx, req)
}

func (d *dbStore) Append(ctx context.Context, req ipa.AppendRequest) (ipa.AppendResult, error) {
	return d.st().Append(ctx, req)
}

func (d *dbStore) ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error) {
	return d.st().ReadEvents(ctx, q)
}

// dbLeases keeps leases in the store's lease table, as the server does.
type dbLeases struct{ db *dbStore }

const testOwner = "supervisor-test"

func (l dbLeases) Save(ctx context.Context, lease Lease) error {
	data, err := json.Marshal(lease)
	if err != nil {
		return err
	}
	return l.db.st().SaveLease(ctx, testOwner, lease.TaskID, data, time.Now())
}

func (l dbLeases) Delete(ctx context.Context, taskID string) error {
	return l.db.st().DeleteLease(ctx, testOwner, taskID)
}

func (l dbLeases) List(ctx context.Context) ([]Lease, error) {
	rows, err := l.db.st().ListLeases(ctx, testOwner)
	if err != nil {
		return nil, err
	}
	out := make([]Lease, len(rows))
	for i, r := range rows {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type dbWorld struct {
	backend, url string
	db           *dbStore
	writer       *eventlog.Writer
}

func newDBWorld(t *testing.T, backend string) *dbWorld {
	t.Helper()
	w := &dbWorld{backend: backend, url: dbtest.URL(t, backend), db: &dbStore{}}
	w.open(t)
	t.Cleanup(func() { _ = w.db.st().Close() })
	w.writer = eventlog.NewWriter(w.db, nil)
	return w
}

func (w *dbWorld) open(t *testing.T) {
	t.Helper()
	st, err := store.Open(context.Background(), w.url, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	w.db.cur.Store(st)
}

// outage makes the database unreachable: PostgreSQL refuses connections and
// ends the open ones; the SQLite store is closed. The returned function ends
// the outage.
func (w *dbWorld) outage(t *testing.T) (end func()) {
	t.Helper()
	if w.backend == "postgres" {
		return pgtest.Block(t, w.url)
	}
	old := w.db.st()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	return func() { w.open(t) }
}

// config is a test supervisor's config writing to and reading from the database.
func (w *dbWorld) config(tune func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Recorder = eventlog.NewPodRecorder(w.writer)
		c.History = eventlog.NewPodHistory(w.db)
		c.Leases = dbLeases{w.db}
		c.StoreRetryMin = 20 * time.Millisecond
		c.StoreRetryMax = 200 * time.Millisecond
		c.RecordTimeout = 3 * time.Second
		if tune != nil {
			tune(c)
		}
	}
}

func (w *dbWorld) createTask(t *testing.T, pol ipa.RestartPolicy) *ipa.Task {
	t.Helper()
	res, err := w.writer.CreateTask(context.Background(), ipa.CreateTaskRequest{
		TaskID: uuid.NewString(), Actor: "test",
		Created: ipa.TaskCreatedData{Title: "t", Runtime: "test", RuntimeConfig: json.RawMessage(`{}`), RestartPolicy: pol},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Task
}

// podEvents reads the task's pod events back from the database.
func (w *dbWorld) podEvents(t *testing.T, taskID string) []ipa.Event {
	t.Helper()
	evs, err := w.db.st().ReadEvents(context.Background(), ipa.EventQuery{TaskID: taskID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(evs, func(e ipa.Event) bool { return e.Type == ipa.EventTaskCreated })
}

func eventTypes(evs []ipa.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// waitEvents polls the database until the task has n events of typ.
func (w *dbWorld) waitEvents(t *testing.T, taskID, typ string, n int) []ipa.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got []ipa.Event
		for _, e := range w.podEvents(t, taskID) {
			if e.Type == typ {
				got = append(got, e)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d× %s in the stream of %s: %v", n, typ, taskID, eventTypes(w.podEvents(t, taskID)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashLoop SIGKILLs the running plugin and waits for the n-th pod_crashed
// in the database.
func (w *dbWorld) crash(t *testing.T, s *Supervisor, taskID string, n int) {
	t.Helper()
	st := waitState(t, s, taskID, ipa.PodRunning)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.waitEvents(t, taskID, ipa.EventPodCrashed, n)
}

var crashLoopPolicy = ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 20, MaxBackoffMs: 20}

// A plugin killed while the database is down: its pod_crashed and
// pod_restart_scheduled are kept and written once the database is back, once
// each and in order; the restart waits for the database without spending an
// attempt, so the limit is still reached at the fourth crash.
func TestCrashDuringStoreOutage(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		w := newDBWorld(t, backend)
		b := setup(t, w.config(nil))
		s := b.sup
		task := w.createTask(t, crashLoopPolicy)
		first := mustStart(t, s, task)

		end := w.outage(t)
		if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the crash and its restart kept, restarts put off", func() bool {
			return testutil.ToFloat64(s.m.pending) == 2 && testutil.ToFloat64(s.m.storeWaits.WithLabelValues("test")) >= 3
		})
		st := s.Status(task.ID)
		if st.State != ipa.PodBackoff || st.Restarts != 0 || len(st.Crashes) != 1 || st.PID != 0 {
			t.Fatalf("status during the outage: %+v", st)
		}
		if n := b.launches.Load(); n != 1 {
			t.Fatalf("%d plugins launched during the outage, want none after the first", n-1)
		}
		end()

		w.waitEvents(t, task.ID, ipa.EventPodStarted, 2)
		second := waitState(t, s, task.ID, ipa.PodRunning)
		waitFor(t, "the outbox drained", func() bool { return testutil.ToFloat64(s.m.pending) == 0 })
		evs := w.podEvents(t, task.ID)
		want := []string{ipa.EventPodStarted, ipa.EventPodCrashed, ipa.EventPodRestartScheduled, ipa.EventPodStarted}
		if got := eventTypes(evs); !slices.Equal(got, want) {
			t.Fatalf("stream = %v, want %v", got, want)
		}
		crashed := decode[ipa.PodCrashedData](t, evs[1])
		if crashed.PID != first.PID || crashed.Signal != "SIGKILL" || evs[1].CausationID != evs[0].ID || evs[1].ActorID != eventlog.SystemActor {
			t.Fatalf("pod_crashed = %+v (causation %q, actor %q)", crashed, evs[1].CausationID, evs[1].ActorID)
		}
		if sched := decode[ipa.PodRestartScheduledData](t, evs[2]); sched.Attempt != 1 || evs[2].CausationID != evs[1].ID {
			t.Fatalf("pod_restart_scheduled = %+v (causation %q, want %q)", sched, evs[2].CausationID, evs[1].ID)
		}
		if started := decode[ipa.PodStartedData](t, evs[3]); started.Attempt != 2 || started.Trigger != "restart" ||
			started.PID != second.PID || evs[3].CausationID != evs[2].ID {
			t.Fatalf("pod_started = %+v (causation %q)", started, evs[3].CausationID)
		}
		if second.Restarts != 1 {
			t.Fatalf("restarts after the outage = %d, want 1", second.Restarts)
		}
		if got := testutil.ToFloat64(s.m.dropped.WithLabelValues("rejected")) + testutil.ToFloat64(s.m.dropped.WithLabelValues("outbox_full")); got != 0 {
			t.Fatalf("%v pod events dropped", got)
		}

		// The outage spent no attempt: two more crashes restart, the fourth
		// in the window reaches the limit.
		w.crash(t, s, task.ID, 2)
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 3)
		w.crash(t, s, task.ID, 3)
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 4)
		w.crash(t, s, task.ID, 4)
		w.waitEvents(t, task.ID, ipa.EventPodRestartLimitReached, 1)
		waitState(t, s, task.ID, ipa.PodFailed)
		if n := len(w.waitEvents(t, task.ID, ipa.EventPodCrashed, 4)); n != 4 {
			t.Fatalf("%d crashes recorded, want 4", n)
		}
	})
}

// A server restart in the middle of a crash loop forgets nothing: the new
// supervisor reads the window's crashes and restarts back from the stream,
// shows them, and reaches the limit at the same crash as if the server had
// never restarted.
func TestRestartHistorySurvivesServerRestart(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		w := newDBWorld(t, backend)
		b := setup(t, w.config(nil))
		task := w.createTask(t, crashLoopPolicy)
		mustStart(t, b.sup, task)
		w.crash(t, b.sup, task.ID, 1)
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 2)
		w.crash(t, b.sup, task.ID, 2)
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 3)
		pid := waitState(t, b.sup, task.ID, ipa.PodRunning).PID
		if r := b.sup.Status(task.ID).Restarts; r != 2 {
			t.Fatalf("restarts before the server restart = %d", r)
		}

		// The server dies; its plugin and lease live on. A new supervisor on
		// the same database takes over.
		b.sup.abandon()
		s2 := newStarted(t, b.cfg)
		cur, err := w.db.st().GetTask(context.Background(), task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Reconcile(context.Background(), []ReconcileTarget{{Task: cur}}); err != nil {
			t.Fatal(err)
		}
		w.waitEvents(t, task.ID, ipa.EventPodReattached, 1)
		st := s2.Status(task.ID)
		if st.State != ipa.PodRunning || st.PID != pid || st.Restarts != 2 {
			t.Fatalf("status after the server restart: %+v, want RUNNING pid %d with 2 restarts", st, pid)
		}

		// Third crash: the last restart the window allows.
		w.crash(t, s2, task.ID, 3)
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 4)
		if r := waitState(t, s2, task.ID, ipa.PodRunning).Restarts; r != 3 {
			t.Fatalf("restarts = %d, want 3", r)
		}
		// Fourth crash: the limit, as without the server restart.
		w.crash(t, s2, task.ID, 4)
		lim := decode[ipa.PodRestartLimitReachedData](t, w.waitEvents(t, task.ID, ipa.EventPodRestartLimitReached, 1)[0])
		if lim.MaxAttempts != 3 {
			t.Fatalf("limit = %+v", lim)
		}
		waitState(t, s2, task.ID, ipa.PodFailed)
		if got := eventTypes(w.podEvents(t, task.ID)); slices.Index(got, ipa.EventPodRestartLimitReached) != len(got)-1 ||
			len(w.waitEvents(t, task.ID, ipa.EventPodStarted, 4)) != 4 {
			t.Fatalf("stream = %v", got)
		}
	})
}

// The outbox is bounded: past OutboxLimit the newest fact is dropped and
// counted (the older ones keep their order), and what still waits when the
// server shuts down with the database unreachable is dropped and counted too.
func TestOutboxBound(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		w := newDBWorld(t, backend)
		b := setup(t, w.config(func(c *Config) { c.OutboxLimit = 1 }))
		s := b.sup
		task := w.createTask(t, crashLoopPolicy)
		first := mustStart(t, s, task)
		dropped := func(reason string) float64 { return testutil.ToFloat64(s.m.dropped.WithLabelValues(reason)) }

		end := w.outage(t)
		if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod_restart_scheduled dropped", func() bool { return dropped("outbox_full") == 1 })
		if p := testutil.ToFloat64(s.m.pending); p != 1 {
			t.Fatalf("pending = %v, want 1", p)
		}
		end()
		w.waitEvents(t, task.ID, ipa.EventPodStarted, 2)
		want := []string{ipa.EventPodStarted, ipa.EventPodCrashed, ipa.EventPodStarted}
		if got := eventTypes(w.podEvents(t, task.ID)); !slices.Equal(got, want) {
			t.Fatalf("stream = %v, want %v", got, want)
		}

		// Shutdown during an outage: nothing waits forever.
		second := waitState(t, s, task.ID, ipa.PodRunning)
		end = w.outage(t)
		if err := syscall.Kill(second.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the second crash kept", func() bool { return testutil.ToFloat64(s.m.pending) == 1 && dropped("outbox_full") >= 2 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if dropped("shutdown") != 1 || testutil.ToFloat64(s.m.pending) != 0 {
			t.Fatalf("after shutdown: dropped %v, pending %v", dropped("shutdown"), testutil.ToFloat64(s.m.pending))
		}
		end()
	})
}
