package main

// Several `ipa serve` on one PostgreSQL database: real servers, real plugin
// processes, real signals. One test runs the scenarios one after another on
// the same servers, so the cluster and the builds are paid for once.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipa-dev/ipa/internal/dbtest"
)

// Short timings, so a dead instance is noticed in seconds.
const (
	testTTL       = 3 * time.Second
	testHeartbeat = 500 * time.Millisecond
)

// cluster is several servers on one database.
type cluster struct {
	t     testing.TB
	db    string
	homes map[string]*home
	srv   map[string]*server
}

func newCluster(t testing.TB) *cluster {
	return &cluster{t: t, db: dbtest.URL(t, "postgres"), homes: map[string]*home{}, srv: map[string]*server{}}
}

// start runs `ipa serve` as instance id on the cluster's database.
func (c *cluster) start(id string, extra ...string) *server {
	h := newHome(c.t, "--instance-id", id, "--lease-ttl", testTTL.String(), "--heartbeat-interval", testHeartbeat.String())
	h.db = c.db
	c.homes[id] = h
	s := h.start(extra...)
	c.srv[id] = s
	return s
}

// plugins returns the live plugin processes of instance id (the processes
// carrying its tag, other than the server).
func (c *cluster) plugins(id string) []int {
	h := c.homes[id]
	h.mu.Lock()
	servers := slices.Clone(h.servers)
	h.mu.Unlock()
	var out []int
	for _, pid := range taggedPids(h.tag) {
		isServer := false
		for _, s := range servers {
			if s.pid() == pid {
				isServer = true
			}
		}
		if !isServer && ourAlive(pid, h.tag) && procState(pid) != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

type leaseRow struct {
	Owner string
	PID   int
	Epoch int64
}

// leases reads the pod leases straight from the database.
func (c *cluster) leases(ctx context.Context) map[string]leaseRow {
	c.t.Helper()
	conn, err := pgx.Connect(ctx, c.db)
	if err != nil {
		c.t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT task_id::text, owner, COALESCE((lease->>'pid')::int, 0), epoch FROM pod_leases`)
	if err != nil {
		c.t.Fatalf("leases: %v", err)
	}
	out := map[string]leaseRow{}
	for rows.Next() {
		var id string
		var l leaseRow
		if err := rows.Scan(&id, &l.Owner, &l.PID, &l.Epoch); err != nil {
			c.t.Fatal(err)
		}
		out[id] = l
	}
	return out
}

type instanceView struct {
	ID          string
	Address     *string
	Version     string
	StartedAt   string
	HeartbeatAt string
	Alive       bool
	Pods        int
}

func (s *server) instances(t testing.TB) map[string]instanceView {
	t.Helper()
	var out struct{ Instances []instanceView }
	s.must(t, `{ instances { id address version startedAt heartbeatAt alive pods } }`, nil, &out)
	m := map[string]instanceView{}
	for _, in := range out.Instances {
		m[in.ID] = in
	}
	return m
}

func (s *server) podOwner(t testing.TB, id string) string {
	t.Helper()
	var out struct {
		Task struct{ Pod struct{ InstanceID *string } }
	}
	s.must(t, `query($id: ID!) { task(id: $id) { pod { instanceId } } }`, map[string]any{"id": id}, &out)
	if out.Task.Pod.InstanceID == nil {
		return ""
	}
	return *out.Task.Pod.InstanceID
}

// autoRestartTask is a demo task that walks slowly (its runtime writes no
// events during the test) and restarts quickly after a crash or loss.
func autoRestartTask(title string) map[string]any {
	return map[string]any{"title": title, "runtime": "demo", "runtimeConfig": demoConfig(3_600_000), "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 10, "windowSeconds": 600, "initialBackoffMs": 100, "maxBackoffMs": 200}}
}

// waitRunningElsewhere waits until every task's lease names a live instance
// other than not, with a process, and returns the leases.
func (c *cluster) waitRunningElsewhere(ctx context.Context, ids []string, not string, within time.Duration) map[string]leaseRow {
	c.t.Helper()
	var ls map[string]leaseRow
	eventually(c.t, within, func() string {
		ls = c.leases(ctx)
		for _, id := range ids {
			l, ok := ls[id]
			if !ok || l.Owner == not || l.PID == 0 || !alive(l.PID) {
				return fmt.Sprintf("task %s lease %+v (present %v)", id, l, ok)
			}
		}
		return ""
	})
	return ls
}

// doubleRunWatch samples, every few ms until stopped, the plugin processes
// alive on every instance and fails the test when one task has two.
type doubleRunWatch struct {
	c       *cluster
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	worst   string
	samples int
}

func (c *cluster) watchDoubleRuns(ctx context.Context) *doubleRunWatch {
	w := &doubleRunWatch{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	pidTask := map[string]string{} // instance/pid -> task, from every lease seen
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for id, l := range c.leases(ctx) {
				if l.PID > 0 {
					pidTask[fmt.Sprint(l.PID)] = id
				}
			}
			perTask := map[string][]int{}
			for inst := range c.homes {
				for _, pid := range c.plugins(inst) {
					if task, ok := pidTask[fmt.Sprint(pid)]; ok {
						perTask[task] = append(perTask[task], pid)
					}
				}
			}
			w.mu.Lock()
			w.samples++
			for task, pids := range perTask {
				if len(pids) > 1 && w.worst == "" {
					w.worst = fmt.Sprintf("task %s had %d live plugin processes at once: %v", task, len(pids), pids)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *doubleRunWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.worst != "" {
		t.Fatal(w.worst)
	}
	if w.samples < 5 {
		t.Fatalf("only %d samples: the watch proves nothing", w.samples)
	}
}

func eventCount(t testing.TB, s *server, ids []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, id := range ids {
		out[id] = s.task(t, id).Version
	}
	return out
}

// TestSeveralInstances runs three servers on one database, then a fourth:
// instances are listed; a joining server disturbs no pod; commands sent to a
// non-owner reach the owner; pods of a server killed with SIGKILL are taken
// over (pod_lost instance_lost) and never run twice; a server stopped past
// the TTL loses its pods and writes nothing when it comes back; a server
// that drains hands its pods over.
func TestSeveralInstances(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, cc := c.start("A"), c.start("B"), c.start("C")

	insts := b.instances(t)
	for _, id := range []string{"A", "B", "C"} {
		in, ok := insts[id]
		if !ok || !in.Alive || in.Version == "" || in.Address == nil || *in.Address != c.srv[id].addr {
			t.Fatalf("instance %s: %+v (present %v); all: %+v", id, in, ok, insts)
		}
	}

	// Pods owned by A.
	const n = 20 // the scenario: one owner of 20 auto-restart pods is killed
	ids := make([]string, n)
	for i := range ids {
		ids[i] = a.createTask(t, autoRestartTask(fmt.Sprintf("owned by A %d", i)))
	}
	for _, id := range ids {
		a.waitPod(t, id, "RUNNING", "ACTIVE", 0, 20*time.Second)
		if o := cc.podOwner(t, id); o != "A" {
			t.Fatalf("task %s: Pod.instanceId via C = %q, want A", id, o)
		}
	}
	eventually(t, 5*time.Second, func() string {
		if p := b.instances(t)["A"].Pods; p != n {
			return fmt.Sprintf("instance A pods = %d, want %d", p, n)
		}
		return ""
	})

	t.Run("JoiningDisturbsNothing", func(t *testing.T) {
		before := eventCount(t, a, ids)
		d := c.start("D", "--handoff")
		// Let D run its duties (leases, commands, closed tasks, takeover)
		// after several heartbeats: each heartbeat it records is followed by
		// a round of them.
		beats := map[string]bool{}
		eventually(t, 20*testHeartbeat, func() string {
			if in, ok := d.instances(t)["D"]; ok {
				beats[in.HeartbeatAt] = true
			}
			if len(beats) < 4 {
				return fmt.Sprintf("D has recorded %d heartbeats", len(beats))
			}
			return ""
		})
		if got := eventCount(t, d, ids); !maps(got, before) {
			t.Fatalf("versions after D joined %v, before %v: a joining server wrote events", got, before)
		}
		if ps := c.plugins("D"); len(ps) != 0 {
			t.Fatalf("the joining server launched plugins %v", ps)
		}
		if !d.instances(t)["D"].Alive {
			t.Fatal("D not listed alive")
		}
	})

	t.Run("FeedsAcrossInstancesAndListenerLoss", func(t *testing.T) {
		fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
		defer fcancel()
		feedTypes := []string{"task_created", "phase_changed"}
		feed := subscribe(t, fctx, a, `subscription { events(afterPosition: "0", types: ["task_created", "phase_changed"]) { taskId version position type } }`)
		changed := subscribe(t, fctx, a, `subscription { taskChanged(filter: {titleContains: "feed writer"}) { id version } }`)

		// seenEvents holds, per task, the versions the events feed on A
		// delivered; every delivery must come after the previous position
		// (no duplicate, no step back).
		seenEvents := map[string][]int{}
		var last int64
		readEvents := func(done func() bool, what string) {
			t.Helper()
			for !done() {
				select {
				case raw, ok := <-feed:
					if !ok {
						t.Fatal("events feed closed")
					}
					var d struct {
						Events struct {
							TaskID   string
							Version  int
							Position string
						}
					}
					if err := json.Unmarshal(raw, &d); err != nil {
						t.Fatal(err)
					}
					var pos int64
					if _, err := fmt.Sscan(d.Events.Position, &pos); err != nil {
						t.Fatalf("position %q: %v", d.Events.Position, err)
					}
					if pos <= last {
						t.Fatalf("position %d after %d: a duplicate or a step back", pos, last)
					}
					last = pos
					seenEvents[d.Events.TaskID] = append(seenEvents[d.Events.TaskID], d.Events.Version)
				case <-fctx.Done():
					t.Fatalf("events feed on A: waiting for %s, saw %v", what, seenEvents)
				}
			}
		}
		// sentChanged holds the newest version taskChanged on A sent per task;
		// a task is never sent again at an older or equal version.
		sentChanged := map[string]int{}
		readChanged := func(done func() bool, what string) {
			t.Helper()
			for !done() {
				select {
				case raw, ok := <-changed:
					if !ok {
						t.Fatal("taskChanged closed")
					}
					var d struct {
						TaskChanged struct {
							ID      string
							Version int
						}
					}
					if err := json.Unmarshal(raw, &d); err != nil {
						t.Fatal(err)
					}
					if d.TaskChanged.Version <= sentChanged[d.TaskChanged.ID] {
						t.Fatalf("taskChanged sent %s version %d after %d", d.TaskChanged.ID, d.TaskChanged.Version, sentChanged[d.TaskChanged.ID])
					}
					sentChanged[d.TaskChanged.ID] = d.TaskChanged.Version
				case <-fctx.Done():
					t.Fatalf("taskChanged on A: waiting for %s, saw %v", what, sentChanged)
				}
			}
		}

		// A probe written through B and heard on A proves both subscriptions
		// are listening and notices cross instances before the cut.
		probe := b.createTask(t, map[string]any{"title": "feed writer probe"})
		readEvents(func() bool { return len(seenEvents[probe]) > 0 }, "the probe")
		readChanged(func() bool { return sentChanged[probe] > 0 }, "the probe")

		// Cut every instance's LISTEN connection, then write through B and
		// C concurrently. A round proves the resync only when every write
		// committed before any listener came back (they reconnect after a
		// pause): then A hears of the writes' final versions only by reading
		// the store. A slow machine may need another round.
		conn, err := pgx.Connect(fctx, c.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(fctx)
		listeners := func() int {
			t.Helper()
			var n int
			if err := conn.QueryRow(fctx, `SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
				t.Fatalf("count listeners: %v", err)
			}
			return n
		}
		const rounds, maxAttempts = 5, 5
		writers := []*server{b, cc}
		var wrote []string
		for attempt := 1; ; attempt++ {
			eventually(t, 10*time.Second, func() string {
				if n := listeners(); n != len(c.srv) {
					return fmt.Sprintf("%d LISTEN connections, want %d", n, len(c.srv))
				}
				return ""
			})
			var cut int
			if err := conn.QueryRow(fctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`).Scan(&cut); err != nil || cut != len(c.srv) {
				t.Fatalf("terminate listeners: %v (%d cut)", err, cut)
			}
			ids := make([]string, len(writers))
			errs := make(chan error, len(writers))
			var wg sync.WaitGroup
			for w, s := range writers {
				wg.Go(func() {
					data, gerrs, err := s.post(fctx, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
						map[string]any{"in": map[string]any{"title": fmt.Sprintf("feed writer %d/%d", attempt, w)}})
					var out struct {
						CreateTask struct{ Task struct{ ID string } }
					}
					if err == nil && len(gerrs) == 0 {
						err = json.Unmarshal(data, &out)
					}
					if err != nil || len(gerrs) > 0 {
						errs <- fmt.Errorf("writer %d createTask: %v %v", w, err, gerrs)
						return
					}
					ids[w] = out.CreateTask.Task.ID
					for r := range rounds {
						to := "PLANNING"
						if r%2 == 1 {
							to = "SPEC_CLARIFICATION"
						}
						if _, gerrs, err := s.post(fctx, `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { id } } }`,
							map[string]any{"id": ids[w], "to": to}); err != nil || len(gerrs) > 0 {
							errs <- fmt.Errorf("writer %d transition %d: %v %v", w, r, err, gerrs)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			wrote = append(wrote, ids...)
			back := listeners()
			if back == 0 {
				break
			}
			if attempt == maxAttempts {
				t.Fatalf("in %d rounds the listeners always came back before the writes ended: the resync is not proven", attempt)
			}
			t.Logf("round %d: %d listeners came back before the writes ended; writing another round", attempt, back)
		}

		// What the store holds is what A must deliver: every event of the
		// feed's types once, in order, and each task's newest version.
		want := map[string][]int{}
		newest := map[string]int{}
		for _, id := range wrote {
			for _, e := range b.events(t, id, feedTypes...) {
				want[id] = append(want[id], e.Version)
			}
			newest[id] = b.task(t, id).Version
			if len(want[id]) != 1+rounds {
				t.Fatalf("task %s holds %d feed events, want %d", id, len(want[id]), 1+rounds)
			}
		}
		readEvents(func() bool {
			for _, id := range wrote {
				if len(seenEvents[id]) < len(want[id]) {
					return false
				}
			}
			return true
		}, "the writers' events")
		readChanged(func() bool {
			for _, id := range wrote {
				if sentChanged[id] < newest[id] {
					return false
				}
			}
			return true
		}, "the writers' newest versions")
		for _, id := range wrote {
			if !slices.Equal(seenEvents[id], want[id]) {
				t.Fatalf("task %s: events feed on A delivered versions %v, the store holds %v", id, seenEvents[id], want[id])
			}
		}
		// Pod commands share the channel: later scenarios need it back.
		eventually(t, 10*time.Second, func() string {
			if n := listeners(); n != len(c.srv) {
				return fmt.Sprintf("%d LISTEN connections, want %d", n, len(c.srv))
			}
			return ""
		})
	})

	t.Run("CommandsReachTheOwner", func(t *testing.T) {
		x := a.createTask(t, autoRestartTask("cancel via B"))
		tv := a.waitPod(t, x, "RUNNING", "ACTIVE", 0, 20*time.Second)
		b.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "done elsewhere") { task { id } } }`, map[string]any{"id": x}, nil)
		// cancelTask answers once the owner's process has stopped, or after
		// a bounded wait with the pod STOPPING: never while it still runs
		// unknown to the caller. (Its latency is measured by
		// BenchmarkSeveralInstancesCancel, not asserted here.)
		if ourAlive(tv.Pod.PID, c.homes["A"].tag) && procState(tv.Pod.PID) != "Z" {
			if st := a.task(t, x).Pod.State; st != "STOPPING" && st != "STOPPED" {
				t.Fatalf("cancelTask via B answered with plugin %d alive and the pod %s", tv.Pod.PID, st)
			}
			eventually(t, 10*time.Second, func() string {
				if ourAlive(tv.Pod.PID, c.homes["A"].tag) && procState(tv.Pod.PID) != "Z" {
					return fmt.Sprintf("pid %d still alive", tv.Pod.PID)
				}
				return ""
			})
		}
		if a.task(t, x).Status != "CANCELLED" || len(ofType(a.events(t, x), "pod_stopped")) != 1 {
			t.Fatalf("cancelled task: %+v, events %v", a.task(t, x), a.events(t, x))
		}
		if _, ok := c.leases(ctx)[x]; ok {
			t.Fatal("the cancelled task's lease is still held")
		}

		// stopPod and restartPod through C on a pod A owns.
		y := a.createTask(t, autoRestartTask("stop via C"))
		ty := a.waitPod(t, y, "RUNNING", "ACTIVE", 0, 20*time.Second)
		cc.must(t, `mutation($id: ID!) { restartPod(taskId: $id) { task { id } } }`, map[string]any{"id": y}, nil)
		ty2 := a.waitPod(t, y, "RUNNING", "", ty.Pod.PID, 10*time.Second)
		if alive(ty.Pod.PID) && ourAlive(ty.Pod.PID, c.homes["A"].tag) {
			t.Fatal("restartPod via C left the old plugin running")
		}
		// pausePod and resumePod through C reach A, which owns the pod.
		cc.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": y}, nil)
		a.waitPod(t, y, "PAUSED", "ACTIVE", 0, 10*time.Second)
		cc.must(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": y}, nil)
		a.waitPod(t, y, "RUNNING", "ACTIVE", 0, 10*time.Second)
		cc.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": y}, nil)
		if ourAlive(ty2.Pod.PID, c.homes["A"].tag) {
			t.Fatalf("stopPod via C answered while the plugin %d still runs", ty2.Pod.PID)
		}
		if st := a.task(t, y).Pod.State; st != "STOPPED" {
			t.Fatalf("after stopPod via C the pod is %s", st)
		}
	})

	t.Run("TakeoverAfterKill", func(t *testing.T) {
		old := c.leases(ctx)
		oldPIDs := make([]int, 0, n)
		for _, id := range ids {
			oldPIDs = append(oldPIDs, old[id].PID)
		}
		w := c.watchDoubleRuns(ctx)
		killed := time.Now()
		a.kill(syscall.SIGKILL)
		<-a.exited
		ls := c.waitRunningElsewhere(ctx, ids, "A", testTTL+15*time.Second)
		took := time.Since(killed)
		w.check(t)
		t.Logf("%d pods running elsewhere %s after kill -9 (TTL %s)", n, took.Round(time.Millisecond), testTTL)
		owners := map[string]int{}
		for _, id := range ids {
			owners[ls[id].Owner]++
			if ls[id].Epoch < 2 {
				t.Errorf("task %s: lease epoch %d after a takeover", id, ls[id].Epoch)
			}
			evs := b.events(t, id)
			lost := ofType(evs, "pod_lost")
			if len(lost) != 1 || dataField[string](t, lost[0], "reason") != "instance_lost" || dataField[string](t, lost[0], "instanceId") != "A" {
				t.Fatalf("task %s pod_lost events %+v, want one instance_lost from A", id, lost)
			}
			for _, e := range ofType(evs, "pod_crashed") {
				t.Errorf("task %s: false crash %s", id, e.Data)
			}
			if len(ofType(evs, "pod_restart_limit_reached")) > 0 {
				t.Errorf("task %s: restart limit reached", id)
			}
		}
		if len(owners) < 2 {
			t.Errorf("takeover went to %v: not spread over the live instances", owners)
		}
		for _, pid := range oldPIDs {
			if ourAlive(pid, c.homes["A"].tag) {
				t.Errorf("the dead instance's plugin %d still runs", pid)
			}
		}
		if in := b.instances(t)["A"]; in.Alive || in.Pods != 0 {
			t.Errorf("instance A after kill: %+v", in)
		}
	})

	t.Run("PausedOwnerIsFenced", func(t *testing.T) {
		ls := c.leases(ctx)
		var victim string
		var theirs []string
		for _, id := range ids {
			if ls[id].Owner != "D" && victim == "" {
				victim = ls[id].Owner
			}
		}
		for _, id := range ids {
			if ls[id].Owner == victim {
				theirs = append(theirs, id)
			}
		}
		v := c.srv[victim]
		oldPlugins := c.plugins(victim)
		other := c.srv["D"]
		v.kill(syscall.SIGSTOP)
		stopped := true
		defer func() {
			if stopped {
				v.kill(syscall.SIGCONT)
			}
		}()
		// Its plugins stop their work on their own before the TTL.
		eventually(t, testTTL, func() string {
			var left []int
			for _, pid := range oldPlugins {
				if ourAlive(pid, c.homes[victim].tag) && procState(pid) != "Z" {
					left = append(left, pid)
				}
			}
			if len(left) > 0 {
				return fmt.Sprintf("plugins %v of the stopped instance still run", left)
			}
			return ""
		})
		c.waitRunningElsewhere(ctx, theirs, victim, testTTL+15*time.Second)
		// A new owner saves its lease before it records the pod_started:
		// wait for those, so that what is counted next is settled and only
		// the returning instance could add to it.
		eventually(t, 15*time.Second, func() string {
			for _, id := range theirs {
				evs := other.events(t, id)
				if len(evs) == 0 || evs[len(evs)-1].Type != "pod_started" {
					return fmt.Sprintf("task %s: the new owner's pod_started is not recorded yet", id)
				}
			}
			return ""
		})
		after := eventCount(t, other, ids)
		v.kill(syscall.SIGCONT)
		stopped = false
		time.Sleep(testTTL)
		if got := eventCount(t, other, ids); !maps(got, after) {
			t.Fatalf("versions %v after %s came back, %v before: it wrote over the new owners", got, victim, after)
		}
		if ps := c.plugins(victim); len(ps) != 0 {
			t.Fatalf("the returning instance runs plugins %v", ps)
		}
		for id, l := range c.leases(ctx) {
			if l.Owner == victim && slices.Contains(theirs, id) {
				t.Fatalf("the returning instance holds the lease of %s again", id)
			}
		}
	})

	t.Run("DrainHandsOver", func(t *testing.T) {
		d := c.srv["D"]
		ls := c.leases(ctx)
		var mine []string
		for _, id := range ids {
			if ls[id].Owner == "D" {
				mine = append(mine, id)
			}
		}
		if len(mine) == 0 {
			t.Skip("D owns no pod")
		}
		d.stop(t, 20*time.Second)
		ls = c.waitRunningElsewhere(ctx, mine, "D", 10*time.Second)
		for _, id := range mine {
			// The lease names the new process just before its pod_started
			// is committed.
			eventually(t, 5*time.Second, func() string {
				evs := b.events(t, id)
				stoppedEv := ofType(evs, "pod_stopped")
				started := ofType(evs, "pod_started")
				if len(stoppedEv) == 0 || dataField[string](t, stoppedEv[len(stoppedEv)-1], "reason") != "handoff" ||
					dataField[string](t, started[len(started)-1], "trigger") != "handoff" || started[len(started)-1].Version < stoppedEv[len(stoppedEv)-1].Version {
					return fmt.Sprintf("task %s: want pod_stopped{handoff} then pod_started{handoff}, got %d stops, %d starts", id, len(stoppedEv), len(started))
				}
				return ""
			})
			if o := b.podOwner(t, id); o == "D" || o == "" {
				t.Fatalf("task %s owned by %q after D drained", id, o)
			}
		}
	})
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
