package supervisor

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// waitIdle waits (up to 20s) until the pool holds n idle processes of
// runtime, none of them in not, and returns their pids.
func waitIdle(t testing.TB, s *Supervisor, runtime string, n int, not ...int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := s.pool.idlePIDs(runtime)
		ok := len(pids) == n
		for _, pid := range pids {
			if slices.Contains(not, pid) || !processAlive(pid) {
				ok = false
			}
		}
		if ok {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle %s processes %v, want %d live ones not among %v", runtime, pids, n, not)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWarmPoolStartTakesIdleProcessAndReplacesIt(t *testing.T) {
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 2} })
	idle := waitIdle(t, b.sup, "test", 2)

	task := newTask("", ipa.RestartPolicy{})
	st := mustStart(t, b.sup, task)
	if !slices.Contains(idle, st.PID) {
		t.Fatalf("pod pid %d, want one of the idle processes %v", st.PID, idle)
	}
	// pod_started as for any start, with the warm process's pid.
	ev := b.rec.wait(t, task.ID, ipa.EventPodStarted, 1)
	if d := decode[ipa.PodStartedData](t, ev); d.PID != st.PID || d.Attempt != 1 || d.Trigger != ipa.TriggerManual {
		t.Fatalf("pod_started %+v, want pid %d attempt 1 trigger manual", d, st.PID)
	}
	ls, err := b.leases.List(context.Background())
	if err != nil || len(ls) != 1 || ls[0].TaskID != task.ID || ls[0].PID != st.PID {
		t.Fatalf("leases %+v %v, want one of %s naming pid %d", ls, err, task.ID, st.PID)
	}
	// A replacement comes in the background; the pool is full again.
	waitIdle(t, b.sup, "test", 2, st.PID)

	// The taken process is the pod's: stop ends it, the pool keeps its own.
	if err := b.sup.StopPod(context.Background(), task.ID, "done"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(st.PID) {
		if time.Now().After(deadline) {
			t.Fatalf("pod pid %d alive after StopPod", st.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWarmPoolIdleDeathIsReplacedAndNoCrash(t *testing.T) {
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 1} })
	idle := waitIdle(t, b.sup, "test", 1)
	if err := syscall.Kill(idle[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := waitIdle(t, b.sup, "test", 1, idle[0])

	b.rec.mu.Lock()
	n := len(b.rec.events)
	b.rec.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d events recorded after an idle warm process died, want none", n)
	}
	// The replacement serves the next start.
	task := newTask("", ipa.RestartPolicy{})
	if st := mustStart(t, b.sup, task); st.PID != next[0] {
		t.Fatalf("pod pid %d, want the replacement %d", st.PID, next[0])
	}
}

func TestWarmPoolEmptyFallsBackToColdStart(t *testing.T) {
	// A pool whose runtime cannot launch stays empty; starts of another
	// runtime never wait for it, and a start of its own runtime launches
	// cold and fails as any start would.
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 1, "nosuch": 1} })
	task := newTask("", ipa.RestartPolicy{})
	mustStart(t, b.sup, task) // warm or cold, it runs
	other := newTask("", ipa.RestartPolicy{})
	other.Runtime = "nosuch"
	if _, err := b.sup.StartPod(context.Background(), other, ipa.TriggerManual, ""); err == nil {
		t.Fatal("StartPod of a runtime that cannot launch succeeded")
	}
	if pids := b.sup.pool.idlePIDs("nosuch"); len(pids) != 0 {
		t.Fatalf("idle processes %v of a runtime that cannot launch", pids)
	}
}

func TestWarmPoolShutdownEndsIdleProcesses(t *testing.T) {
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 3} })
	idle := waitIdle(t, b.sup, "test", 3)
	task := newTask("", ipa.RestartPolicy{})
	st := mustStart(t, b.sup, task)
	idle = append(idle, waitIdle(t, b.sup, "test", 3, st.PID)...)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.sup.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(idle, st.PID) {
		if processAlive(pid) {
			t.Errorf("pid %d alive after Shutdown", pid)
		}
	}
	if pids := b.sup.pool.idlePIDs("test"); len(pids) != 0 {
		t.Fatalf("pool still lists %v after Shutdown", pids)
	}
}

