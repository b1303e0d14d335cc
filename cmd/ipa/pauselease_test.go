package main

// A paused pod keeps its lease and is not judged hung: two real servers on
// one PostgreSQL database, a real exec pod paused on the first, held paused
// for longer than the supervisor takes to judge a silent plugin
// unresponsive (supervisor.DefaultHealthFailures checks,
// DefaultHealthInterval apart) and than many lease TTLs.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/supervisor"
)

func TestPausedPodKeepsLeaseAndIsNotJudgedHung(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b := c.start("A"), c.start("B")
	id := a.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", "while true; do sleep 0.2; done"}, "env": tagEnv(c.homes["A"])}})
	a.startPod(t, id)
	tv := a.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second)
	// Paused through B: the request goes to the owner, A.
	b.must(t, `mutation($id: ID!) { pausePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	before := c.leases(ctx)[id]
	if before.Owner != "A" || before.PID != tv.Pod.PID {
		t.Fatalf("lease %+v, want A's with pid %d", before, tv.Pod.PID)
	}

	// Held paused past the judgement of an unresponsive plugin (with a
	// margin for a loaded machine), looking all along.
	hold := time.Duration(supervisor.DefaultHealthFailures+2)*supervisor.DefaultHealthInterval + 4*testTTL
	for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(time.Second) {
		// Both instances answer the same Pod: PAUSED, the owner's pid.
		var views [2]string
		for i, s := range []*server{a, b} {
			var out struct{ Task struct{ Pod json.RawMessage } }
			s.must(t, `query($id: ID!) { task(id: $id) { pod { state pid restarts instanceId startedAt } } }`, map[string]any{"id": id}, &out)
			views[i] = string(out.Task.Pod)
		}
		want := fmt.Sprintf(`"state":"PAUSED","pid":%d,`, before.PID)
		if views[0] != views[1] || !strings.Contains(views[0], want) || !strings.Contains(views[0], `"instanceId":"A"`) {
			t.Fatalf("pod on A %s, on B %s, want the same, PAUSED with pid %d on A", views[0], views[1], before.PID)
		}
		if l := c.leases(ctx)[id]; l != before {
			t.Fatalf("lease %+v while paused, was %+v", l, before)
		}
	}
	if evs := a.events(t, id, "pod_crashed", "pod_lost", "pod_stopped"); len(evs) != 0 {
		t.Fatalf("a paused pod was ended: %+v", evs)
	}
	if !ourAlive(before.PID, c.homes["A"].tag) {
		t.Fatalf("the paused pod's plugin %d is gone", before.PID)
	}

	b.must(t, `mutation($id: ID!) { resumePod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	if got := b.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second); got.Pod.PID != before.PID {
		t.Fatalf("resumed as pid %d, want %d", got.Pod.PID, before.PID)
	}
	if l := c.leases(ctx)[id]; l != before {
		t.Fatalf("lease %+v after the resume, was %+v", l, before)
	}
}
