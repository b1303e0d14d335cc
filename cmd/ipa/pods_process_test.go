package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The processes of exec pods through the real binary: one command per task
// whatever happens to its plugin, none once the pod or the server is gone.

// commandPids lists the home's live processes running program (argv[0]).
func (h *home) commandPids(program string) []int {
	var out []int
	for _, pid := range taggedPids(h.tag) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		if argv0, _, _ := strings.Cut(string(b), "\x00"); argv0 == program && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// Twenty times: SIGKILL the exec plugin, the policy restarts it. At no
// moment do two copies of the task's command run, and none is left once the
// server stopped.
func TestExecKillRestartKeepsOneCommand(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec",
		"runtimeConfig": map[string]any{"command": []string{"sleep", "300"}, "env": tagEnv(h)},
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 100, "windowSeconds": 600, "initialBackoffMs": 10, "maxBackoffMs": 20},
	})
	_, tv := s.startPod(t, id)
	pid := tv.Pod.PID
	var sleeps []int
	for cycle := 0; cycle <= 20; cycle++ {
		mustBeOurRunningPlugin(t, h, pid, "exec")
		eventually(t, 5*time.Second, func() string {
			if sleeps = h.commandPids("sleep"); len(sleeps) != 1 {
				return fmt.Sprintf("cycle %d: sleep processes %v, want one", cycle, sleeps)
			}
			return ""
		})
		if cycle == 20 {
			break
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Until the restart runs, watch: never two commands at once.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n := h.commandPids("sleep"); len(n) > 1 {
				t.Fatalf("cycle %d: %d sleep processes at once: %v", cycle, len(n), n)
			}
			tv = s.task(t, id)
			if tv.Pod.State == "RUNNING" && tv.Pod.PID != pid && tv.Pod.PID > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: pod %s pid %d, not restarted", cycle, tv.Pod.State, tv.Pod.PID)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if slices.Contains(h.commandPids("sleep"), sleeps[0]) {
			t.Fatalf("cycle %d: the killed plugin's command %d is still alive", cycle, sleeps[0])
		}
		pid = tv.Pod.PID
	}
	crashes := s.events(t, id, "pod_crashed")
	if len(crashes) != 20 {
		t.Fatalf("%d pod_crashed events, want 20", len(crashes))
	}
	for _, e := range crashes {
		if dataField[string](t, e, "reason") != "signal" || dataField[string](t, e, "signal") != "SIGKILL" {
			t.Fatalf("pod_crashed %s, want reason signal, SIGKILL", e.Data)
		}
	}
	s.stop(t, 20*time.Second)
	if left := waitGone(taggedPids(h.tag), h.tag, 5*time.Second); len(left) > 0 {
		t.Fatalf("processes %v outlived the server's SIGTERM", left)
	}
}

// A server killed outright leaves its exec pods to the orphan grace: then
// the plugins stop their commands (and everything those started) and exit.
func TestExecOrphansEndAfterServerKill(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	h.env = []string{"IPA_PLUGIN_ORPHAN_GRACE=2s"}
	s := h.start()
	var ids []string
	for range 2 {
		id := s.createTask(t, map[string]any{"runtime": "exec",
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "sleep 300 & sleep 300; wait"}, "env": tagEnv(h)}})
		s.startPod(t, id)
		ids = append(ids, id)
	}
	eventually(t, 5*time.Second, func() string {
		if n := len(h.commandPids("sleep")); n != 4 {
			return fmt.Sprintf("%d sleep processes, want 4", n)
		}
		return ""
	})
	s.crash(t)
	// Within the grace the work goes on (a server may come back)…
	time.Sleep(500 * time.Millisecond)
	if n := len(h.commandPids("sleep")); n != 4 {
		t.Fatalf("%d sleep processes just after the server died, want 4 until the grace ends", n)
	}
	// …after it, nothing of the pods is left.
	if left := waitGone(taggedPids(h.tag), h.tag, 15*time.Second); len(left) > 0 {
		t.Fatalf("processes %v outlived the orphan grace", left)
	}
}

// exec's own endings: a timeout and a CPU limit, as the API reports them.
func TestExecCrashReasons(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	cases := []struct {
		config map[string]any
		reason string
		signal string
	}{
		{map[string]any{"command": []string{"sleep", "30"}, "timeoutMs": 300}, "timeout", "SIGTERM"},
		{map[string]any{"command": []string{"sh", "-c", "while :; do :; done"}, "limits": map[string]any{"cpuSeconds": 1}}, "limit: cpu", "SIGXCPU"},
		{map[string]any{"command": []string{"sh", "-c", "exit 7"}}, "exited", ""},
	}
	for _, c := range cases {
		c.config["env"] = tagEnv(h)
		id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": c.config})
		s.startPod(t, id)
		var crashed []event
		eventually(t, 15*time.Second, func() string {
			if crashed = s.events(t, id, "pod_crashed"); len(crashed) == 0 {
				return "no pod_crashed for " + c.reason
			}
			return ""
		})
		e := crashed[0]
		if dataField[string](t, e, "reason") != c.reason || dataField[string](t, e, "signal") != c.signal || dataField[string](t, e, "message") == "" {
			t.Fatalf("pod_crashed %s, want reason %q, signal %q and a message", e.Data, c.reason, c.signal)
		}
		var out struct {
			Task struct{ Pod struct{ Crashes []crash } }
		}
		s.must(t, lastCrashesQ, map[string]any{"id": id}, &out)
		if cs := out.Task.Pod.Crashes; len(cs) != 1 || cs[0].Reason != c.reason {
			t.Fatalf("crashes(last: 1) = %+v, want reason %q", cs, c.reason)
		}
	}
}
