package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of pods through the real binary; see harness_test.go.

// isPlugin reports whether pid runs `ipa plugin <name>`.
func isPlugin(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) >= 3 && args[len(args)-2] == "plugin" && args[len(args)-1] == name
}

// pluginPids lists the home's live `ipa plugin NAME` processes.
func (h *home) pluginPids(name string) []int {
	var out []int
	for _, pid := range taggedPids(h.tag) {
		if isPlugin(pid, name) {
			out = append(out, pid)
		}
	}
	return out
}

// mustBeOurRunningPlugin checks that pid is a live demo plugin of the home.
func mustBeOurRunningPlugin(t *testing.T, h *home, pid int, runtime string) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("pod pid %d, want a real pid", pid)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("kill(%d, 0): %v; the pod's process is not there", pid, err)
	}
	if !environHas(pid, h.tag) || !isPlugin(pid, runtime) {
		t.Fatalf("pid %d is not this test's `ipa plugin %s` process", pid, runtime)
	}
}

func mustBeGone(t *testing.T, h *home, within time.Duration, pids ...int) {
	t.Helper()
	if left := waitGone(pids, h.tag, within); len(left) > 0 {
		t.Fatalf("plugin processes %v still alive %s later", left, within)
	}
}

const (
	stopPodQ     = `mutation($id: ID!, $r: String) { stopPod(taskId: $id, reason: $r) { task { ` + taskFields + ` } } }`
	restartPodQ  = `mutation($id: ID!) { restartPod(taskId: $id) { task { ` + taskFields + ` } } }`
	completeQ    = `mutation($id: ID!) { completeTask(taskId: $id) { task { ` + taskFields + ` } } }`
	transitionQ  = `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { ` + taskFields + ` } } }`
	runtimesQ    = `{ runtimes { name description } }`
	lastCrashesQ = `query($id: ID!) { task(id: $id) { pod { crashes(last: 1) { at exitCode signal reason uptimeMs } } } }`
)

type taskPayload struct {
	Task taskView `json:"task"`
}

// 1. start, stop, restart and complete through GraphQL, checked against the OS.
func TestPodLifecycleThroughAPI(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(150)})

	started, tv := s.startPod(t, id)
	if !started || tv.Pod.State != "RUNNING" || tv.Status != "ACTIVE" {
		t.Fatalf("startPod: started=%v state=%s status=%s, want true RUNNING ACTIVE", started, tv.Pod.State, tv.Status)
	}
	pid1 := tv.Pod.PID
	mustBeOurRunningPlugin(t, h, pid1, "demo")

	var stopped struct{ StopPod taskPayload }
	s.must(t, stopPodQ, map[string]any{"id": id, "r": "e2e stop"}, &stopped)
	if tv := stopped.StopPod.Task; tv.Pod.State != "STOPPED" || tv.Status != "INACTIVE" || tv.Pod.PID != 0 {
		t.Fatalf("after stopPod: state=%s status=%s pid=%d, want STOPPED INACTIVE no pid", tv.Pod.State, tv.Status, tv.Pod.PID)
	}
	mustBeGone(t, h, 2*time.Second, pid1)
	if evs := s.events(t, id, "pod_stopped"); len(evs) != 1 || dataField[string](t, evs[0], "reason") != "e2e stop" || dataField[int](t, evs[0], "pid") != pid1 {
		t.Fatalf("pod_stopped events: %+v, want one with reason %q and pid %d", evs, "e2e stop", pid1)
	}
	s.mustFail(t, stopPodQ, map[string]any{"id": id}, "CONFLICT", "NOT_RUNNING")

	_, tv = s.startPod(t, id)
	pid2 := tv.Pod.PID
	mustBeOurRunningPlugin(t, h, pid2, "demo")
	var restarted struct{ RestartPod taskPayload }
	s.must(t, restartPodQ, map[string]any{"id": id}, &restarted)
	pid3 := restarted.RestartPod.Task.Pod.PID
	if restarted.RestartPod.Task.Pod.State != "RUNNING" || pid3 == pid2 {
		t.Fatalf("restartPod: state=%s pid=%d (before %d), want RUNNING with a new pid", restarted.RestartPod.Task.Pod.State, pid3, pid2)
	}
	mustBeOurRunningPlugin(t, h, pid3, "demo")
	mustBeGone(t, h, 2*time.Second, pid2)
	if evs := s.events(t, id, "pod_stopped"); len(evs) != 2 || dataField[string](t, evs[1], "reason") != "restart" {
		t.Fatalf("pod_stopped events after restartPod: %+v, want the second with reason restart", evs)
	}

	var completed struct{ CompleteTask taskPayload }
	s.must(t, completeQ, map[string]any{"id": id}, &completed)
	if tv := completed.CompleteTask.Task; tv.Status != "COMPLETED" || tv.Phase != "COMPLETED" || tv.Pod.State != "STOPPED" {
		t.Fatalf("completeTask: status=%s phase=%s pod=%s, want COMPLETED COMPLETED STOPPED", tv.Status, tv.Phase, tv.Pod.State)
	}
	mustBeGone(t, h, 2*time.Second, pid3)
	evs := s.events(t, id)
	var order []string
	for _, e := range evs {
		if e.Type == "pod_stopped" || e.Type == "task_completed" {
			order = append(order, e.Type)
		}
	}
	if !slices.Equal(order, []string{"pod_stopped", "pod_stopped", "pod_stopped", "task_completed"}) {
		t.Fatalf("stop/complete events in order %v, want the pod stopped before task_completed", order)
	}
	if left := h.pluginPids("demo"); len(left) != 0 {
		t.Fatalf("demo plugins alive after completeTask: %v", left)
	}
	s.stop(t, 12*time.Second)
}

