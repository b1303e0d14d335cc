package store

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestScheduling: concurrency limits, the queue and its order, on every
// dialect.
func TestScheduling(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for name, fn := range map[string]func(*testing.T, *Store){
				"LimitsAndQueue":      testLimitsAndQueue,
				"LabelAndRuntimeKeys": testLimitKeys,
				"DeadReceiver":        testDeadReceiver,
				"ConcurrentAdmits":    testConcurrentAdmits,
				"ReprojectQueued":     testReprojectQueued,
				"PriorityMovesQueue":  testPriorityMovesQueue,
				"RequeueLease":        testRequeueLease,
				"RequeueOrphans":      testRequeueOrphans,
			} {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					fn(t, d.open(t))
				})
			}
		})
	}
}

func limit(n int) *int { return &n }

func withPriority(p int) taskOpt {
	return func(r *ipa.CreateTaskRequest) { r.Created.Priority = p }
}

func admit(t *testing.T, s *Store, task *ipa.Task, instance string) (ipa.Admission, []string, int) {
	t.Helper()
	adm, blocking, pos, err := s.Admit(context.Background(), task, instance, ipa.TriggerManual, time.Now())
	require.NoError(t, err)
	return adm, blocking, pos
}

// testLimitsAndQueue: starts beyond the global limit queue, in priority
// order then oldest first; a lease takes a granted slot over; a freed slot
// goes to the head of the queue.
func testLimitsAndQueue(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(2), now)
	require.NoError(t, err)

	a, b, c, d := createTask(t, s, "a", t0), createTask(t, s, "b", t0), createTask(t, s, "c", t0), createTask(t, s, "d", t0)
	hi := createTask(t, s, "hi", t0, withPriority(5))
	adm, _, _ := admit(t, s, a, "me")
	require.Equal(t, ipa.Admitted, adm)
	adm, _, _ = admit(t, s, b, "me")
	require.Equal(t, ipa.Admitted, adm)
	adm, blocking, pos := admit(t, s, c, "me")
	require.Equal(t, ipa.Queued, adm)
	assert.Equal(t, []string{ipa.LimitGlobal}, blocking)
	assert.Equal(t, 1, pos)
	adm, _, _ = admit(t, s, c, "me")
	assert.Equal(t, ipa.AlreadyQueued, adm, "a second start of a queued pod changes nothing")

	// a's pod starts: its lease takes its slot over, still two held.
	require.NoError(t, s.SaveLease(ctx, "me", a.ID, []byte(`{}`), now))
	adm, _, pos = admit(t, s, d, "me")
	require.Equal(t, ipa.Queued, adm)
	assert.Equal(t, 2, pos)
	adm, _, pos = admit(t, s, hi, "me")
	require.Equal(t, ipa.Queued, adm)
	assert.Equal(t, 1, pos, "a higher priority goes ahead of older pods")
	p, err := s.QueuePosition(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, p)

	ls, err := s.ConcurrencyLimits(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, 2, ls[0].Running)
	assert.Equal(t, 3, ls[0].Queued)

	// Nothing frees: a dispatch grants nothing.
	grants, err := s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
	require.NoError(t, err)
	assert.Empty(t, grants)

	// a's pod ends: the slot goes to the head of the queue.
	require.NoError(t, s.DeleteLease(ctx, "me", a.ID))
	grants, err = s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, hi.ID, grants[0].TaskID)
	mine, err := s.Grants(ctx, "me")
	require.NoError(t, err)
	assert.Len(t, mine, 2, "b's and hi's slots wait for their starts")

	// A failed start gives its slot back; the next in line (c, older than d) gets it.
	released, err := s.ReleaseGrant(ctx, hi.ID)
	require.NoError(t, err)
	require.True(t, released)
	grants, err = s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, c.ID, grants[0].TaskID)

	// Raising the limit lets the rest through; a queued pod can be taken out.
	ok, err := s.Dequeue(ctx, d.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	_, err = s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(10), now)
	require.NoError(t, err)
	grants, err = s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
	require.NoError(t, err)
	assert.Empty(t, grants, "d left the queue")
	n, err := s.QueuedCount(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)

	// Removing the limit: nothing covers a start any more.
	_, err = s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, nil, now)
	require.NoError(t, err)
	ls, err = s.ConcurrencyLimits(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls)
	adm, _, _ = admit(t, s, d, "me")
	assert.Equal(t, ipa.Admitted, adm)
}