func TestParseWarmPods(t *testing.T) {
	rts := []string{"demo", "exec"}
	for _, tc := range []struct {
		in   []string
		want map[string]int
	}{
		{nil, map[string]int{}},
		{[]string{"2"}, map[string]int{"demo": 2, "exec": 2}},
		{[]string{"2,exec=0"}, map[string]int{"demo": 2}},
		{[]string{"demo=1", "exec=4"}, map[string]int{"demo": 1, "exec": 4}},
		{[]string{"exec=4", "1"}, map[string]int{"demo": 1, "exec": 1}},
	} {
		got, err := ParseWarmPods(tc.in, rts)
		if err != nil || len(got) != len(tc.want) {
			t.Fatalf("ParseWarmPods(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Fatalf("ParseWarmPods(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
	for _, bad := range []string{"x", "-1", "65", "nosuch=1", "demo=", "demo=two"} {
		if _, err := ParseWarmPods([]string{bad}, rts); err == nil {
			t.Errorf("ParseWarmPods(%q) accepted", bad)
		}
	}
}

// takeOverN has s take over n pods of a dead owner (auto-restart, no
// back-off) and returns how long until all of them run again, and their
// pids.
func takeOverN(t testing.TB, s *Supervisor, n int) (time.Duration, []int) {
	t.Helper()
	pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 0, MaxBackoffMs: 1000}
	var taken []Takeover
	for range n {
		task := newTask("", pol)
		task.PodState = ipa.PodRunning
		taken = append(taken, Takeover{
			Lease:         Lease{TaskID: task.ID, Runtime: task.Runtime, Attempt: 1, StartedAt: time.Now()},
			PreviousOwner: "dead", Epoch: 2, Task: task,
		})
	}
	began := time.Now()
	s.TakeOver(context.Background(), taken)
	var pids []int
	for _, tk := range taken {
		pids = append(pids, waitState(t, s, tk.Lease.TaskID, ipa.PodRunning).PID)
	}
	return time.Since(began), pids
}

func TestWarmPoolServesTakeover(t *testing.T) {
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 3} })
	idle := waitIdle(t, b.sup, "test", 3)
	_, pids := takeOverN(t, b.sup, 3)
	for _, pid := range pids {
		if !slices.Contains(idle, pid) {
			t.Fatalf("pods taken over run as %v, want the idle processes %v", pids, idle)
		}
	}
	// Each was recorded lost, then started again.
	for _, pid := range pids {
		found := false
		b.rec.mu.Lock()
		for _, e := range b.rec.events {
			if e.Type == ipa.EventPodStarted && strings.Contains(string(e.Data), `"pid":`+strconv.Itoa(pid)) {
				found = true
			}
		}
		b.rec.mu.Unlock()
		if !found {
			t.Fatalf("no pod_started with pid %d", pid)
		}
	}
}

// TestTakeoverMeasurement times the takeover of 20 pods (pod_lost, then a
// restart each) by a supervisor with a warm pool of 20 and one without. A
// measurement, not a check: set IPA_WARM_BENCH=1.
func TestTakeoverMeasurement(t *testing.T) {
	if os.Getenv("IPA_WARM_BENCH") == "" {
		t.Skip("a measurement: set IPA_WARM_BENCH=1")
	}
	const n = 20
	cold := setup(t, nil)
	warm := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": n} })
	stopAll := func(s *Supervisor) {
		for _, st := range s.List() {
			_ = s.StopPod(context.Background(), st.TaskID, "measured")
		}
	}
	var ws, cs []time.Duration
	for range 5 {
		waitIdle(t, warm.sup, "test", n)
		d, _ := takeOverN(t, warm.sup, n)
		ws = append(ws, d)
		stopAll(warm.sup)
		d, _ = takeOverN(t, cold.sup, n)
		cs = append(cs, d)
		stopAll(cold.sup)
	}
	slices.Sort(ws)
	slices.Sort(cs)
	t.Logf("takeover of %d pods until all RUNNING, 5 rounds each, sorted: warm pool %v; cold %v", n, ws, cs)
}

// An idle process killed right before a start, whichever part of the start
// sees it dead first (the take, or the Start call), never becomes the task's
// crash: the start goes on with another process.
func TestWarmPoolKilledJustBeforeStart(t *testing.T) {
	b := setup(t, func(c *Config) { c.WarmPods = map[string]int{"test": 1} })
	for range 5 {
		idle := waitIdle(t, b.sup, "test", 1)
		task := newTask("", ipa.RestartPolicy{})
		if err := syscall.Kill(idle[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st := mustStart(t, b.sup, task)
		if st.PID == idle[0] {
			t.Fatalf("pod runs as the killed pid %d", st.PID)
		}
		if evs := b.rec.of(task.ID, ipa.EventPodCrashed); len(evs) != 0 {
			t.Fatalf("pod_crashed recorded for a warm process killed before the start: %s", evs[0].Data)
		}
		if err := b.sup.StopPod(context.Background(), task.ID, "next"); err != nil {
			t.Fatal(err)
		}
	}
}

// heldLeases refuses every lease: another instance owns every pod.
type heldLeases struct{ *MemoryLeaseStore }

func (heldLeases) Save(context.Context, Lease) error { return ipa.ErrLeaseHeld }

// A warm start claims the pod with the lease naming its process: when
// another instance owns the pod, nothing starts, nothing is recorded, and
// the process taken (which never had a task) is ended and replaced.
func TestWarmPoolStartOfPodOwnedElsewhere(t *testing.T) {
	b := setup(t, func(c *Config) {
		c.WarmPods = map[string]int{"test": 1}
		c.Leases = heldLeases{NewMemoryLeaseStore()}
	})
	idle := waitIdle(t, b.sup, "test", 1)
	task := newTask("", ipa.RestartPolicy{})
	started, err := b.sup.StartPod(context.Background(), task, ipa.TriggerManual, "")
	if err != nil || started {
		t.Fatalf("StartPod of a pod owned elsewhere: started=%v err=%v, want false, nil", started, err)
	}
	if evs := b.rec.of(task.ID, ""); len(evs) != 0 {
		t.Fatalf("events recorded for a pod owned elsewhere: %v", b.rec.types(task.ID))
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(idle[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("warm process %d taken for a pod owned elsewhere still alive", idle[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitIdle(t, b.sup, "test", 1, idle[0])
}