// 2. Fifty concurrent startPod calls over real HTTP start exactly one process.
func TestConcurrentStartPodStartsOneProcess(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(200)})

	const n = 50
	type result struct {
		started bool
		pid     int
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			data, errs, err := s.post(context.Background(), `mutation($id: ID!) { startPod(taskId: $id) { started task { pod { state pid } } } }`, map[string]any{"id": id})
			if err == nil && len(errs) > 0 {
				err = fmt.Errorf("%v", errs)
			}
			var out struct {
				StartPod struct {
					Started bool
					Task    struct{ Pod podView }
				} `json:"startPod"`
			}
			if err == nil {
				err = json.Unmarshal(data, &out)
			}
			results[i] = result{out.StartPod.Started, out.StartPod.Task.Pod.PID, err}
		}()
	}
	close(gate)
	wg.Wait()

	startedCount, pids := 0, map[int]int{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if r.started {
			startedCount++
		}
		pids[r.pid]++
	}
	if startedCount != 1 {
		t.Fatalf("%d calls returned started=true, want exactly 1", startedCount)
	}
	if len(pids) != 1 {
		t.Fatalf("calls saw different pids %v, want one", pids)
	}
	if evs := s.events(t, id, "pod_started"); len(evs) != 1 {
		t.Fatalf("%d pod_started events, want 1", len(evs))
	}
	var pid int
	for p := range pids {
		pid = p
	}
	mustBeOurRunningPlugin(t, h, pid, "demo")
	if procs := h.pluginPids("demo"); !slices.Equal(procs, []int{pid}) {
		t.Fatalf("demo plugin processes %v, want exactly [%d]", procs, pid)
	}
}

// 3. kill -9 of the plugin is a crash with SIGKILL.
func TestKill9IsRecordedCrash(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(200)})
	_, tv := s.startPod(t, id)
	pid := tv.Pod.PID
	mustBeOurRunningPlugin(t, h, pid, "demo")
	time.Sleep(100 * time.Millisecond) // some uptime to measure

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	tv = s.waitPod(t, id, "CRASHED", "INACTIVE", 0, 5*time.Second)
	t.Logf("CRASHED seen %s after kill -9", time.Since(killed))
	if tv.Status != "INACTIVE" || tv.Pod.PID != 0 {
		t.Fatalf("after kill -9: status=%s pid=%d, want INACTIVE and no pid", tv.Status, tv.Pod.PID)
	}
	var out struct {
		Task struct{ Pod struct{ Crashes []crash } }
	}
	s.must(t, lastCrashesQ, map[string]any{"id": id}, &out)
	cs := out.Task.Pod.Crashes
	if len(cs) != 1 || cs[0].Signal != "SIGKILL" || cs[0].UptimeMs <= 0 || cs[0].ExitCode != nil || cs[0].Reason != "signal" {
		t.Fatalf("crashes(last:1) = %+v, want one SIGKILL crash (reason signal, no exit code) with uptimeMs > 0", cs)
	}
	evs := s.events(t, id, "pod_crashed")
	if len(evs) != 1 {
		t.Fatalf("%d pod_crashed events, want 1", len(evs))
	}
	e := evs[0]
	if dataField[string](t, e, "signal") != "SIGKILL" || dataField[int](t, e, "uptimeMs") <= 0 || dataField[int](t, e, "pid") != pid {
		t.Fatalf("pod_crashed data %s, want signal SIGKILL, uptimeMs > 0, pid %d", e.Data, pid)
	}
	if e.ActorID != "system:supervisor" {
		t.Fatalf("pod_crashed actor %q, want the supervisor", e.ActorID)
	}
	if got := h.pluginPids("demo"); len(got) != 0 {
		t.Fatalf("demo plugins alive after the crash without auto restart: %v", got)
	}
}

