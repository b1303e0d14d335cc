package main

// Scheduling with the real binary and real plugin processes: concurrency
// limits hold on one server and across several on one PostgreSQL database,
// queued pods start in priority order as slots free, and every queued pod
// runs exactly once, also when servers are killed.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type queuedView struct {
	ID  string
	Pod struct {
		State         string
		QueuePosition *int
	}
}

func (s *server) queued(t testing.TB, id string) queuedView {
	t.Helper()
	var out struct{ Task queuedView }
	s.must(t, `query($id: ID!) { task(id: $id) { id pod { state queuePosition } } }`, map[string]any{"id": id}, &out)
	return out.Task
}

func (s *server) setLimit(t testing.TB, key string, limit any) {
	t.Helper()
	s.must(t, `mutation($k: String!, $l: Int) { setConcurrencyLimit(key: $k, limit: $l) { key limit } }`, map[string]any{"k": key, "l": limit}, nil)
}

func (s *server) complete(t testing.TB, id string) {
	t.Helper()
	s.must(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
}

// TestSchedulingOneServer: a global limit of 2 on one server (SQLite): the
// third start and later queue with their positions, the highest priority
// first; completing a running task starts the head of the queue; a stop
// takes a pod out of the queue; bad keys and limits are refused; removing
// the limit starts the rest.
func TestSchedulingOneServer(t *testing.T) {
	h := newHome(t)
	s := h.start()
	one := &cluster{t: t, homes: map[string]*home{"S": h}}
	s.mustFail(t, `mutation { setConcurrencyLimit(key: "nonsense", limit: 1) { key } }`, nil, "BAD_USER_INPUT", "INVALID_LIMIT_KEY")
	s.mustFail(t, `mutation { setConcurrencyLimit(key: "global", limit: -1) { key } }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	s.setLimit(t, "global", 2)

	ids := make([]string, 5)
	for i := range ids {
		in := map[string]any{"title": fmt.Sprintf("q%d", i), "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)}
		if i == 4 {
			in["priority"] = 10
		}
		ids[i] = s.createTask(t, in)
	}
	for i, id := range ids {
		started, tv := s.startPod(t, id)
		if i < 2 {
			if !started {
				t.Fatalf("start %d: not started (pod %s)", i, tv.Pod.State)
			}
			continue
		}
		if started || tv.Pod.State != "QUEUED" {
			t.Fatalf("start %d beyond the limit: started %v, pod %s; want QUEUED", i, started, tv.Pod.State)
		}
	}
	// Queue order: priority 10 first, then oldest first.
	for id, want := range map[string]int{ids[4]: 1, ids[2]: 2, ids[3]: 3} {
		q := s.queued(t, id)
		if q.Pod.State != "QUEUED" || q.Pod.QueuePosition == nil || *q.Pod.QueuePosition != want {
			t.Fatalf("task %s: %+v, want QUEUED at %d", id, q, want)
		}
	}
	if ev := s.events(t, ids[2], "pod_queued"); len(ev) != 1 || dataField[[]string](t, ev[0], "limits")[0] != "global" {
		t.Fatalf("pod_queued events %+v", ev)
	}
	var filtered struct {
		Tasks struct{ TotalCount int }
	}
	s.must(t, `{ tasks(filter: {podState: [QUEUED]}) { totalCount } }`, nil, &filtered)
	if filtered.Tasks.TotalCount != 3 {
		t.Fatalf("tasks(podState: QUEUED) totalCount %d, want 3", filtered.Tasks.TotalCount)
	}
	if n := len(one.plugins("S")); n != 2 {
		t.Fatalf("%d plugin processes, want 2", n)
	}
	if out := s.on(t, "", 0, "get", ids[4]).stdout; !strings.Contains(out, "position 1") || !strings.Contains(out, "PRIORITY") {
		t.Fatalf("ipa task get of a queued task does not show its place:\n%s", out)
	}

	// A freed slot goes to the head of the queue.
	s.complete(t, ids[0])
	s.waitPod(t, ids[4], "RUNNING", "ACTIVE", 0, 20*time.Second)
	if v := s.metricValue(t, "ipa_pod_queue_wait_seconds_count"); v != "1" {
		t.Fatalf("ipa_pod_queue_wait_seconds_count = %q, want 1 (one queued pod started)", v)
	}
	if q := s.queued(t, ids[2]); q.Pod.QueuePosition == nil || *q.Pod.QueuePosition != 1 {
		t.Fatalf("after one start, %+v: want position 1", q)
	}
	// A stop takes a queued pod out of the queue.
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": ids[3]}, nil)
	if q := s.queued(t, ids[3]); q.Pod.State != "STOPPED" || q.Pod.QueuePosition != nil {
		t.Fatalf("stopped queued pod: %+v", q)
	}
	if n := len(one.plugins("S")); n != 2 {
		t.Fatalf("%d plugin processes, want 2", n)
	}
	var limits struct {
		ConcurrencyLimits []struct {
			Key     string
			Limit   int
			Running int
			Queued  int
		}
	}
	s.must(t, `{ concurrencyLimits { key limit running queued } }`, nil, &limits)
	if l := limits.ConcurrencyLimits; len(l) != 1 || l[0].Key != "global" || l[0].Limit != 2 || l[0].Running != 2 || l[0].Queued != 1 {
		t.Fatalf("concurrencyLimits %+v", l)
	}
	if v := s.metricValue(t, "ipa_pods_queued"); v != "1" {
		t.Fatalf("ipa_pods_queued = %q, want 1", v)
	}

	// Removing the limit starts what still waits.
	s.setLimit(t, "global", nil)
	s.waitPod(t, ids[2], "RUNNING", "ACTIVE", 0, 20*time.Second)
	if q := s.queued(t, ids[3]); q.Pod.State != "STOPPED" {
		t.Fatalf("the stopped pod started: %+v", q)
	}
}

// TestSchedulingAcrossInstances: three servers on one PostgreSQL database
// under one global limit and one label limit; pods are started through all
// of them while tasks are completed (freeing slots) and two servers are
// killed with SIGKILL (one restarted). At no sampled moment do the live
// plugin processes, nor the slots in the store, exceed a limit; every task
// runs exactly once (one pod_started) and is completed, or is lost with a
// killed server after it ran (settled CRASHED by pod_lost, its default
// policy restarting nothing). A queued pod whose granted start a kill cut
// short queues again and runs once.
//
// It runs 60 pods by default (well under two minutes on a loaded two-core
// machine); IPA_SCHED_CLUSTER=1 runs 200 (IPA_SCHED_PODS sets another
// number), which takes minutes.
func TestSchedulingAcrossInstances(t *testing.T) {
	n := 60
	if os.Getenv("IPA_SCHED_CLUSTER") == "1" {
		n = 200
	}
	if v, err := strconv.Atoi(os.Getenv("IPA_SCHED_PODS")); err == nil && v > 0 {
		n = v
	}
	const global, teamA = 6, 2
	c := newCluster(t)
	// Generous bounds for a loaded machine: the test asserts no duration.
	within := 2*time.Minute + time.Duration(n)*3*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), within+2*time.Minute)
	defer cancel()
	srv := []*server{c.start("A"), c.start("B"), c.start("C")}
	srv[0].setLimit(t, "global", global)
	srv[1].setLimit(t, "label:team=a", teamA)

	ids := make([]string, n)
	team := map[string]bool{}
	for i := range ids {
		in := map[string]any{"title": fmt.Sprintf("sched %d", i), "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)}
		if i%3 == 0 {
			in["labels"] = map[string]any{"team": "a"}
		}
		ids[i] = srv[i%3].createTask(t, in)
		team[ids[i]] = i%3 == 0
	}

	// The watch: live plugin processes per instance, and slots in the store.
	db, err := pgx.Connect(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var worst atomic.Value
	worst.Store("")
	var samples atomic.Int64
	stop := make(chan struct{})
	var watch sync.WaitGroup
	// Deferred after db.Close, so it runs first: the watch ends before its
	// connection closes, also when the test fails early.
	stopWatch := sync.OnceFunc(func() { close(stop); watch.Wait() })
	defer stopWatch()
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			procs := 0
			for _, id := range []string{"A", "B", "C"} {
				procs += len(c.plugins(id))
			}
			var slots, teamSlots int
			if err := db.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM pod_leases) + (SELECT COUNT(*) FROM pod_queue WHERE granted),
				(SELECT COUNT(*) FROM pod_leases l JOIN task_labels tl ON tl.task_id = l.task_id WHERE tl.key = 'team' AND tl.value = 'a') +
				(SELECT COUNT(*) FROM pod_queue q JOIN task_labels tl ON tl.task_id = q.task_id WHERE q.granted AND tl.key = 'team' AND tl.value = 'a')`).Scan(&slots, &teamSlots); err != nil {
				continue
			}
			samples.Add(1)
			if (procs > global || slots > global || teamSlots > teamA) && worst.Load().(string) == "" {
				worst.Store(fmt.Sprintf("%d plugin processes, %d slots, %d team=a slots: limits %d and %d", procs, slots, teamSlots, global, teamA))
			}
		}
	}()

	// Start every pod through the three servers at once.
	live := func() []*server {
		var out []*server
		for _, s := range srv {
			if s != nil {
				out = append(out, s)
			}
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 3 {
				if _, errs := srv[w].do(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": ids[i]}); len(errs) > 0 {
					t.Errorf("startPod %s: %v", ids[i], errs)
				}
			}
		}()
	}
	wg.Wait()

	// Complete running tasks one by one, through any server; kill B after a
	// third, and C after two thirds (C comes back after twice the TTL).
	done := map[string]bool{}
	lost := map[string]bool{}
	killedB, killedC := false, false
	var killedCAt time.Time
	deadline := time.Now().Add(within)
	for len(done)+len(lost) < n {
		if time.Now().After(deadline) {
			var stuck []string
			for _, id := range ids {
				if !done[id] && !lost[id] {
					tv := live()[0].task(t, id)
					stuck = append(stuck, fmt.Sprintf("%s %s/%s lease %+v", id, tv.Status, tv.Pod.State, c.leases(ctx)[id]))
				}
			}
			t.Fatalf("only %d of %d tasks completed (%d lost with their server); not settled: %v", len(done), n, len(lost), stuck)
		}
		if !killedB && len(done) >= n/3 {
			killedB = true
			srv[1].crash(t)
			srv[1] = nil
		}
		if !killedC && len(done) >= 2*n/3 {
			killedC = true
			srv[2].crash(t)
			srv[2] = nil
			killedCAt = time.Now()
		}
		// C comes back once the others took its pods over.
		if killedC && srv[2] == nil && time.Since(killedCAt) > 2*testTTL {
			srv[2] = c.homes["C"].start()
		}
		ls := c.leases(ctx)
		progressed := false
		for id, l := range ls {
			if done[id] || lost[id] || l.PID == 0 {
				continue
			}
			ss := live()
			s := ss[rand.IntN(len(ss))]
			// Only a pod whose start is recorded (its task ACTIVE): one
			// completed while it launches never runs, rightly.
			if s.task(t, id).Status != "ACTIVE" {
				continue
			}
			if _, errs := s.do(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": id}); len(errs) > 0 {
				continue // e.g. its owner was just killed: tried again
			}
			done[id] = true
			progressed = true
			break
		}
		// A pod lost with a killed server crashed for good (no restart
		// policy): it ran once and is settled; it gave its slot back.
		ss := live()
		for _, id := range ids {
			if done[id] || lost[id] {
				continue
			}
			if _, ok := ls[id]; ok {
				continue
			}
			if tv := ss[0].task(t, id); tv.Pod.State == "CRASHED" {
				lost[id] = true
			}
		}
		if !progressed {
			time.Sleep(50 * time.Millisecond)
		}
	}
	stopWatch()
	if w := worst.Load().(string); w != "" {
		t.Fatal(w)
	}
	if samples.Load() < 20 {
		t.Fatalf("only %d samples: the watch proves nothing", samples.Load())
	}
	// Every pod ran exactly once, also one whose start a kill cut short
	// (it queued again); one lost with its server had run.
	s := live()[0]
	queuedSeen := 0
	for _, id := range ids {
		starts := s.events(t, id, "pod_started")
		if len(starts) != 1 {
			t.Fatalf("task %s (team a %v, lost with its server %v) started %d times", id, team[id], lost[id], len(starts))
		}
		queuedSeen += len(s.events(t, id, "pod_queued"))
	}
	if queuedSeen < n-global-3 {
		t.Fatalf("only %d pods were queued: the limits were not in the way", queuedSeen)
	}
	t.Logf("%d pods, %d queued, %d completed, %d lost with their server, %d samples", n, queuedSeen, len(done), len(lost), samples.Load())
}

