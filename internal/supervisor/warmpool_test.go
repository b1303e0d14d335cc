package supervisor

import (
	"context"
	"slices"
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
