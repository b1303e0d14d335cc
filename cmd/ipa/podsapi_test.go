package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pods, second round: failed starts are crashes, clean restarts resume,
// activePods lists live pods only, lost pods are crashes, the demo follows a
// person's phase change.

type crashMsg struct {
	Reason  string  `json:"reason"`
	Message *string `json:"message"`
}

type createdTask struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pod    struct {
		State   string     `json:"state"`
		Crashes []crashMsg `json:"crashes"`
	} `json:"pod"`
}

const createWithCrashesQ = `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id status pod { state crashes(last: 5) { reason message } } } } }`

// brokenPluginDir makes a --plugin-dir with one runtime, "broken", whose
// plugin exits at once with a complaint on stderr.
func brokenPluginDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken"), []byte("#!/bin/sh\necho 'model file missing' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (s *server) crashMessages(t *testing.T, id string) []crashMsg {
	t.Helper()
	var out struct {
		Task struct {
			Pod struct{ Crashes []crashMsg }
		}
	}
	s.must(t, `query($id: ID!) { task(id: $id) { pod { crashes(last: 10) { reason message } } } }`, map[string]any{"id": id}, &out)
	return out.Task.Pod.Crashes
}

// A createTask(autoStart) whose runtime fails to start answers the created
// task, not an error; the failure is a start_failed crash with a message;
// startPod alone still answers RUNTIME_FAILED and records the same crash.
func TestAutoStartFailureIsACrash(t *testing.T) {
	t.Parallel()
	plugins := brokenPluginDir(t)
	h := newHome(t)
	s := h.start("--plugin-dir", plugins)

	data, errs := s.do(t, createWithCrashesQ, map[string]any{"in": map[string]any{"title": "broken", "runtime": "broken", "autoStart": true}})
	if len(errs) > 0 {
		t.Fatalf("createTask(autoStart) with a failing runtime answered errors %v; the task was committed", errs)
	}
	var out struct {
		CreateTask *struct{ Task createdTask } `json:"createTask"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.CreateTask == nil || out.CreateTask.Task.ID == "" {
		t.Fatalf("createTask data %s (%v), want the created task", data, err)
	}
	task := out.CreateTask.Task
	if task.Status != "INACTIVE" || task.Pod.State != "CRASHED" || len(task.Pod.Crashes) != 1 || task.Pod.Crashes[0].Reason != "start_failed" {
		t.Fatalf("created task %+v, want INACTIVE with pod CRASHED and one start_failed crash", task)
	}
	msg := task.Pod.Crashes[0].Message
	if msg == nil || !strings.Contains(*msg, `"broken"`) || strings.Contains(*msg, "/") {
		t.Fatalf("crash message %v: want a sentence naming the runtime and no path", msg)
	}
	var n struct{ TaskCount int }
	s.must(t, `{ taskCount }`, nil, &n)
	if n.TaskCount != 1 {
		t.Fatalf("taskCount %d, want 1", n.TaskCount)
	}
	evs := s.events(t, task.ID)
	crashed := ofType(evs, "pod_crashed")
	if len(crashed) != 1 || dataField[string](t, crashed[0], "reason") != "start_failed" || dataField[string](t, crashed[0], "message") != *msg ||
		crashed[0].CausationID != evs[0].ID {
		t.Fatalf("pod_crashed %+v, want one start_failed with the message, caused by task_created", crashed)
	}
	if len(ofType(evs, "pod_started")) != 0 {
		t.Fatal("pod_started recorded for a start that failed")
	}

	s.mustFail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": task.ID}, "UNAVAILABLE", "RUNTIME_FAILED")
	if got := s.crashMessages(t, task.ID); len(got) != 2 || got[0].Reason != "start_failed" || got[0].Message == nil {
		t.Fatalf("crashes after startPod %+v, want two start_failed", got)
	}
	if tv := s.task(t, task.ID); tv.Pod.State != "CRASHED" {
		t.Fatalf("pod %s after a failed startPod, want CRASHED", tv.Pod.State)
	}

	// With automatic restarts the failed start backs off and is retried,
	// as any crash, until the limit.
	data, errs = s.do(t, createWithCrashesQ, map[string]any{"in": map[string]any{"title": "broken again", "runtime": "broken", "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 1, "windowSeconds": 60, "initialBackoffMs": 100, "maxBackoffMs": 100}}})
	if len(errs) > 0 {
		t.Fatalf("createTask: %v", errs)
	}
	if err := json.Unmarshal(data, &out); err != nil || out.CreateTask == nil {
		t.Fatalf("createTask data %s", data)
	}
	if st := out.CreateTask.Task.Pod.State; st != "BACKOFF" {
		t.Fatalf("pod %s after a failed auto start with auto restarts, want BACKOFF", st)
	}
	id := out.CreateTask.Task.ID
	s.waitPod(t, id, "FAILED", "INACTIVE", 0, 10*time.Second)
	var types []string
	for _, e := range s.events(t, id) {
		types = append(types, e.Type)
	}
	want := []string{"task_created", "pod_crashed", "pod_restart_scheduled", "pod_crashed", "pod_restart_limit_reached"}
	if !slices.Equal(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	s.stop(t, 12*time.Second)
}

// A clean shutdown stops the pods and the same instance's next start runs
// them again (pod_started trigger "resume"); pods stopped by a person, or
// never started, stay stopped; --resume-pods=false leaves them all stopped.
func TestCleanRestartResumesPods(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	ids, pids := startDemoPods(t, h, s, 2, 150)
	idle := s.createTask(t, map[string]any{"title": "never started", "runtimeConfig": demoConfig(150)})
	stopped := s.createTask(t, map[string]any{"title": "stopped by a person", "runtimeConfig": demoConfig(150)})
	_, tv := s.startPod(t, stopped)
	var sp struct{ StopPod taskPayload }
	s.must(t, stopPodQ, map[string]any{"id": stopped, "r": "not now"}, &sp)
	mustBeGone(t, h, 3*time.Second, tv.Pod.PID)

	s.stop(t, 12*time.Second)
	mustBeGone(t, h, 2*time.Second, pids...)

	s2 := h.start()
	for i, id := range ids {
		tv := s2.waitPod(t, id, "RUNNING", "ACTIVE", pids[i], 10*time.Second)
		mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
		evs := s2.events(t, id, "pod_started", "pod_stopped")
		if len(evs) != 3 {
			t.Fatalf("task %d: pod events %+v, want pod_started, pod_stopped, pod_started", i, evs)
		}
		if r, inst := dataField[string](t, evs[1], "reason"), dataField[string](t, evs[1], "instanceId"); r != "server_shutdown" || inst == "" {
			t.Fatalf("task %d: pod_stopped reason %q instanceId %q, want server_shutdown and the instance", i, r, inst)
		}
		if a, b := dataField[string](t, evs[0], "trigger"), dataField[string](t, evs[2], "trigger"); a != "manual" || b != "resume" {
			t.Fatalf("task %d: triggers %q, %q, want manual, resume", i, a, b)
		}
	}
	for _, id := range []string{idle, stopped} {
		if tv := s2.task(t, id); tv.Pod.State != "STOPPED" {
			t.Fatalf("task %s: pod %s after restart, want STOPPED (it was not running at shutdown)", id, tv.Pod.State)
		}
	}
	if n := len(s2.events(t, stopped, "pod_started")); n != 1 {
		t.Fatalf("the pod a person stopped was started %d times, want once", n)
	}
	var newPids []int
	for _, id := range ids {
		newPids = append(newPids, s2.task(t, id).Pod.PID)
	}
	s2.stop(t, 12*time.Second)
	mustBeGone(t, h, 2*time.Second, newPids...)

	s3 := h.start("--resume-pods=false")
	for _, id := range ids {
		if tv := s3.task(t, id); tv.Pod.State != "STOPPED" || tv.Status != "INACTIVE" {
			t.Fatalf("with --resume-pods=false: pod %s status %s, want STOPPED INACTIVE", tv.Pod.State, tv.Status)
		}
		if n := len(s3.events(t, id, "pod_started")); n != 2 {
			t.Fatalf("with --resume-pods=false: %d pod_started, want 2 (no resume)", n)
		}
	}
	if left := h.pluginPids("demo"); len(left) != 0 {
		t.Fatalf("plugins %v running with --resume-pods=false", left)
	}
	s3.stop(t, 12*time.Second)
}

// activePods lists live pods only; a pod found gone after a server crash is
// listed among the crashes as "lost".
func TestActivePodsAndLostCrashes(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	ids, pids := startDemoPods(t, h, s, 2, 200)
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitPod(t, ids[1], "CRASHED", "INACTIVE", 0, 5*time.Second)
	activeIDs := func(s *server) []string {
		var out struct {
			ActivePods []struct {
				ID  string
				Pod struct{ State string }
			}
		}
		s.must(t, `{ activePods { id pod { state } } }`, nil, &out)
		var got []string
		for _, a := range out.ActivePods {
			got = append(got, a.ID+":"+a.Pod.State)
		}
		return got
	}
	if got := activeIDs(s); !slices.Equal(got, []string{ids[0] + ":RUNNING"}) {
		t.Fatalf("activePods %v, want only the running pod %s", got, ids[0])
	}

	s.crash(t)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	mustBeGone(t, h, 3*time.Second, pids[0])
	s2 := h.start()
	eventually(t, 5*time.Second, func() string {
		if len(s2.events(t, ids[0], "pod_lost")) == 0 {
			return "no pod_lost yet"
		}
		return ""
	})
	crashes := s2.crashMessages(t, ids[0])
	if len(crashes) != 1 || crashes[0].Reason != "lost" || crashes[0].Message == nil || *crashes[0].Message == "" {
		t.Fatalf("crashes %+v, want one \"lost\" with a message", crashes)
	}
	if got := activeIDs(s2); len(got) != 0 {
		t.Fatalf("activePods %v after the pods crashed and were lost, want none", got)
	}
	s2.stop(t, 12*time.Second)
}

// The demo runtime, idle in REVIEW, notices a person sending the task back
// to DEVELOPMENT and walks it to REVIEW again.
func TestDemoFollowsAManualPhaseChange(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(50)})
	s.startPod(t, id)
	eventually(t, 10*time.Second, func() string {
		if p := s.task(t, id).Phase; p != "REVIEW" {
			return "phase " + p
		}
		return ""
	})
	var tp struct{ TransitionPhase taskPayload }
	s.must(t, transitionQ, map[string]any{"id": id, "to": "DEVELOPMENT"}, &tp)
	manual := len(s.events(t, id, "phase_changed"))
	eventually(t, 10*time.Second, func() string {
		if p := s.task(t, id).Phase; p != "REVIEW" {
			return "phase " + p + " (the demo did not notice the move)"
		}
		return ""
	})
	changes := s.events(t, id, "phase_changed")
	if len(changes) != manual+1 {
		t.Fatalf("%d phase changes after the manual one, want 1", len(changes)-manual)
	}
	last := changes[len(changes)-1]
	if last.ActorID != "runtime:demo" || dataField[string](t, last, "from") != "DEVELOPMENT" || dataField[string](t, last, "to") != "REVIEW" {
		t.Fatalf("last phase change %+v, want the demo moving DEVELOPMENT to REVIEW", last)
	}
	s.stop(t, 12*time.Second)
}