// 4. The restart policy given through the API restarts, backs off, then fails.
func TestRestartPolicyThroughAPI(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{
		"runtimeConfig": demoConfig(200),
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 2, "windowSeconds": 60, "initialBackoffMs": 100, "maxBackoffMs": 400},
	})
	_, tv := s.startPod(t, id)
	pid := tv.Pod.PID
	mustBeOurRunningPlugin(t, h, pid, "demo")
	seen := []int{pid}

	for attempt := 1; attempt <= 2; attempt++ {
		time.Sleep(50 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		tv = s.waitPod(t, id, "RUNNING", "ACTIVE", pid, 5*time.Second)
		pid = tv.Pod.PID
		if slices.Contains(seen, pid) {
			t.Fatalf("restart %d reused pid %d", attempt, pid)
		}
		seen = append(seen, pid)
		mustBeOurRunningPlugin(t, h, pid, "demo")
		if tv.Pod.Restarts != attempt {
			t.Fatalf("after restart %d: pod.restarts = %d", attempt, tv.Pod.Restarts)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tv = s.waitPod(t, id, "FAILED", "INACTIVE", 0, 5*time.Second)
	time.Sleep(600 * time.Millisecond) // longer than any back-off: nothing may restart now
	if tv = s.task(t, id); tv.Pod.State != "FAILED" || tv.Status != "INACTIVE" {
		t.Fatalf("after the limit: pod %s status %s, want FAILED INACTIVE", tv.Pod.State, tv.Status)
	}
	if procs := h.pluginPids("demo"); len(procs) != 0 {
		t.Fatalf("plugin processes %v alive while FAILED", procs)
	}

	evs := s.events(t, id)
	sched := ofType(evs, "pod_restart_scheduled")
	if len(sched) != 2 || dataField[int](t, sched[0], "attempt") != 1 || dataField[int](t, sched[1], "attempt") != 2 ||
		dataField[int](t, sched[0], "delayMs") != 100 || dataField[int](t, sched[1], "delayMs") != 200 {
		t.Fatalf("pod_restart_scheduled events %+v, want attempts 1 and 2 with delays 100 and 200 ms", sched)
	}
	if n := len(ofType(evs, "pod_crashed")); n != 3 {
		t.Fatalf("%d pod_crashed events, want 3", n)
	}
	var triggers []string
	for _, e := range ofType(evs, "pod_started") {
		triggers = append(triggers, dataField[string](t, e, "trigger"))
	}
	if !slices.Equal(triggers, []string{"manual", "restart", "restart"}) {
		t.Fatalf("pod_started triggers %v, want manual, restart, restart", triggers)
	}
	limit := ofType(evs, "pod_restart_limit_reached")
	if len(limit) != 1 || dataField[int](t, limit[0], "maxAttempts") != 2 {
		t.Fatalf("pod_restart_limit_reached events %+v, want one with maxAttempts 2", limit)
	}
	if last := evs[len(evs)-1]; last.Type != "pod_restart_limit_reached" {
		t.Fatalf("last event %s, want pod_restart_limit_reached", last.Type)
	}

	started, tv := s.startPod(t, id)
	if !started || tv.Pod.State != "RUNNING" || tv.Pod.Restarts != 0 {
		t.Fatalf("manual startPod after FAILED: started=%v state=%s restarts=%d, want true RUNNING 0", started, tv.Pod.State, tv.Pod.Restarts)
	}
	mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
}

// 5. The exec runtime: output lines, exit codes, and switching it off.
func TestExecRuntime(t *testing.T) {
	t.Parallel()
	t.Run("exit3", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		s := h.start()
		id := s.createTask(t, map[string]any{"runtime": "exec",
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "echo out1; echo err1 >&2; exit 3"}, "env": tagEnv(h)}})
		s.startPod(t, id)
		var crashed []event
		eventually(t, 5*time.Second, func() string {
			crashed = s.events(t, id, "pod_crashed")
			if len(crashed) == 0 {
				return "no pod_crashed yet"
			}
			return ""
		})
		if code := dataField[*int](t, crashed[0], "exitCode"); len(crashed) != 1 || code == nil || *code != 3 ||
			dataField[string](t, crashed[0], "reason") != "exited" {
			t.Fatalf("pod_crashed %s, want one with exitCode 3 and reason exited", crashed[0].Data)
		}
		tv := s.task(t, id)
		if tv.Pod.State != "CRASHED" || tv.Status != "INACTIVE" || len(tv.Pod.Crashes) != 1 ||
			tv.Pod.Crashes[0].ExitCode == nil || *tv.Pod.Crashes[0].ExitCode != 3 || tv.Pod.Crashes[0].Signal != "" {
			t.Fatalf("task after exit 3: %+v, want pod CRASHED, INACTIVE, one crash with exitCode 3", tv)
		}
		type line struct{ Stream, Text string }
		var lines []line
		for _, e := range s.events(t, id, "pod_output") {
			lines = append(lines, dataField[[]line](t, e, "lines")...)
		}
		for _, want := range []line{{"stdout", "out1"}, {"stderr", "err1"}} {
			if !slices.Contains(lines, want) {
				t.Fatalf("pod_output lines %+v lack %+v", lines, want)
			}
		}
		exited := s.events(t, id, "runtime.exec.exited")
		if len(exited) != 1 {
			t.Fatalf("%d runtime.exec.exited events, want 1", len(exited))
		}
		if code := dataField[*int](t, exited[0], "exitCode"); code == nil || *code != 3 {
			t.Fatalf("runtime.exec.exited %s, want exitCode 3", exited[0].Data)
		}
		if procs := taggedPids(h.tag); len(procs) != 1 || procs[0] != s.pid() {
			t.Fatalf("processes of the test besides the server: %v", procs)
		}
	})
	t.Run("exit0", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		s := h.start()
		id := s.createTask(t, map[string]any{"runtime": "exec",
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "echo done"}, "env": tagEnv(h)}})
		_, tv := s.startPod(t, id)
		pid := tv.Pod.PID
		tv = s.waitPod(t, id, "STOPPED", "INACTIVE", 0, 5*time.Second)
		if tv.Status != "INACTIVE" {
			t.Fatalf("status %s after the command exited 0, want INACTIVE", tv.Status)
		}
		var stopped []event
		eventually(t, 2*time.Second, func() string {
			if stopped = s.events(t, id, "pod_stopped"); len(stopped) == 0 {
				return "no pod_stopped"
			}
			return ""
		})
		if code := dataField[*int](t, stopped[0], "exitCode"); len(stopped) != 1 || dataField[string](t, stopped[0], "reason") != "exited" ||
			code == nil || *code != 0 || (pid > 0 && dataField[int](t, stopped[0], "pid") != pid) {
			t.Fatalf("pod_stopped %s, want reason exited, exitCode 0, pid %d", stopped[0].Data, pid)
		}
		if n := len(s.events(t, id, "pod_crashed")); n != 0 {
			t.Fatalf("%d pod_crashed events for a command that exited 0", n)
		}
		if pid > 0 {
			mustBeGone(t, h, 2*time.Second, pid)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		s := newHome(t).start("--exec=false")
		var out struct{ Runtimes []struct{ Name string } }
		s.must(t, runtimesQ, nil, &out)
		var names []string
		for _, r := range out.Runtimes {
			names = append(names, r.Name)
		}
		if slices.Contains(names, "exec") || !slices.Contains(names, "demo") {
			t.Fatalf("runtimes with --exec=false: %v, want demo and no exec", names)
		}
		s.mustFail(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
			map[string]any{"in": map[string]any{"title": "x", "runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}}}},
			"BAD_USER_INPUT", "INVALID_ARGUMENT")
		var n struct{ TaskCount int }
		s.must(t, `{ taskCount }`, nil, &n)
		if n.TaskCount != 0 {
			t.Fatalf("a refused createTask left %d tasks", n.TaskCount)
		}
	})
}