// metricValue reads one unlabelled sample of /metrics ("" when absent).
func (s *server) metricValue(t testing.TB, name string) string {
	t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type depView struct {
	ID         string
	Status     string
	Pod        struct{ State string }
	WaitingFor []struct{ ID string }
}

func (s *server) dep(t testing.TB, id string) depView {
	t.Helper()
	var out struct{ Task depView }
	s.must(t, `query($id: ID!) { task(id: $id) { id status pod { state } waitingFor { id } } }`, map[string]any{"id": id}, &out)
	return out.Task
}

// TestSchedulingDependencies: a diamond (b and c depend on a, d on b and c)
// started all at once runs a, then b and c, then d, each only when all it
// depends on completed; what a task waits for is shown; a cycle and a
// dependency on itself are refused; cancelling a dependency cancels its
// dependents with reason "dependency cancelled".
func TestSchedulingDependencies(t *testing.T) {
	h := newHome(t)
	s := h.start()
	mk := func(title string, deps ...string) string {
		in := map[string]any{"title": title, "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)}
		if len(deps) > 0 {
			in["dependsOn"] = deps
		}
		return s.createTask(t, in)
	}
	a := mk("a")
	b, c := mk("b", a), mk("c", a)
	d := mk("d", b, c)
	for _, id := range []string{d, c, b, a} {
		s.startPod(t, id)
	}
	s.waitPod(t, a, "RUNNING", "ACTIVE", 0, 20*time.Second)
	for _, id := range []string{b, c, d} {
		if v := s.dep(t, id); v.Pod.State != "WAITING" {
			t.Fatalf("task %s: pod %s, want WAITING", id, v.Pod.State)
		}
	}
	if v := s.dep(t, d); len(v.WaitingFor) != 2 || v.WaitingFor[0].ID != b || v.WaitingFor[1].ID != c {
		t.Fatalf("d waits for %+v, want b and c", v.WaitingFor)
	}
	if ev := s.events(t, d, "pod_waiting"); len(ev) != 1 {
		t.Fatalf("d's pod_waiting events: %+v", ev)
	}
	if out := s.on(t, "", 0, "get", d).stdout; !strings.Contains(out, "WAITS FOR") || !strings.Contains(out, b) || !strings.Contains(out, c) || !strings.Contains(out, "WAITING") {
		t.Fatalf("ipa task get of d does not say what it waits for:\n%s", out)
	}

	s.complete(t, a)
	s.waitPod(t, b, "RUNNING", "ACTIVE", 0, 20*time.Second)
	s.waitPod(t, c, "RUNNING", "ACTIVE", 0, 20*time.Second)
	s.complete(t, b)
	time.Sleep(1500 * time.Millisecond) // more than one look at the waiting pods
	if v := s.dep(t, d); v.Pod.State != "WAITING" || len(v.WaitingFor) != 1 || v.WaitingFor[0].ID != c {
		t.Fatalf("d with c still running: %+v", v)
	}
	s.complete(t, c)
	s.waitPod(t, d, "RUNNING", "ACTIVE", 0, 20*time.Second)

	// The starts happened in the diamond's order.
	pos := func(id string) int64 {
		ev := s.events(t, id, "pod_started")
		if len(ev) != 1 {
			t.Fatalf("task %s started %d times", id, len(ev))
		}
		var out struct {
			Task struct {
				Events struct {
					Edges []struct{ Node struct{ Position string } }
				}
			}
		}
		s.must(t, `query($id: ID!) { task(id: $id) { events(first: 1, types: ["pod_started"]) { edges { node { position } } } } }`, map[string]any{"id": id}, &out)
		p, _ := strconv.ParseInt(out.Task.Events.Edges[0].Node.Position, 10, 64)
		return p
	}
	if pa, pb, pc, pd := pos(a), pos(b), pos(c), pos(d); !(pa < pb && pa < pc && pb < pd && pc < pd) {
		t.Fatalf("start positions a %d b %d c %d d %d", pa, pb, pc, pd)
	}

	// Cycles are refused.
	x := mk("x")
	y := mk("y", x)
	z := mk("z", y)
	s.mustFail(t, `mutation($id: ID!, $d: [ID!]) { updateTask(taskId: $id, input: {dependsOn: $d}) { task { id } } }`,
		map[string]any{"id": x, "d": []string{z}}, "BAD_USER_INPUT", "DEPENDENCY_CYCLE")
	s.mustFail(t, `mutation($id: ID!, $d: [ID!]) { updateTask(taskId: $id, input: {dependsOn: $d}) { task { id } } }`,
		map[string]any{"id": x, "d": []string{x}}, "BAD_USER_INPUT", "DEPENDENCY_CYCLE")

	// A cancelled dependency cancels its dependents, down the chain.
	s.startPod(t, z)
	s.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "not needed") { task { id } } }`, map[string]any{"id": x}, nil)
	for _, id := range []string{y, z} {
		eventually(t, 10*time.Second, func() string {
			if v := s.dep(t, id); v.Status != "CANCELLED" {
				return fmt.Sprintf("task %s %s, want CANCELLED", id, v.Status)
			}
			return ""
		})
		ev := s.events(t, id, "task_cancelled")
		if len(ev) != 1 || dataField[string](t, ev[0], "reason") != "dependency cancelled" {
			t.Fatalf("task %s task_cancelled %+v", id, ev)
		}
	}
}

// TestSchedulingLatency measures (IPA_SCHED_PERF=1) the time from a slot
// freeing (the running pod's pod_stopped) to the next queued pod's
// pod_started, both stamped by the servers, under a global limit of 1: on
// one server (SQLite) and across three on PostgreSQL, the starts received
// by the three in turn. It prints p50 and p99; it asserts nothing about
// durations.
func TestSchedulingLatency(t *testing.T) {
	if os.Getenv("IPA_SCHED_PERF") != "1" {
		t.Skip("set IPA_SCHED_PERF=1 to measure")
	}
	const n = 41
	run := func(t *testing.T, srv []*server) {
		s0 := srv[0]
		s0.setLimit(t, "global", 1)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = srv[i%len(srv)].createTask(t, map[string]any{"title": fmt.Sprintf("lat %d", i), "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
			srv[i%len(srv)].startPod(t, ids[i])
		}
		order := []string{}
		for len(order) < n {
			var running string
			eventually(t, 30*time.Second, func() string {
				for _, id := range ids {
					if slices.Contains(order, id) {
						continue
					}
					if s0.task(t, id).Pod.State == "RUNNING" {
						running = id
						return ""
					}
				}
				return "no pod running"
			})
			order = append(order, running)
			s0.complete(t, running)
		}
		at := func(id, typ string) time.Time {
			ev := s0.events(t, id, typ)
			if len(ev) != 1 {
				t.Fatalf("task %s: %d %s", id, len(ev), typ)
			}
			ts, err := time.Parse(time.RFC3339Nano, ev[0].OccurredAt)
			if err != nil {
				t.Fatal(err)
			}
			return ts
		}
		var lat []time.Duration
		for k := 1; k < n; k++ {
			lat = append(lat, at(order[k], "pod_started").Sub(at(order[k-1], "pod_stopped")))
		}
		slices.Sort(lat)
		p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
		t.Logf("slot freed → next queued pod started, %d hand-overs: p50 %s, p99 %s, max %s", len(lat), p(0.5), p(0.99), lat[len(lat)-1])
	}
	t.Run("one", func(t *testing.T) {
		run(t, []*server{newHome(t).start()})
	})
	t.Run("three", func(t *testing.T) {
		c := newCluster(t)
		run(t, []*server{c.start("A"), c.start("B"), c.start("C")})
	})
}

// TestSchedulingRestartKeepsSlot: under a global limit of 1, a pod that
// crashes and is restarted by its policy keeps its slot through the
// back-off: the queued pod behind it does not start, and the restart does
// not queue.
func TestSchedulingRestartKeepsSlot(t *testing.T) {
	h := newHome(t)
	s := h.start()
	s.setLimit(t, "global", 1)
	in := autoRestartTask("restarts")
	in["restartPolicy"] = map[string]any{"autoRestart": true, "maxAttempts": 10, "windowSeconds": 600, "initialBackoffMs": 1500, "maxBackoffMs": 1500}
	r := s.createTask(t, in)
	first := s.waitPod(t, r, "RUNNING", "ACTIVE", 0, 20*time.Second)
	q := s.createTask(t, map[string]any{"title": "behind", "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	if started, tv := s.startPod(t, q); started || tv.Pod.State != "QUEUED" {
		t.Fatalf("start beyond the limit: started %v, pod %s", started, tv.Pod.State)
	}
	if err := syscall.Kill(first.Pod.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitPod(t, r, "BACKOFF", "", 0, 10*time.Second)
	if v := s.queued(t, q); v.Pod.State != "QUEUED" {
		t.Fatalf("during the back-off the queued pod is %s: the slot was given away", v.Pod.State)
	}
	s.waitPod(t, r, "RUNNING", "ACTIVE", first.Pod.PID, 20*time.Second)
	if ev := s.events(t, r, "pod_queued"); len(ev) != 0 {
		t.Fatalf("the restart queued: %+v", ev)
	}
	time.Sleep(1500 * time.Millisecond) // more than one look at the queue
	if v := s.queued(t, q); v.Pod.State != "QUEUED" || v.Pod.QueuePosition == nil || *v.Pod.QueuePosition != 1 {
		t.Fatalf("after the restart the queued pod is %+v", v)
	}
	s.complete(t, r)
	s.waitPod(t, q, "RUNNING", "ACTIVE", 0, 20*time.Second)
}
