package main

import (
	"fmt"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"
)

// TestPauseRecoveryMeasurement measures how an owner on PostgreSQL
// (--lease-ttl 3s) gets back to work after it was paused (SIGSTOP) for half
// the TTL and for just under it: from SIGCONT until its heartbeat is fresh
// again and until every pod of its is RUNNING with a live process. Half the
// TTL is within the plugins' silence grace (three quarters of the TTL), so
// they keep their work; just under the TTL is past it, so they stop it and
// the owner records pod_lost host_silent and restarts them by their policy.
// Only one instance runs: nobody may take the pods over, what is measured is
// the owner's own recovery. It reports durations, so it is opt-in:
//
//	IPA_PAUSE_MEASURE=1 [IPA_PAUSE_ROUNDS=3] go test -count=1 -run TestPauseRecoveryMeasurement -v ./cmd/ipa/
func TestPauseRecoveryMeasurement(t *testing.T) {
	if os.Getenv("IPA_PAUSE_MEASURE") != "1" {
		t.Skip("set IPA_PAUSE_MEASURE=1 to measure the recovery of a paused owner")
	}
	rounds := 3
	if v := os.Getenv("IPA_PAUSE_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("IPA_PAUSE_ROUNDS=%q", v)
		}
	}
	const pods = 10
	for _, pause := range []time.Duration{testTTL / 2, testTTL - 200*time.Millisecond} {
		t.Run(pause.String(), func(t *testing.T) {
			var beat, run []time.Duration
			lost := 0
			for range rounds {
				b, r, n := pauseOnce(t, pause, pods)
				beat, run = append(beat, b), append(run, r)
				lost += n
			}
			t.Logf("paused %s (%d rounds, %d pods each): heartbeat fresh after %s, all pods RUNNING after %s; pods lost and restarted: %d of %d",
				pause, rounds, pods, spread(beat), spread(run), lost, rounds*pods)
		})
	}
}

// pauseOnce runs one owner with n auto-restart demo pods, pauses it for
// pause and returns, from SIGCONT, when its heartbeat was fresh again, when
// all its pods ran again, and how many pods had to be restarted.
func pauseOnce(t *testing.T, pause time.Duration, n int) (beat, run time.Duration, lost int) {
	c := newCluster(t)
	a := c.start("A")
	defer a.kill(syscall.SIGKILL)
	ids := make([]string, n)
	pids := map[string]int{}
	for i := range ids {
		ids[i] = a.createTask(t, autoRestartTask(fmt.Sprintf("paused owner %d", i)))
	}
	for _, id := range ids {
		pids[id] = a.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second).Pod.PID
	}
	// A heartbeat just before the pause, as in any steady state.
	time.Sleep(testHeartbeat)

	a.kill(syscall.SIGSTOP)
	time.Sleep(pause)
	a.kill(syscall.SIGCONT)
	cont := time.Now()

	// Each time is taken when the answer that shows it arrived, so it
	// includes that request's round trip.
	for deadline := cont.Add(60 * time.Second); beat == 0 || run == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("60s after SIGCONT: heartbeat fresh %v, all pods running %v", beat != 0, run != 0)
		}
		if beat == 0 {
			if in, ok := a.instances(t)["A"]; ok && in.Alive {
				if at, err := time.Parse(time.RFC3339Nano, in.HeartbeatAt); err == nil && at.After(cont) {
					beat = time.Since(cont)
				}
			}
		}
		if run == 0 {
			all := true
			for _, id := range ids {
				if tv := a.task(t, id); tv.Pod.State != "RUNNING" || !alive(tv.Pod.PID) {
					all = false
					break
				}
			}
			if all {
				run = time.Since(cont)
			}
		}
	}
	for _, id := range ids {
		if a.task(t, id).Pod.PID != pids[id] {
			lost++
		}
	}
	return beat, run, lost
}

// spread renders durations as "min–max (median m)".
func spread(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("%s–%s (median %s)", r(s[0]), r(s[len(s)-1]), r(s[len(s)/2]))
}