// startDemoPods creates n demo tasks and starts their pods; it returns ids and pids.
func startDemoPods(t *testing.T, h *home, s *server, n, stepMs int) (ids []string, pids []int) {
	t.Helper()
	for i := range n {
		id := s.createTask(t, map[string]any{"title": fmt.Sprintf("pod %d", i), "runtimeConfig": demoConfig(stepMs)})
		started, tv := s.startPod(t, id)
		if !started {
			t.Fatalf("startPod %d: started=false", i)
		}
		mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
		ids, pids = append(ids, id), append(pids, tv.Pod.PID)
	}
	return ids, pids
}

// 6. SIGTERM stops every pod and exits 0; nothing is left behind.
func TestServerSIGTERMStopsEveryPod(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	ids, pids := startDemoPods(t, h, s, 3, 150)

	took := s.stop(t, 12*time.Second) // --shutdown-timeout 10s
	t.Logf("server exited 0 %s after SIGTERM", took)
	mustBeGone(t, h, 2*time.Second, pids...)
	if left := taggedPids(h.tag); len(left) != 0 {
		t.Fatalf("processes of the test alive after shutdown: %v", left)
	}

	// What was recorded, read back through a new server on the same store
	// that does not resume them.
	s2 := h.start("--resume-pods=false")
	for i, id := range ids {
		evs := s2.events(t, id, "pod_stopped", "pod_lost", "pod_reattached")
		if len(evs) != 1 || evs[0].Type != "pod_stopped" || dataField[string](t, evs[0], "reason") != "server_shutdown" ||
			dataField[int](t, evs[0], "pid") != pids[i] {
			t.Fatalf("task %d: pod events after shutdown %+v, want one pod_stopped with reason server_shutdown and pid %d", i, evs, pids[i])
		}
		if tv := s2.task(t, id); tv.Pod.State != "STOPPED" || tv.Status != "INACTIVE" {
			t.Fatalf("task %d after restart: pod %s status %s, want STOPPED INACTIVE", i, tv.Pod.State, tv.Status)
		}
	}
	s2.stop(t, 12*time.Second)
}

