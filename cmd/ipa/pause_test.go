package main

// Pause and resume through the real binary: the exec command's processes
// stop (state T) while the plugin keeps answering, the pod stays PAUSED
// across a server killed outright and reattached, and resumes.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPauseSurvivesServerRestartAndResumes(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", `i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.05; done`}, "env": tagEnv(h)}})
	_, tv := s.startPod(t, id)
	plugin := tv.Pod.PID
	countFile := filepath.Join(h.dataDir, "tasks", id, "count")
	count := func() int {
		b, _ := os.ReadFile(countFile)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	eventually(t, 30*time.Second, func() string {
		if count() < 3 {
			return "the command has not counted yet"
		}
		return ""
	})
	s.mustFail(t, `mutation { pausePod(taskId: "no-such-task") { task { id } } }`, nil, "NOT_FOUND", "")

	var out struct{ PausePod struct{ Task taskView } }
	s.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { `+taskFields+` } } }`, map[string]any{"id": id}, &out)
	if st := out.PausePod.Task.Pod.State; st != "PAUSED" {
		t.Fatalf("pod state after pausePod: %s", st)
	}
	shells := h.commandPids("sh")
	if len(shells) == 0 {
		t.Fatal("no command process found")
	}
	// SIGSTOP takes effect when the process is next scheduled: on a busy
	// machine /proc may show it running for a moment after the answer.
	eventually(t, 10*time.Second, func() string {
		for _, pid := range shells {
			if st := procState(pid); st != "T" {
				return fmt.Sprintf("command process %d is in state %q, want T (stopped)", pid, st)
			}
		}
		return ""
	})
	if st := procState(plugin); st == "T" || st == "" {
		t.Fatalf("the plugin %d is in state %q: it must keep answering", plugin, st)
	}
	frozen := count()
	time.Sleep(1500 * time.Millisecond)
	if c := count(); c != frozen {
		t.Fatalf("a paused command kept counting: %d then %d", frozen, c)
	}

	// The server dies outright; the next one reattaches the pod, PAUSED.
	s.kill(syscall.SIGKILL)
	<-s.exited
	s = h.start()
	tv = s.waitPod(t, id, "PAUSED", "ACTIVE", 0, 30*time.Second)
	if tv.Pod.PID != plugin {
		t.Fatalf("pod pid %d after the restart, want the reattached plugin %d", tv.Pod.PID, plugin)
	}
	if c := count(); c != frozen {
		t.Fatalf("the command counted across the restart: %d then %d", frozen, c)
	}
	if n := len(s.events(t, id, "pod_crashed", "pod_lost")); n != 0 {
		t.Fatalf("%d crash or lost events for a paused pod", n)
	}

	s.must(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 10*time.Second)
	eventually(t, 20*time.Second, func() string {
		if count() <= frozen+2 {
			return "the resumed command does not count"
		}
		return ""
	})
	if p, r := len(s.events(t, id, "pod_paused")), len(s.events(t, id, "pod_resumed")); p != 1 || r != 1 {
		t.Fatalf("%d pod_paused and %d pod_resumed events, want 1 and 1", p, r)
	}
	// Paused again, then stopped: the stop ends it cleanly.
	s.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "STOPPED", "", 0, 30*time.Second)
	s.mustFail(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, "CONFLICT", "NOT_RUNNING")
	if left := h.commandPids("sh"); len(left) > 0 {
		t.Fatalf("command processes left after the stop: %v", left)
	}
}

// A clean shutdown leaves a paused pod paused: the next server (which
// resumes the pods it stopped) reattaches the same plugin, PAUSED, and the
// command counts on from where it stopped once resumed.
func TestPauseSurvivesCleanRestart(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", `i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.05; done`}, "env": tagEnv(h)}})
	_, tv := s.startPod(t, id)
	plugin := tv.Pod.PID
	countFile := filepath.Join(h.dataDir, "tasks", id, "count")
	count := func() int {
		b, _ := os.ReadFile(countFile)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	eventually(t, 30*time.Second, func() string {
		if count() < 3 {
			return "the command has not counted yet"
		}
		return ""
	})
	s.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "PAUSED", "ACTIVE", 0, 10*time.Second)
	shells := h.commandPids("sh")
	if len(shells) == 0 {
		t.Fatal("no command process found")
	}
	frozen := count()

	s.stop(t, 60*time.Second) // SIGTERM: a clean shutdown
	if st := procState(plugin); st == "" {
		t.Fatalf("the paused pod's plugin %d ended with the clean shutdown", plugin)
	}
	// A process the SIGSTOP caught in an uninterruptible wait (state D,
	// a page fault or a disk read on a loaded machine) stops as it leaves it.
	eventually(t, 10*time.Second, func() string {
		for _, pid := range shells {
			if st := procState(pid); st != "T" {
				return fmt.Sprintf("command process %d is in state %q after the shutdown, want T (stopped)", pid, st)
			}
		}
		return ""
	})
	s = h.start("--resume-pods=true")
	tv = s.waitPod(t, id, "PAUSED", "ACTIVE", 0, 30*time.Second)
	if tv.Pod.PID != plugin {
		t.Fatalf("pod pid %d after the restart, want the same plugin %d", tv.Pod.PID, plugin)
	}
	time.Sleep(time.Second)
	if c := count(); c != frozen {
		t.Fatalf("the paused command counted across the restart: %d then %d", frozen, c)
	}
	if n := len(s.events(t, id, "pod_stopped", "pod_crashed", "pod_lost")); n != 0 {
		t.Fatalf("%d stop, crash or lost events for a paused pod across a clean restart", n)
	}
	if n := len(s.events(t, id, "pod_started")); n != 1 {
		t.Fatalf("%d pod_started events, want 1 (the pod was not started again)", n)
	}

	s.must(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 10*time.Second)
	eventually(t, 20*time.Second, func() string {
		if count() <= frozen+2 {
			return "the resumed command does not count on"
		}
		return ""
	})
	if c := count(); c < frozen {
		t.Fatalf("the count went back from %d to %d: the command restarted", frozen, c)
	}
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "STOPPED", "", 0, 30*time.Second)
}

// The demo runtime pauses itself (pod.Pauser): pausePod stops its walk, not
// its process, and the walk goes on after resumePod.
func TestPauseOfARuntimeThatPausesItself(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "demo", "runtimeConfig": map[string]any{"stepMs": 1500}})
	_, tv := s.startPod(t, id)
	s.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "PAUSED", "ACTIVE", 0, 10*time.Second)
	if st := procState(tv.Pod.PID); st == "T" || st == "" {
		t.Fatalf("the demo plugin %d is in state %q: it pauses itself, not by a signal", tv.Pod.PID, st)
	}
	// A step under way when the pause came may end: then nothing moves.
	time.Sleep(2 * time.Second)
	steps, phase := len(s.events(t, id, "runtime.demo.step")), s.task(t, id).Phase
	time.Sleep(4 * time.Second) // more than two steps of 1.5 s
	if n, p := len(s.events(t, id, "runtime.demo.step")), s.task(t, id).Phase; n != steps || p != phase {
		t.Fatalf("a paused demo went on: %d steps in %s, then %d in %s", steps, phase, n, p)
	}
	if phase == "REVIEW" {
		t.Fatalf("the demo reached REVIEW before its pause took effect: the test proves nothing")
	}
	s.must(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 10*time.Second)
	eventually(t, 30*time.Second, func() string {
		if p := s.task(t, id).Phase; p != "REVIEW" {
			return "the resumed demo is in " + p
		}
		return ""
	})
	// Paused again, then stopped: Stop ends the paused walk.
	s.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	tv = s.waitPod(t, id, "STOPPED", "", 0, 30*time.Second)
	if st := s.events(t, id, "pod_stopped"); len(st) != 1 || dataField[bool](t, st[0], "forced") {
		t.Fatalf("pod_stopped events %+v, want one, not forced", st)
	}
	if n := len(s.events(t, id, "pod_crashed", "pod_lost")); n != 0 {
		t.Fatalf("%d crash or lost events", n)
	}
}
