package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The default instance id names no path: it is shown to every viewer.
// A server that ran under the earlier default (host name + data directory)
// keeps its pods under the new one: after a kill -9 it reattaches them, and
// after a clean shutdown it resumes them.
func TestFormerDefaultInstanceID(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	// underFormerID starts a server under the former default id with two
	// running demo pods.
	underFormerID := func(t *testing.T, stepMs int) (h *home, former string, s *server, ids []string, pids []int) {
		h = newHome(t)
		former = host + ":" + h.dataDir
		s = h.start("--instance-id", former)
		ids, pids = startDemoPods(t, h, s, 2, stepMs)
		return h, former, s, ids, pids
	}

	t.Run("ReattachAfterKill", func(t *testing.T) {
		t.Parallel()
		h, former, s, ids, pids := underFormerID(t, 500)
		if o := s.podOwner(t, ids[0]); o != former {
			t.Fatalf("owner under the former default %q, want %q", o, former)
		}
		s.crash(t)

		s2 := h.start() // the default id
		for i, id := range ids {
			eventually(t, 10*time.Second, func() string {
				if evs := s2.events(t, id, "pod_reattached", "pod_lost"); len(evs) == 0 {
					return "no pod_reattached yet"
				}
				return ""
			})
			evs := s2.events(t, id, "pod_reattached", "pod_lost", "pod_crashed")
			if len(evs) != 1 || evs[0].Type != "pod_reattached" || dataField[int](t, evs[0], "pid") != pids[i] {
				t.Fatalf("task %d: %+v, want one pod_reattached with pid %d", i, evs, pids[i])
			}
			owner := s2.podOwner(t, id)
			if owner == former || strings.Contains(owner, h.dataDir) || !strings.HasPrefix(owner, host+":") {
				t.Fatalf("task %d: owner %q, want the new default (host and a digest, no path)", i, owner)
			}
		}
		for id := range s2.instances(t) {
			if strings.Contains(id, h.dataDir) {
				t.Fatalf("instances list %q, which names the data directory", id)
			}
		}
		s2.stop(t, 12*time.Second)
		mustBeGone(t, h, 2*time.Second, pids...)
	})

	t.Run("ResumeAfterCleanShutdown", func(t *testing.T) {
		t.Parallel()
		h, _, s, ids, pids := underFormerID(t, 150)
		s.stop(t, 12*time.Second)
		mustBeGone(t, h, 2*time.Second, pids...)

		s2 := h.start() // the default id
		for i, id := range ids {
			tv := s2.waitPod(t, id, "RUNNING", "ACTIVE", pids[i], 10*time.Second)
			mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
			evs := s2.events(t, id, "pod_started")
			if len(evs) != 2 || dataField[string](t, evs[1], "trigger") != "resume" {
				t.Fatalf("task %d: pod_started %+v, want a manual start and a resume", i, evs)
			}
		}
		s2.stop(t, 12*time.Second)
	})
}