// 7a. A SIGKILLed server's pods outlive it and the next server reattaches.
func TestServerSIGKILLThenReattach(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	ids, pids := startDemoPods(t, h, s, 2, 500)
	s.crash(t)
	for _, pid := range pids {
		if !ourAlive(pid, h.tag) {
			t.Fatalf("plugin %d died with the server; pods must outlive a server crash", pid)
		}
	}

	s2 := h.start()
	for i, id := range ids {
		var re event
		eventually(t, 5*time.Second, func() string {
			evs := s2.events(t, id, "pod_reattached", "pod_lost")
			if len(evs) == 0 {
				return "no pod_reattached yet"
			}
			re = evs[0]
			return ""
		})
		if re.Type != "pod_reattached" || dataField[int](t, re, "pid") != pids[i] {
			t.Fatalf("task %d: %s %s, want pod_reattached with pid %d", i, re.Type, re.Data, pids[i])
		}
		tv := s2.task(t, id)
		if tv.Pod.State != "RUNNING" || tv.Pod.PID != pids[i] || tv.Status != "ACTIVE" {
			t.Fatalf("task %d after reattach: pod %s pid %d status %s, want RUNNING %d ACTIVE", i, tv.Pod.State, tv.Pod.PID, tv.Status, pids[i])
		}
		// The runtime goes on through the new host: phase changes after the
		// reattach, and live state flows.
		eventually(t, 8*time.Second, func() string {
			tv := s2.task(t, id)
			after := 0
			for _, e := range s2.events(t, id, "phase_changed") {
				if e.Version > re.Version && e.ActorID == "runtime:demo" {
					after++
				}
			}
			var live struct {
				Phase string
				Step  int
			}
			_ = json.Unmarshal(tv.Pod.Live, &live)
			if after == 0 || tv.Phase != "REVIEW" || live.Phase != "REVIEW" {
				return fmt.Sprintf("phase %s, live %s, %d phase changes after the reattach", tv.Phase, tv.Pod.Live, after)
			}
			return ""
		})
		if tv := s2.task(t, id); tv.Pod.PID != pids[i] || tv.Pod.State != "RUNNING" {
			t.Fatalf("task %d: pod %s pid %d after the walk, want RUNNING %d", i, tv.Pod.State, tv.Pod.PID, pids[i])
		}
	}
	s2.stop(t, 12*time.Second)
	mustBeGone(t, h, 2*time.Second, pids...)
	if left := taggedPids(h.tag); len(left) != 0 {
		t.Fatalf("processes of the test alive after the second server's shutdown: %v", left)
	}
}