// testLimitKeys: a label limit holds back only the tasks with that label; a
// runtime limit only that runtime's; a blocked pod does not hold back one
// behind it that fits.
func testLimitKeys(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	_, err := s.SetConcurrencyLimit(ctx, "label:team=a", limit(1), now)
	require.NoError(t, err)
	_, err = s.SetConcurrencyLimit(ctx, "runtime:exec", limit(0), now)
	require.NoError(t, err)

	a1 := createTask(t, s, "a1", t0, withLabels(ipa.Labels{"team": "a"}))
	a2 := createTask(t, s, "a2", t0, withLabels(ipa.Labels{"team": "a"}), withPriority(9))
	b1 := createTask(t, s, "b1", t0, withLabels(ipa.Labels{"team": "b"}))
	ex := createTask(t, s, "ex", t0, func(r *ipa.CreateTaskRequest) { r.Created.Runtime = "exec" })

	adm, _, _ := admit(t, s, a1, "me")
	require.Equal(t, ipa.Admitted, adm)
	require.NoError(t, s.SaveLease(ctx, "me", a1.ID, []byte(`{}`), now))
	adm, blocking, _ := admit(t, s, a2, "me")
	require.Equal(t, ipa.Queued, adm)
	assert.Equal(t, []string{"label:team=a"}, blocking)
	adm, _, _ = admit(t, s, b1, "me")
	assert.Equal(t, ipa.Admitted, adm, "another label value is not covered")
	adm, blocking, _ = admit(t, s, ex, "me")
	require.Equal(t, ipa.Queued, adm)
	assert.Equal(t, []string{"runtime:exec"}, blocking)

	// Opening exec lets ex through although a2, ahead of it, still waits.
	_, err = s.SetConcurrencyLimit(ctx, "runtime:exec", limit(1), now)
	require.NoError(t, err)
	grants, err := s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, ex.ID, grants[0].TaskID)
}

// testDeadReceiver: a queued pod whose receiving instance died is granted
// to the dispatching one; so is a slot granted to it and never started. A
// live receiver keeps its grant. A closed task leaves the queue.
func testDeadReceiver(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, s.RegisterInstance(ctx, ipa.Instance{ID: "alive", Version: "t", StartedAt: now}))
	require.NoError(t, s.RegisterInstance(ctx, ipa.Instance{ID: "dead", Version: "t", StartedAt: now}))
	dbNow, err := s.Now(ctx)
	require.NoError(t, err)
	require.NoError(t, s.write.Exec(`UPDATE instances SET heartbeat_at = ? WHERE id = 'dead'`, nanos(dbNow.Add(-time.Hour))).Error)
	cutoff := dbNow.Add(-time.Minute)

	_, err = s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(1), now)
	require.NoError(t, err)
	first := createTask(t, s, "first", t0)
	adm, _, _ := admit(t, s, first, "dead")
	require.Equal(t, ipa.Admitted, adm) // granted to dead, never started
	q1, q2, closed := createTask(t, s, "q1", t0), createTask(t, s, "q2", t0), createTask(t, s, "closed", t0, withPriority(100))
	for _, q := range []*ipa.Task{closed, q1} {
		adm, _, _ = admit(t, s, q, "dead")
		require.Equal(t, ipa.Queued, adm)
	}
	adm, _, _ = admit(t, s, q2, "alive")
	require.Equal(t, ipa.Queued, adm)
	closeTask(t, s, closed.ID, t0.Add(time.Second), true)

	grants, err := s.Dispatch(ctx, "me", cutoff, dbNow)
	require.NoError(t, err)
	require.Len(t, grants, 1, "the dead instance's grant moves here; the limit is still full")
	assert.Equal(t, Grant{TaskID: first.ID, InstanceID: "me", Trigger: ipa.TriggerManual}, grants[0])
	p, err := s.QueuePosition(ctx, closed.ID)
	require.NoError(t, err)
	assert.Zero(t, p, "a closed task left the queue")

	require.NoError(t, s.SaveLease(ctx, "me", first.ID, []byte(`{}`), now))
	require.NoError(t, s.DeleteLease(ctx, "me", first.ID))
	grants, err = s.Dispatch(ctx, "me", cutoff, dbNow)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, q1.ID, grants[0].TaskID)
	assert.Equal(t, "me", grants[0].InstanceID, "received by a dead instance: started here")

	require.NoError(t, s.SaveLease(ctx, "me", q1.ID, []byte(`{}`), now))
	require.NoError(t, s.DeleteLease(ctx, "me", q1.ID))
	grants, err = s.Dispatch(ctx, "me", cutoff, dbNow)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, Grant{TaskID: q2.ID, InstanceID: "alive", Trigger: ipa.TriggerManual}, grants[0], "a live receiver starts its own pod")
}

