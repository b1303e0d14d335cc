package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// An exec command asking without --key asks once across its pod's
// restarts: the restarted run gets the request its killed run asked (one
// pending request, whose answer reaches the new run), and an answer given
// while no pod ran; but an answer a run already got is not handed to the
// next run: started again, it asks anew.
func TestExecPodAsksOnceAcrossItsRestarts(t *testing.T) {
	t.Parallel()
	s := newHome(t).start()
	script := `"$IPA_BIN" pod ask --approval "Go?"; echo "exit=$?"`
	run := func(title string, restart bool) string {
		return s.createTask(t, map[string]any{"title": title, "runtime": "exec", "autoStart": true,
			"restartPolicy": map[string]any{"autoRestart": restart, "initialBackoffMs": 500, "maxBackoffMs": 500},
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", script}}})
	}
	restarted, down, again := run("restarted while asking", true), run("answered while down", false), run("asked again", false)
	first := map[string]requestView{}
	for _, id := range []string{restarted, down, again} {
		first[id] = s.waitPending(t, id)
	}
	kill := func(id string) {
		t.Helper()
		pid := s.task(t, id).Pod.PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() string {
			if tv := s.task(t, id); len(tv.Pod.Crashes) == 0 {
				return "no crash yet: " + tv.Pod.State
			}
			return ""
		})
	}
	approve := func(id, req string) {
		t.Helper()
		s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: true) { request { id } } }`, map[string]any{"r": req}, nil)
	}
	exits := func(id string) []string {
		var out []string
		for _, l := range s.outputLines(t, id) {
			if strings.HasPrefix(l, "exit=") {
				out = append(out, l)
			}
		}
		return out
	}
	count := func(id, typ string) int { return len(s.events(t, id, typ)) }

	// (1) Killed while asking, restarted by its policy: the new run asks
	// the same request again; one request is pending, and its answer
	// reaches the new run.
	kill(restarted)
	eventually(t, 60*time.Second, func() string {
		if n := count(restarted, "input_reasked"); n != 1 {
			return "the restarted run has not asked yet"
		}
		return ""
	})
	if p := s.pending(t, restarted); len(p) != 1 || p[0].ID != first[restarted].ID {
		t.Fatalf("pending after the restart: %+v, want only %s", p, first[restarted].ID)
	}
	if n := count(restarted, "pod_started"); n != 2 {
		t.Fatalf("%d pod_started", n)
	}
	approve(restarted, first[restarted].ID)
	if got := s.waitLine(t, restarted, "exit="); got != "exit=0" {
		t.Fatalf("the restarted run got %q", got)
	}

	// (2) Killed while asking, answered while no pod runs, started again:
	// the new run has the approval without a new request.
	kill(down)
	s.waitPod(t, down, "CRASHED", "", 0, 60*time.Second)
	approve(down, first[down].ID)
	s.startPod(t, down)
	if got := s.waitLine(t, down, "exit="); got != "exit=0" {
		t.Fatalf("the run started after the answer got %q", got)
	}
	if n, r := count(down, "input_requested"), count(down, "input_reasked"); n != 1 || r != 1 {
		t.Fatalf("%d input_requested, %d input_reasked; want 1 and 1", n, r)
	}

	// (3) Approved and done; started again by hand: a new request.
	approve(again, first[again].ID)
	if got := s.waitLine(t, again, "exit="); got != "exit=0" {
		t.Fatalf("the first run got %q", got)
	}
	eventually(t, 60*time.Second, func() string {
		if tv := s.task(t, again); tv.Pod.State == "RUNNING" {
			return "still running"
		}
		return ""
	})
	s.startPod(t, again)
	second := s.waitPending(t, again)
	if second.ID == first[again].ID || second.State != "PENDING" {
		t.Fatalf("the second run's request %+v reuses the first's answer", second)
	}
	if n := count(again, "input_reasked"); n != 0 {
		t.Fatalf("%d input_reasked", n)
	}
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: false) { request { id } } }`, map[string]any{"r": second.ID}, nil)
	eventually(t, 60*time.Second, func() string {
		if got := exits(again); len(got) != 2 || got[1] != "exit=1" {
			return "exits " + strings.Join(got, ",")
		}
		return ""
	})

	for _, id := range []string{restarted, down} {
		if got := exits(id); len(got) != 1 {
			t.Errorf("task %s: exits %q; a killed run printed one?", id, got)
		}
	}
}
