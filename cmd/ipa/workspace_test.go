package main

// Workspaces, onSuccess and the last exit through the real binary: a
// sandboxed command keeps its files across its pod's and the server's
// restarts, the workspace is measured, removed with its task and capped by
// --workspace-max-bytes; a command that exits 0 completes its task when
// asked to; the pod shows how it last ended.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type exitView struct {
	ExitCode   *int    `json:"exitCode"`
	Signal     *string `json:"signal"`
	DurationMs int     `json:"durationMs"`
	Reason     string  `json:"reason"`
}

type wsTaskView struct {
	Status    string
	Workspace *struct{ SizeBytes int64 }
	Pod       struct {
		State    string
		LastExit *exitView
	}
}

func (s *server) wsTask(t *testing.T, id string) wsTaskView {
	t.Helper()
	var out struct{ Task wsTaskView }
	s.must(t, `query($id: ID!) { task(id: $id) { status workspace { sizeBytes } pod { state lastExit { exitCode signal durationMs reason } } } }`, map[string]any{"id": id}, &out)
	return out.Task
}

// waitPodStopped waits until the task's pod is STOPPED (its plugin's exit
// recorded) and returns the task then.
func (s *server) waitPodStopped(t *testing.T, id string) wsTaskView {
	t.Helper()
	var tv wsTaskView
	eventually(t, 30*time.Second, func() string {
		if tv = s.wsTask(t, id); tv.Pod.State != "STOPPED" || tv.Pod.LastExit == nil {
			return "the pod has not stopped: " + tv.Pod.State
		}
		return ""
	})
	return tv
}

// waitEnded waits for the task's n-th runtime.exec.exited.
func (s *server) waitEnded(t *testing.T, id string, n int) event {
	t.Helper()
	var evs []event
	eventually(t, 60*time.Second, func() string {
		if evs = s.events(t, id, "runtime.exec.exited"); len(evs) < n {
			return "the command has not ended"
		}
		return ""
	})
	return evs[n-1]
}

func TestWorkspaceKeptMeasuredAndRemoved(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	// Each run appends a line to a file in its workspace and prints it.
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", `echo run >> runs.txt; head -c 1000 /dev/zero > blob; wc -l < runs.txt`}, "env": tagEnv(h)}})
	if tv := s.wsTask(t, id); tv.Workspace != nil || tv.Pod.LastExit != nil {
		t.Fatalf("a task that never ran has a workspace or an exit: %+v", tv)
	}
	s.startPod(t, id)
	s.waitEnded(t, id, 1)
	// The plugin reports its command's end and then exits: a stop before
	// that exit is a shutdown of a live pod (and the restart resumes it).
	s.waitPodStopped(t, id)
	s.stop(t, 30*time.Second)
	s = h.start()
	s.startPod(t, id)
	s.waitEnded(t, id, 2)
	type line struct{ Stream, Text string }
	var last string
	for _, e := range s.events(t, id, "pod_output") {
		for _, l := range dataField[[]line](t, e, "lines") {
			last = l.Text
		}
	}
	if last != "2" {
		t.Fatalf("the second run, after a server restart, found %q lines in its workspace file, want 2", last)
	}
	tv := s.waitPodStopped(t, id)
	if tv.Workspace == nil || tv.Workspace.SizeBytes != 1000+int64(len("run\nrun\n")) {
		t.Fatalf("workspace = %+v, want %d bytes", tv.Workspace, 1000+len("run\nrun\n"))
	}
	if e := tv.Pod.LastExit; e.ExitCode == nil || *e.ExitCode != 0 || e.Signal != nil || e.Reason != "exited" {
		t.Fatalf("lastExit = %+v, want exit code 0, reason exited", e)
	}

	dir := filepath.Join(h.dataDir, "tasks", id)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("workspace dir: %v", err)
	}
	s.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "done") { task { id } } }`, map[string]any{"id": id}, nil)
	s.must(t, `mutation($id: ID!) { deleteTask(taskId: $id) { taskId } }`, map[string]any{"id": id}, nil)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the deleted task's workspace is still there: %v", err)
	}

	// A workspace whose task is gone (pruned while the server was down) is
	// swept at the next start; a live task's is kept.
	keep := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}, "env": tagEnv(h)}})
	s.startPod(t, keep)
	s.waitEnded(t, keep, 1)
	orphan := filepath.Join(h.dataDir, "tasks", "01a00000-0000-7000-8000-000000000000")
	if err := os.MkdirAll(orphan, 0o750); err != nil {
		t.Fatal(err)
	}
	s.stop(t, 30*time.Second)
	h.start()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("a workspace of no task survived the start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "tasks", keep)); err != nil {
		t.Fatalf("a live task's workspace was swept: %v", err)
	}
}

func TestWorkspaceLimitStopsThePod(t *testing.T) {
	t.Parallel()
	h := newHome(t, "--workspace-max-bytes", "100000")
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", `head -c 500000 /dev/zero > big; sleep 120`}, "env": tagEnv(h)}})
	s.startPod(t, id)
	ended := s.waitEnded(t, id, 1)
	if r := dataField[string](t, ended, "reason"); r != "limit: workspace" {
		t.Fatalf("exited %s, want reason limit: workspace", ended.Data)
	}
	if d := dataField[int64](t, ended, "durationMs"); d >= 120_000 {
		t.Fatalf("the command ran to its end: %s", ended.Data)
	}
}

func TestOnSuccessComplete(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	mk := func(onSuccess, script string) string {
		cfg := map[string]any{"command": []string{"sh", "-c", script}, "env": tagEnv(h)}
		if onSuccess != "" {
			cfg["onSuccess"] = onSuccess
		}
		return s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": cfg})
	}
	complete, fails, stop := mk("COMPLETE", "exit 0"), mk("COMPLETE", "exit 3"), mk("", "exit 0")
	for _, id := range []string{complete, fails, stop} {
		s.startPod(t, id)
	}
	eventually(t, 60*time.Second, func() string {
		if st := s.wsTask(t, complete).Status; st != "COMPLETED" {
			return "the COMPLETE task is " + st
		}
		return ""
	})
	evs := s.events(t, complete, "task_completed")
	if len(evs) != 1 || evs[0].ActorID != "runtime:exec" {
		raw, _ := json.Marshal(evs)
		t.Fatalf("task_completed events %s, want one by runtime:exec", raw)
	}
	for _, id := range []string{fails, stop} {
		s.waitEnded(t, id, 1)
		var tv wsTaskView
		eventually(t, 20*time.Second, func() string {
			if tv = s.wsTask(t, id); tv.Pod.LastExit == nil {
				return "no last exit"
			}
			return ""
		})
		if tv.Status == "COMPLETED" {
			t.Fatalf("task %s completed: %+v", id, tv)
		}
		if id == fails && (tv.Pod.LastExit.ExitCode == nil || *tv.Pod.LastExit.ExitCode != 3) {
			t.Fatalf("lastExit of exit 3: %+v", tv.Pod.LastExit)
		}
		if id == fails {
			// ipa task get shows it too.
			if r := s.on(t, "", 0, "get", id); !strings.Contains(r.stdout, "LAST EXIT") || !strings.Contains(r.stdout, "exit code 3") {
				t.Fatalf("ipa task get shows no last exit:\n%s", r.stdout)
			}
		}
	}
	s.mustFail(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
		map[string]any{"in": map[string]any{"title": "bad", "runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}, "onSuccess": "MAYBE"}}},
		"BAD_USER_INPUT", "INVALID_ARGUMENT")
}