// testConcurrentAdmits: many starts at once never hold more slots than the
// limit.
func testConcurrentAdmits(t *testing.T, s *Store) {
	ctx := context.Background()
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(3), time.Now())
	require.NoError(t, err)
	const n = 24
	tasks := make([]*ipa.Task, n)
	for i := range tasks {
		tasks[i] = createTask(t, s, "c", t0)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			adm, _, _, err := s.Admit(ctx, tasks[i], []string{"x", "y", "z"}[i%3], ipa.TriggerManual, time.Now())
			assert.NoError(t, err)
			if adm == ipa.Admitted {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 3, admitted)
	q, err := s.QueuedCount(ctx)
	require.NoError(t, err)
	assert.Equal(t, n-3, q)
}

// testReprojectQueued: pod_queued and priority fold the same way live and
// in a reproject.
func testReprojectQueued(t *testing.T, s *Store) {
	ctx := context.Background()
	task := createTask(t, s, "q", t0, withPriority(3))
	data, _ := json.Marshal(ipa.PodQueuedData{Trigger: ipa.TriggerManual, Limits: []string{ipa.LimitGlobal}, Position: 1})
	_, err := s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Actor: "bob", Now: t0.Add(time.Second),
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
			p := 7
			return []ipa.NewEvent{{Type: ipa.EventPodQueued, Data: json.RawMessage(data)}, {Type: ipa.EventTaskUpdated, Data: ipa.TaskUpdatedData{Priority: &p}}}, nil
		}})
	require.NoError(t, err)
	got, err := s.GetTask(ctx, task.ID)
	require.NoError(t, err)
	assert.Equal(t, ipa.PodQueued, got.PodState)
	assert.Equal(t, 7, got.Priority)
	page, err := s.FindTasks(ctx, ipa.TaskQuery{Filter: ipa.TaskFilter{PodStates: []ipa.PodState{ipa.PodQueued}}, Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1, "the queued state is in the projection: filters see it")
	require.NoError(t, s.write.Exec(`UPDATE tasks SET pod_state = 'STOPPED', priority = 0 WHERE id = ?`, task.ID).Error)
	changed, err := s.Reproject(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, 1, changed)
	again, err := s.GetTask(ctx, task.ID)
	require.NoError(t, err)
	assertSameTask(t, got, again)
}

// testPriorityMovesQueue: a task's new priority (task_updated) moves its
// queued pod in the queue.
func testPriorityMovesQueue(t *testing.T, s *Store) {
	ctx := context.Background()
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(0), time.Now())
	require.NoError(t, err)
	a, b := createTask(t, s, "a", t0), createTask(t, s, "b", t0)
	for _, task := range []*ipa.Task{a, b} {
		adm, _, _ := admit(t, s, task, "me")
		require.Equal(t, ipa.Queued, adm)
	}
	p, err := s.QueuePosition(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, 2, p)
	_, err = s.Append(ctx, ipa.AppendRequest{TaskID: b.ID, ExpectedVersion: ipa.AnyVersion, Actor: "bob", Now: t0.Add(time.Second),
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
			p := 1
			return []ipa.NewEvent{{Type: ipa.EventTaskUpdated, Data: ipa.TaskUpdatedData{Priority: &p}}}, nil
		}})
	require.NoError(t, err)
	p, err = s.QueuePosition(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, p, "a higher priority moves the queued pod ahead")
	ids, err := s.QueuedTasks(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{b.ID, a.ID}, ids)
}