// 7b. A plugin killed while the server is down is recorded as pod_lost.
func TestPluginKilledWhileServerDownIsLost(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	ids, pids := startDemoPods(t, h, s, 1, 200)
	s.crash(t)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	mustBeGone(t, h, 3*time.Second, pids[0])

	s2 := h.start()
	var lost []event
	eventually(t, 5*time.Second, func() string {
		if lost = s2.events(t, ids[0], "pod_lost", "pod_reattached"); len(lost) == 0 {
			return "no pod_lost yet"
		}
		return ""
	})
	if len(lost) != 1 || lost[0].Type != "pod_lost" || dataField[int](t, lost[0], "pid") != pids[0] {
		t.Fatalf("events %+v, want one pod_lost naming pid %d", lost, pids[0])
	}
	t.Logf("pod_lost data: %s", lost[0].Data)
	tv := s2.task(t, ids[0])
	if tv.Status != "INACTIVE" || tv.Pod.State == "RUNNING" || tv.Pod.PID != 0 {
		t.Fatalf("after pod_lost: status %s pod %s pid %d, want INACTIVE, not running", tv.Status, tv.Pod.State, tv.Pod.PID)
	}
	if left := h.pluginPids("demo"); len(left) != 0 {
		t.Fatalf("plugin processes %v alive after pod_lost with no auto restart", left)
	}
	s2.stop(t, 12*time.Second)
}

