package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHostSilentPodIsLostAndRestarted pauses a real server (SIGSTOP) long
// enough for its plugins to give up on it (IPA_PLUGIN_ORPHAN_GRACE=3s: the server polls every second), then
// lets it go on (SIGCONT). It still owns its pods, so it must record what
// happened as a loss — pod_lost with reason host_silent — and apply each
// task's restart policy: the task with autoRestart runs again, the one
// without stays CRASHED. Never pod_stopped with reason exited: the work did
// not finish.
func TestHostSilentPodIsLostAndRestarted(t *testing.T) {
	h := newHome(t)
	h.env = []string{"IPA_PLUGIN_ORPHAN_GRACE=3s"}
	s := h.start()
	restarted := s.createTask(t, map[string]any{"runtime": "demo", "runtimeConfig": demoConfig(3_600_000), "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 3, "windowSeconds": 600, "initialBackoffMs": 100, "maxBackoffMs": 200}})
	kept := s.createTask(t, map[string]any{"runtime": "demo", "runtimeConfig": demoConfig(3_600_000), "autoStart": true})
	r1 := s.waitPod(t, restarted, "RUNNING", "ACTIVE", 0, 30*time.Second)
	k1 := s.waitPod(t, kept, "RUNNING", "ACTIVE", 0, 30*time.Second)

	s.kill(syscall.SIGSTOP)
	// The plugins notice the silence, stop their work and exit; the paused
	// server cannot reap them, so they wait as zombies.
	eventually(t, 60*time.Second, func() string {
		for _, pid := range []int{r1.Pod.PID, k1.Pod.PID} {
			if alive(pid) {
				return "a plugin still runs while its server is paused"
			}
		}
		return ""
	})
	s.kill(syscall.SIGCONT)

	r2 := s.waitPod(t, restarted, "RUNNING", "ACTIVE", r1.Pod.PID, 60*time.Second)
	s.waitPod(t, kept, "CRASHED", "INACTIVE", 0, 60*time.Second)
	for _, id := range []string{restarted, kept} {
		evs := s.events(t, id, "pod_lost", "pod_stopped", "pod_crashed")
		if len(evs) != 1 || evs[0].Type != "pod_lost" {
			t.Fatalf("task %s: want one pod_lost, got %v", id, evs)
		}
		if reason := dataField[string](t, evs[0], "reason"); reason != "host_silent" {
			t.Errorf("task %s: pod_lost reason %q, want host_silent", id, reason)
		}
	}
	starts := s.events(t, restarted, "pod_started")
	if n := len(starts); n != 2 || dataField[string](t, starts[1], "trigger") != "restart" || dataField[int](t, starts[1], "pid") != r2.Pod.PID {
		t.Errorf("task with autoRestart: pod_started %v, want the first run then a restart as pid %d", starts, r2.Pod.PID)
	}
	if starts := s.events(t, kept, "pod_started"); len(starts) != 1 {
		t.Errorf("task without autoRestart started again: %v", starts)
	}
	if tv := s.task(t, kept); len(tv.Pod.Crashes) == 0 || tv.Pod.Crashes[0].Reason != "lost" {
		t.Errorf("task without autoRestart: crashes %+v, want the loss first", tv.Pod.Crashes)
	}
	if msgs := s.crashMessages(t, kept); len(msgs) == 0 || msgs[0].Message == nil || !strings.Contains(*msgs[0].Message, "server was silent") {
		t.Errorf("task without autoRestart: crash messages %+v, want the silent server named", msgs)
	}
}