// testRequeueLease: a QUEUED pod whose granted start never got recorded (its
// lease took the granted slot over) goes back to the queue, at the place and
// with the trigger of its pod_queued, in place of its owner's lease; a lease
// of another owner, or of a pod in any other state, is left alone.
func testRequeueLease(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(1), now)
	require.NoError(t, err)
	run, q := createTask(t, s, "run", t0), createTask(t, s, "q", t0)
	adm, _, _ := admit(t, s, run, "me")
	require.Equal(t, ipa.Admitted, adm)
	require.NoError(t, s.SaveLease(ctx, "me", run.ID, []byte(`{}`), now))
	adm, _, _, err = s.Admit(ctx, q, "me", ipa.TriggerAutoStart, now)
	require.NoError(t, err)
	require.Equal(t, ipa.Queued, adm)
	queuedAt := t0.Add(time.Minute)
	_, err = s.Append(ctx, ipa.AppendRequest{TaskID: q.ID, ExpectedVersion: ipa.AnyVersion, Actor: "bob", Now: queuedAt,
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
			return []ipa.NewEvent{{Type: ipa.EventPodQueued, Data: ipa.PodQueuedData{Trigger: ipa.TriggerAutoStart, Limits: []string{ipa.LimitGlobal}, Position: 1}}}, nil
		}})
	require.NoError(t, err)
	// The slot frees, q is granted it, and its start's lease takes it over.
	require.NoError(t, s.DeleteLease(ctx, "me", run.ID))
	grants, err := s.Dispatch(ctx, "me", now.Add(-time.Minute), now)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	require.NoError(t, s.SaveLease(ctx, "dead", q.ID, []byte(`{}`), now))

	done, err := s.RequeueLease(ctx, "me", q.ID, now)
	require.NoError(t, err)
	assert.False(t, done, "another owner's lease is left alone")
	done, err = s.RequeueLease(ctx, "me", run.ID, now)
	require.NoError(t, err)
	assert.False(t, done, "a pod that is not QUEUED is left alone")

	done, err = s.RequeueLease(ctx, "dead", q.ID, now)
	require.NoError(t, err)
	require.True(t, done)
	owner, _, found, err := s.LeaseOwner(ctx, q.ID)
	require.NoError(t, err)
	assert.False(t, found, "the lease went (owner %q)", owner)
	pos, err := s.QueuePosition(ctx, q.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, pos)
	var row struct {
		Trigger  string
		QueuedAt int64
		Granted  bool
	}
	require.NoError(t, s.read.Raw(`SELECT trigger, queued_at, granted FROM pod_queue WHERE task_id = ?`, q.ID).Scan(&row).Error)
	assert.Equal(t, ipa.TriggerAutoStart, row.Trigger)
	assert.Equal(t, nanos(queuedAt), row.QueuedAt)
	assert.False(t, row.Granted)
	// It is granted the free slot like any queued pod.
	grants, err = s.Dispatch(ctx, "me", now.Add(-time.Minute), now)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, q.ID, grants[0].TaskID)
	assert.Equal(t, ipa.TriggerAutoStart, grants[0].Trigger)
}

// testRequeueOrphans: a QUEUED pod with neither a queue row nor a lease
// queues again once its task is older than the cutoff; a younger one (a
// stop may be writing its end), one with a lease and one still queued are
// left alone.
func testRequeueOrphans(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	queue := func(task *ipa.Task, at time.Time) {
		t.Helper()
		_, err := s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Actor: "bob", Now: at,
			Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				return []ipa.NewEvent{{Type: ipa.EventPodQueued, Data: ipa.PodQueuedData{Trigger: ipa.TriggerManual, Limits: []string{ipa.LimitGlobal}, Position: 1}}}, nil
			}})
		require.NoError(t, err)
	}
	orphan, young, leased, queued := createTask(t, s, "orphan", t0), createTask(t, s, "young", t0), createTask(t, s, "leased", t0), createTask(t, s, "queued", t0)
	queue(orphan, t0.Add(time.Second))
	queue(young, now.Add(3*time.Minute))
	queue(leased, t0.Add(time.Second))
	require.NoError(t, s.SaveLease(ctx, "other", leased.ID, []byte(`{}`), now))
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(0), now)
	require.NoError(t, err)
	adm, _, _, err := s.Admit(ctx, queued, "other", ipa.TriggerManual, now)
	require.NoError(t, err)
	require.Equal(t, ipa.Queued, adm)
	queue(queued, t0.Add(time.Second))

	// Nothing while another instance is alive: it may be between taking a
	// pod's row away and recording why.
	require.NoError(t, s.RegisterInstance(ctx, ipa.Instance{ID: "other", Version: "v", StartedAt: now, HeartbeatAt: now}))
	n, err := s.RequeueOrphans(ctx, "me", now.Add(-time.Minute), now)
	require.NoError(t, err)
	assert.Zero(t, n, "another instance is alive")
	n, err = s.RequeueOrphans(ctx, "me", now.Add(time.Minute), now.Add(2*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	ids, err := s.QueuedTasks(ctx, 10)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{orphan.ID, queued.ID}, ids)
	var inst string
	require.NoError(t, s.read.Raw(`SELECT instance_id FROM pod_queue WHERE task_id = ?`, orphan.ID).Scan(&inst).Error)
	assert.Equal(t, "me", inst)
	n, err = s.RequeueOrphans(ctx, "me", now.Add(time.Minute), now.Add(2*time.Minute))
	require.NoError(t, err)
	assert.Zero(t, n, "once")
}