// 8. External runtimes in --plugin-dir, with and without an allow-list.
func TestPluginDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	script := []byte("#!/bin/sh\nexec " + ipaBin + " plugin demo\n")
	if err := os.WriteFile(filepath.Join(plugins, "mydemo"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(script)
	right, wrong := filepath.Join(dir, "right.sha256"), filepath.Join(dir, "wrong.sha256")
	if err := os.WriteFile(right, []byte(hex.EncodeToString(sum[:])+"  mydemo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte(strings.Repeat("0", 64)+"  mydemo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runtimeNames := func(t *testing.T, s *server) []string {
		var out struct{ Runtimes []struct{ Name string } }
		s.must(t, runtimesQ, nil, &out)
		var names []string
		for _, r := range out.Runtimes {
			names = append(names, r.Name)
		}
		return names
	}

	t.Run("discovered", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		s := h.start("--plugin-dir", plugins)
		if names := runtimeNames(t, s); !slices.Contains(names, "mydemo") {
			t.Fatalf("runtimes %v lack mydemo", names)
		}
		id := s.createTask(t, map[string]any{"runtime": "mydemo", "runtimeConfig": demoConfig(100)})
		started, tv := s.startPod(t, id)
		if !started || tv.Pod.State != "RUNNING" || tv.Runtime != "mydemo" {
			t.Fatalf("startPod mydemo: started=%v state=%s runtime=%s", started, tv.Pod.State, tv.Runtime)
		}
		// The script execs the binary: the pod's pid is the plugin itself.
		mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
		eventually(t, 5*time.Second, func() string {
			if tv := s.task(t, id); tv.Phase != "REVIEW" {
				return "phase " + tv.Phase
			}
			return ""
		})
		changes := s.events(t, id, "phase_changed")
		if len(changes) != 3 || changes[0].ActorID != "runtime:mydemo" {
			t.Fatalf("phase_changed events %+v, want 3 by runtime:mydemo", changes)
		}
		s.stop(t, 12*time.Second)
		mustBeGone(t, h, 2*time.Second, tv.Pod.PID)
	})
	t.Run("wrong-checksum", func(t *testing.T) {
		t.Parallel()
		s := newHome(t).start("--plugin-dir", plugins, "--plugin-sha256-file", wrong)
		if names := runtimeNames(t, s); slices.Contains(names, "mydemo") || !slices.Contains(names, "demo") {
			t.Fatalf("runtimes %v: mydemo must not be offered when its checksum is wrong", names)
		}
		s.mustFail(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
			map[string]any{"in": map[string]any{"title": "x", "runtime": "mydemo"}}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	})
	t.Run("right-checksum", func(t *testing.T) {
		t.Parallel()
		h := newHome(t)
		s := h.start("--plugin-dir", plugins, "--plugin-sha256-file", right)
		if names := runtimeNames(t, s); !slices.Contains(names, "mydemo") {
			t.Fatalf("runtimes %v lack mydemo although its checksum is allow-listed", names)
		}
		id := s.createTask(t, map[string]any{"runtime": "mydemo", "runtimeConfig": demoConfig(100)})
		_, tv := s.startPod(t, id)
		mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
	})
}

// 9. What a runtime writes is attributed to it and caused by its pod_started;
// a person moving the task meanwhile does not break the pod.
func TestRuntimeEventsProvenance(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()

	t.Run("attribution", func(t *testing.T) {
		id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(100)})
		s.startPod(t, id)
		eventually(t, 5*time.Second, func() string {
			if tv := s.task(t, id); tv.Phase != "REVIEW" {
				return "phase " + tv.Phase
			}
			return ""
		})
		evs := s.events(t, id)
		started := ofType(evs, "pod_started")
		if len(started) != 1 {
			t.Fatalf("%d pod_started", len(started))
		}
		changes := ofType(evs, "phase_changed")
		if len(changes) != 3 {
			t.Fatalf("%d phase_changed events, want 3", len(changes))
		}
		for _, e := range append(changes, ofType(evs, "runtime.demo.step")...) {
			if e.ActorID != "runtime:demo" || e.CausationID != started[0].ID {
				t.Fatalf("%s v%d: actor %q causation %q, want runtime:demo caused by pod_started %s", e.Type, e.Version, e.ActorID, e.CausationID, started[0].ID)
			}
		}
	})

	t.Run("person-moves-task", func(t *testing.T) {
		const stepMs = 600
		id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(stepMs)})
		_, tv := s.startPod(t, id)
		pid := tv.Pod.PID
		next := map[string]string{"SPEC_CLARIFICATION": "PLANNING", "PLANNING": "DEVELOPMENT", "DEVELOPMENT": "REVIEW"}
		for tv.Phase != "REVIEW" {
			data, errs := s.do(t, transitionQ, map[string]any{"id": id, "to": next[tv.Phase]})
			if len(errs) > 0 && errs[0].Extensions.Reason != "INVALID_TRANSITION" { // the runtime may step first
				t.Fatalf("transitionPhase: %v", errs)
			}
			_ = data
			tv = s.task(t, id)
		}
		// The runtime learns where the person put the task (it asks the
		// host before each step) and carries on from REVIEW.
		eventually(t, 5*time.Second, func() string {
			var live struct{ Phase string }
			tv = s.task(t, id)
			_ = json.Unmarshal(tv.Pod.Live, &live)
			if live.Phase != "REVIEW" {
				return "live " + string(tv.Pod.Live)
			}
			return ""
		})
		time.Sleep(2 * stepMs * time.Millisecond)
		tv = s.task(t, id)
		if tv.Pod.State != "RUNNING" || tv.Pod.PID != pid || tv.Phase != "REVIEW" || tv.Status != "ACTIVE" {
			t.Fatalf("after a person moved the task: pod %s pid %d (was %d) phase %s status %s, want RUNNING same pid REVIEW ACTIVE",
				tv.Pod.State, tv.Pod.PID, pid, tv.Phase, tv.Status)
		}
		if n := len(s.events(t, id, "pod_crashed")); n != 0 {
			t.Fatalf("%d pod_crashed events", n)
		}
		mustBeOurRunningPlugin(t, h, pid, "demo")
		for _, e := range s.events(t, id, "phase_changed") {
			if e.ActorID != "local" && e.ActorID != "runtime:demo" {
				t.Fatalf("phase_changed by %q", e.ActorID)
			}
		}
	})
}
