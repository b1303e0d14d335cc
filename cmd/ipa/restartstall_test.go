package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestScheduledRestartUnderLoad replays, on one SQLite server, the sequence
// after which a scheduled restart was once seen to stall for more than 5 s
// on a machine whose two cores were busy: a few demo pods started, stopped
// and crashed first, then a demo pod with a fast restart policy whose plugin
// is SIGKILLed 20–50 ms after it runs. Each round waits for the restart; a
// restart not seen within stallAfter is a stall: the server is sent SIGQUIT,
// so its log ends with every goroutine's stack (what held the restart), and
// the test fails with the log's path. It asserts a duration, so it is opt-in
// (run it beside `yes > /dev/null` on every core):
//
//	IPA_STALL=1 [IPA_STALL_ROUNDS=100] [IPA_STALL_LOG=/tmp/stall.log] go test -count=1 -run TestScheduledRestartUnderLoad -v ./cmd/ipa/
func TestScheduledRestartUnderLoad(t *testing.T) {
	if os.Getenv("IPA_STALL") != "1" {
		t.Skip("set IPA_STALL=1 to run the scheduled-restart stall hunt")
	}
	const stallAfter = 5 * time.Second
	rounds := 40
	if v := os.Getenv("IPA_STALL_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("IPA_STALL_ROUNDS=%q", v)
		}
	}
	logPath := os.Getenv("IPA_STALL_LOG")
	if logPath == "" {
		logPath = t.TempDir() + "/server.log"
	}
	policy := map[string]any{"autoRestart": true, "maxAttempts": 2, "windowSeconds": 60, "initialBackoffMs": 50, "maxBackoffMs": 200}
	h := newHome(t)
	s := h.start()
	var took []time.Duration
	for round := range rounds {
		// The pods before: one started and stopped, one started and
		// crashed without a policy, one crashed and restarted by its policy.
		stopped := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true})
		crashed := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true})
		restarted := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true, "restartPolicy": policy})
		s.waitPod(t, stopped, "RUNNING", "", 0, 30*time.Second)
		s.must(t, stopPodQ, map[string]any{"id": stopped, "r": "round " + fmt.Sprint(round)}, nil)
		c := s.waitPod(t, crashed, "RUNNING", "", 0, 30*time.Second)
		_ = syscall.Kill(c.Pod.PID, syscall.SIGKILL)
		r := s.waitPod(t, restarted, "RUNNING", "", 0, 30*time.Second)
		_ = syscall.Kill(r.Pod.PID, syscall.SIGKILL)
		s.waitPod(t, crashed, "CRASHED", "", 0, 30*time.Second)

		id := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true, "restartPolicy": policy})
		var tv taskView
		eventually(t, 30*time.Second, func() string {
			if tv = s.task(t, id); tv.Pod.State != "RUNNING" || tv.Pod.PID <= 0 {
				return "pod " + tv.Pod.State
			}
			return ""
		})
		time.Sleep(time.Duration(20+rand.IntN(31)) * time.Millisecond)
		_ = syscall.Kill(tv.Pod.PID, syscall.SIGKILL)
		began := time.Now()
		for {
			v := s.task(t, id)
			if v.Pod.State == "RUNNING" && v.Pod.PID != tv.Pod.PID {
				break
			}
			if time.Since(began) > stallAfter {
				s.kill(syscall.SIGQUIT)
				select {
				case <-s.exited:
				case <-time.After(10 * time.Second):
				}
				_ = os.WriteFile(logPath, []byte(s.log.String()), 0o644)
				t.Fatalf("round %d: the restart of %s is not done %s after the kill (pod %s, restarts %d); server log with goroutine stacks: %s",
					round, id, stallAfter, v.Pod.State, v.Pod.Restarts, logPath)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = append(took, time.Since(began))
		for _, done := range []string{restarted, id} {
			s.must(t, stopPodQ, map[string]any{"id": done, "r": "next round"}, nil)
		}
	}
	t.Logf("%d restarts after a kill, slowest %s", len(took), slowest(took))
}

func slowest(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
