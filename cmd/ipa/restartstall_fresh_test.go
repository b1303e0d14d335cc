package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScheduledRestartOnFreshServers replays the stall as it was reported:
// each run is a fresh SQLite server on which a few demo pods are started,
// stopped and crashed (by SIGKILL of the plugin, of its process group, and
// one restarted by its policy) before a pod with a fast restart policy has
// its plugin SIGKILLed 20–50 ms after it runs. A restart not seen within
// stallAfter fails the run as TestScheduledRestartUnderLoad does (SIGQUIT,
// log with every goroutine's stack). Opt-in, like that test:
//
//	IPA_STALL=1 [IPA_STALL_RUNS=30] [IPA_STALL_LOG=/tmp/stall.log] go test -count=1 -run TestScheduledRestartOnFreshServers -v ./cmd/ipa/
func TestScheduledRestartOnFreshServers(t *testing.T) {
	if os.Getenv("IPA_STALL") != "1" {
		t.Skip("set IPA_STALL=1 to run the scheduled-restart stall hunt")
	}
	const stallAfter = 5 * time.Second
	runs := 30
	if v := os.Getenv("IPA_STALL_RUNS"); v != "" {
		if _, err := fmt.Sscan(v, &runs); err != nil || runs < 1 {
			t.Fatalf("IPA_STALL_RUNS=%q", v)
		}
	}
	logPath := os.Getenv("IPA_STALL_LOG")
	policy := map[string]any{"autoRestart": true, "maxAttempts": 2, "windowSeconds": 60, "initialBackoffMs": 50, "maxBackoffMs": 200}
	var took []time.Duration
	for run := range runs {
		ok := t.Run(fmt.Sprint("run", run), func(t *testing.T) {
			h := newHome(t)
			s := h.start()
			stopped := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true})
			crashed := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true})
			grouped := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true})
			restarted := s.createTask(t, map[string]any{"runtime": "demo", "autoStart": true, "restartPolicy": policy})
			s.waitPod(t, stopped, "RUNNING", "", 0, 30*time.Second)
			s.must(t, stopPodQ, map[string]any{"id": stopped, "r": "before"}, nil)
			c := s.waitPod(t, crashed, "RUNNING", "", 0, 30*time.Second)
			_ = syscall.Kill(c.Pod.PID, syscall.SIGKILL)
			g := s.waitPod(t, grouped, "RUNNING", "", 0, 30*time.Second)
			_ = syscall.Kill(-g.Pod.PID, syscall.SIGKILL)
			r := s.waitPod(t, restarted, "RUNNING", "", 0, 30*time.Second)
			_ = syscall.Kill(r.Pod.PID, syscall.SIGKILL)

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
					path := logPath
					if path == "" {
						path = os.TempDir() + "/ipa-stall-" + id + ".log"
					}
					_ = os.WriteFile(path, []byte(s.log.String()), 0o644)
					t.Fatalf("the restart of %s is not done %s after the kill (pod %s, restarts %d); server log with goroutine stacks: %s",
						id, stallAfter, v.Pod.State, v.Pod.Restarts, path)
				}
				time.Sleep(10 * time.Millisecond)
			}
			d := time.Since(began)
			took = append(took, d)
			if d > time.Second {
				// Where the time went: the server's lines about the pod.
				var lines []string
				for _, l := range strings.Split(s.log.String(), "\n") {
					if strings.Contains(l, id) && !strings.Contains(l, "source=plugin") {
						lines = append(lines, l)
					}
				}
				t.Logf("restart took %s (killed at %s):\n%s", d, began.UTC().Format("15:04:05.000"), strings.Join(lines, "\n"))
			}
		})
		if !ok {
			break
		}
	}
	t.Logf("%d restarts after a kill, slowest %s", len(took), slowest(took))
}
