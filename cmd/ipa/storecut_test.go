package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/faultproxy"
)

// TestStoreCutTakesNoLeases checks the lease contract of the third round
// with three servers, each on its own link to one PostgreSQL database: "An
// instance that could not reach the store does not take over anyone's
// leases until it has watched the others' heartbeats for one TTL after its
// own reconnection: instances that were alive throughout never lose pods to
// each other because the database went away."
//
//   - One server cut from the database for longer than the TTL, then
//     another's link stalled as long: the others, whose view of the store
//     stayed whole, may take its pods over (once each, never two runs at
//     once), but when it comes back it takes none of theirs.
//   - Then every server answers the same Pod for every task.
//   - Every server cut at once for longer than the TTL: nobody was dead, so
//     after the outage every pod still belongs to the instance it belonged
//     to, and no pod is recorded lost.
func TestStoreCutTakesNoLeases(t *testing.T) {
	pc := newProxiedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ids := []string{"A", "B", "C"}
	for _, id := range ids {
		pc.start(id)
	}
	const perInstance = 3
	owner := map[string]string{} // task -> instance it was started on
	var tasks []string
	for _, id := range ids {
		for i := range perInstance {
			task := pc.srv[id].createTask(t, autoRestartTask(fmt.Sprintf("owned by %s %d", id, i)))
			owner[task] = id
			tasks = append(tasks, task)
		}
	}
	for _, task := range tasks {
		pc.srv[owner[task]].waitPod(t, task, "RUNNING", "ACTIVE", 0, 30*time.Second)
	}
	leases := pc.leases(ctx)
	for _, task := range tasks {
		if leases[task].Owner != owner[task] {
			t.Fatalf("task %s: lease %+v, want owner %s", task, leases[task], owner[task])
		}
	}
	watch := pc.watchDoubleRuns(ctx)

	// lostEvents lists the pod_lost events of every task.
	lostEvents := func() map[string][]event {
		out := map[string][]event{}
		for _, task := range tasks {
			out[task] = pc.srv["B"].events(t, task, "pod_lost")
		}
		return out
	}
	// newLost describes the pod_lost events after the first n.
	newLost := func(evs []event, n int) string {
		var b strings.Builder
		for _, e := range evs[n:] {
			fmt.Fprintf(&b, " v%d %s", e.Version, e.Data)
		}
		return b.String()
	}

	// isolated breaks victim's link to the database with fault for longer
	// than the TTL, heals it, and checks what the contract says of the time
	// after: the victim's pods run somewhere, every other pod is where it
	// was, with the same epoch and no pod_lost.
	isolated := func(t *testing.T, victim string, fault func(*faultproxy.Proxy)) {
		before := lostEvents()
		fault(pc.proxies[victim])
		time.Sleep(2*testTTL + time.Second)
		pc.proxies[victim].Heal()
		// The victim is back once its heartbeat moves again; then give it
		// several TTLs to do whatever it would do.
		waitHeartbeatMoves(t, pc.srv["C"], victim, 30*time.Second)
		time.Sleep(3 * testTTL)
		now := pc.leases(ctx)
		lost := lostEvents()
		for _, task := range tasks {
			l := now[task]
			if owner[task] == victim {
				if l.Owner == "" || l.PID == 0 || !alive(l.PID) {
					t.Errorf("task %s (was %s's): lease %+v, want a running pod somewhere", task, victim, l)
				}
				continue
			}
			if l.Owner != owner[task] || l.Epoch != leases[task].Epoch {
				t.Errorf("task %s: lease %+v after %s's link came back, was %+v: it took over a pod of an instance alive throughout",
					task, l, victim, leases[task])
			}
			if len(lost[task]) != len(before[task]) {
				t.Errorf("task %s (%s's): pod_lost after %s's link came back:%s", task, owner[task], victim, newLost(lost[task], len(before[task])))
			}
		}
		moved := 0
		for _, task := range tasks {
			if owner[task] == victim && now[task].Owner != victim {
				moved++
			}
		}
		t.Logf("%d pods of %s went to the others", moved, victim)
		// The next subtest starts from where the pods are now.
		for _, task := range tasks {
			owner[task] = now[task].Owner
			leases[task] = now[task]
		}
	}
	t.Run("OneServerCut", func(t *testing.T) { isolated(t, "A", (*faultproxy.Proxy).Cut) })
	// A stalled link is worse than a cut one: nothing fails, the victim's
	// queries hang, and when the link heals they arrive late.
	t.Run("OneServerStalled", func(t *testing.T) { isolated(t, "B", (*faultproxy.Proxy).Stall) })

	// "Every instance answers the same Pod (state, pid, restarts,
	// instanceId, startedAt) for a task", here after pods moved.
	t.Run("SamePodEverywhere", func(t *testing.T) {
		const q = `query($id: ID!) { task(id: $id) { pod { state pid restarts instanceId startedAt } } }`
		eventually(t, 15*time.Second, func() string {
			for _, task := range tasks {
				views := map[string]string{}
				for _, id := range ids {
					data, errs := pc.srv[id].do(t, q, map[string]any{"id": task})
					if len(errs) > 0 {
						return fmt.Sprintf("%s: %v", id, errs)
					}
					views[id] = string(data)
				}
				if views["A"] != views["B"] || views["B"] != views["C"] {
					return fmt.Sprintf("task %s: A %s, B %s, C %s", task, views["A"], views["B"], views["C"])
				}
			}
			return ""
		})
	})

	t.Run("EveryServerCut", func(t *testing.T) {
		before := lostEvents()
		for _, id := range ids {
			pc.proxies[id].Cut()
		}
		time.Sleep(2*testTTL + time.Second)
		for _, id := range ids {
			pc.proxies[id].Heal()
		}
		for _, id := range ids {
			waitHeartbeatMoves(t, pc.srv["B"], id, 30*time.Second)
		}
		time.Sleep(3 * testTTL)
		now := pc.leases(ctx)
		lost := lostEvents()
		for _, task := range tasks {
			if now[task].Owner != owner[task] {
				t.Errorf("task %s: owned by %q after the outage, by %q before: instances alive throughout lost pods to each other",
					task, now[task].Owner, owner[task])
			}
			if len(lost[task]) != len(before[task]) {
				t.Errorf("task %s: pod_lost after the outage:%s", task, newLost(lost[task], len(before[task])))
			}
		}
	})
	watch.check(t)
}

// waitHeartbeatMoves waits until s lists instance id alive with a heartbeat
// newer than when the wait began, as seen by two readings apart.
func waitHeartbeatMoves(t *testing.T, s *server, id string, within time.Duration) {
	t.Helper()
	first := ""
	eventually(t, within, func() string {
		in, ok := s.instances(t)[id]
		switch {
		case !ok:
			return "instance " + id + " not listed"
		case first == "":
			first = in.HeartbeatAt
			return "first reading"
		case in.HeartbeatAt == first || !in.Alive:
			return fmt.Sprintf("instance %s: heartbeat %s alive %v", id, in.HeartbeatAt, in.Alive)
		}
		return ""
	})
}
