package main

import (
	"syscall"
	"testing"
	"time"
)

// windowPolicy restarts a crashed pod at most four times in ten minutes,
// after a back-off long enough for a test to act on the server meanwhile.
func windowPolicy() map[string]any {
	return map[string]any{"autoRestart": true, "maxAttempts": 4, "windowSeconds": 600, "initialBackoffMs": 1500, "maxBackoffMs": 1500}
}

// killPlugin SIGKILLs the task's running plugin and waits until the pod is
// in state (BACKOFF after a crash the policy restarts, FAILED after the last).
func killPlugin(t *testing.T, s *server, id, state string) {
	t.Helper()
	tv := s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 60*time.Second)
	_ = syscall.Kill(tv.Pod.PID, syscall.SIGKILL)
	eventually(t, 60*time.Second, func() string {
		if tv := s.task(t, id); tv.Pod.State != state {
			return "pod " + tv.Pod.State + ", want " + state
		}
		return ""
	})
}

// automaticStarts counts the task's pod_started events that followed a
// crash (trigger restart or resume) and its pod_crashed events.
func automaticStarts(t *testing.T, s *server, id string) (starts, crashes int) {
	t.Helper()
	for _, e := range s.events(t, id, "pod_started", "pod_crashed") {
		switch {
		case e.Type == "pod_crashed":
			crashes++
		case dataField[string](t, e, "trigger") != "auto_start":
			starts++
		}
	}
	return starts, crashes
}

// TestCleanRestartKeepsRestartWindow stops the server cleanly (SIGTERM)
// while a crash-looping pod backs off. The server resumes the pod when it
// comes back, but the restart window's accounting goes on: the fifth crash
// inside the window spends the limit (FAILED), and the pod never started
// after a crash more than maxAttempts times.
func TestCleanRestartKeepsRestartWindow(t *testing.T) {
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "demo", "runtimeConfig": demoConfig(3_600_000), "autoStart": true, "restartPolicy": windowPolicy()})
	killPlugin(t, s, id, "BACKOFF") // crash 1
	killPlugin(t, s, id, "BACKOFF") // crash 2
	s.stop(t, 60*time.Second)
	s = h.start()
	killPlugin(t, s, id, "BACKOFF") // crash 3, after the resume
	killPlugin(t, s, id, "BACKOFF") // crash 4
	killPlugin(t, s, id, "FAILED")  // crash 5: more than maxAttempts in the window
	starts, crashes := automaticStarts(t, s, id)
	if crashes != 5 || starts != 4 {
		t.Errorf("%d crashes and %d starts after a crash, want 5 and 4", crashes, starts)
	}
	if n := len(s.events(t, id, "pod_restart_limit_reached")); n != 1 {
		t.Errorf("%d pod_restart_limit_reached, want 1", n)
	}
}

// TestKilledServerKeepsScheduledRestart kills the server (SIGKILL) while a
// crashed pod backs off. Nothing ran for the pod then, so nothing is lost and
// no attempt is spent: the server that comes back keeps the scheduled
// restart, and the window still allows the remaining attempts.
func TestKilledServerKeepsScheduledRestart(t *testing.T) {
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "demo", "runtimeConfig": demoConfig(3_600_000), "autoStart": true, "restartPolicy": windowPolicy()})
	killPlugin(t, s, id, "BACKOFF") // crash 1
	s.crash(t)
	s = h.start()
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 60*time.Second)
	if lost := s.events(t, id, "pod_lost"); len(lost) != 0 {
		t.Fatalf("a pod backing off when its server was killed was recorded lost: %s", lost[0].Data)
	}
	starts := s.events(t, id, "pod_started")
	if len(starts) != 2 || dataField[string](t, starts[1], "trigger") != "restart" {
		t.Fatalf("pod_started %v, want the first run and the scheduled restart", starts)
	}
	killPlugin(t, s, id, "BACKOFF") // crash 2
	killPlugin(t, s, id, "BACKOFF") // crash 3
	killPlugin(t, s, id, "BACKOFF") // crash 4
	killPlugin(t, s, id, "FAILED")  // crash 5
	if n, crashes := automaticStarts(t, s, id); crashes != 5 || n != 4 {
		t.Errorf("%d crashes and %d starts after a crash, want 5 and 4", crashes, n)
	}
}
