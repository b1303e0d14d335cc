package main

// Coordination with real servers and real plugins: a second `ipa serve` on
// a data dir in use, the database away for longer than the lease TTL, and
// the Pod every instance answers after a takeover.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

// serveOnce runs `ipa serve` on h with args replacing the home's own, and
// returns its output and exit error; it fails the test unless the process
// exits within a minute.
func serveOnce(t *testing.T, h *home, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(ipaBin, append([]string{"serve", "--log-level", "info"}, args...)...)
	env := []string{tagVar + "=" + h.tag}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPA_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var out logBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ipa serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("a second ipa serve did not exit:\n%s", out.String())
		return "", nil
	}
}

// A second `ipa serve` on a data dir or a SQLite store in use refuses to
// start — on the same port or another — with a clear message and a
// non-zero exit, and the first server's pods run on untouched: no event
// is recorded, no plugin is stopped.
func TestSecondServeRefuses(t *testing.T) {
	h := newHome(t)
	s := h.start()
	ids := []string{s.createTask(t, autoRestartTask("first server's pod 1")), s.createTask(t, autoRestartTask("first server's pod 2"))}
	pids := map[string]int{}
	for _, id := range ids {
		tv := s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 20*time.Second)
		pids[id] = tv.Pod.PID
	}
	before := eventCount(t, s, ids)
	other := t.TempDir()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"SamePort", []string{"--addr", s.addr, "--database", h.db, "--data-dir", h.dataDir}, "address already in use"},
		{"OtherPort", []string{"--addr", "127.0.0.1:0", "--database", h.db, "--data-dir", h.dataDir}, "another ipa server is running"},
		{"OtherDataDirSameStore", []string{"--addr", "127.0.0.1:0", "--database", h.db, "--data-dir", filepath.Join(other, "data")}, "another ipa server is running"},
		{"SameDataDirOtherStore", []string{"--addr", "127.0.0.1:0", "--database", "sqlite://" + filepath.Join(other, "other.db"), "--data-dir", h.dataDir}, "another ipa server is running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := serveOnce(t, h, tc.args...)
			if err == nil {
				t.Fatalf("a second ipa serve exited 0:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("a second ipa serve said (want %q):\n%s", tc.want, out)
			}
			if strings.Contains(out, "ipa serving") || strings.Contains(out, "reattach") {
				t.Fatalf("a second ipa serve started serving or reconciling:\n%s", out)
			}
		})
	}

	if got := eventCount(t, s, ids); !maps(got, before) {
		t.Fatalf("versions after the refused starts %v, before %v: something was recorded", got, before)
	}
	for _, id := range ids {
		tv := s.task(t, id)
		if tv.Pod.State != "RUNNING" || tv.Pod.PID != pids[id] || !ourAlive(pids[id], h.tag) {
			t.Fatalf("task %s: pod %+v, want RUNNING with pid %d alive", id, tv.Pod, pids[id])
		}
	}
	if _, err := os.Stat(filepath.Join(other, "other.db")); err == nil {
		t.Fatal("the refused server created its database")
	}
	s.stop(t, 30*time.Second)
}

// podFacts is what every instance must answer alike for a task's pod.
type podFacts struct {
	State      string  `json:"state"`
	PID        *int    `json:"pid"`
	Restarts   int     `json:"restarts"`
	InstanceID *string `json:"instanceId"`
	StartedAt  *string `json:"startedAt"`
}

func (p podFacts) String() string {
	b, _ := json.Marshal(p)
	return string(b)
}

func (s *server) podFacts(t testing.TB, id string) podFacts {
	t.Helper()
	var out struct{ Task struct{ Pod podFacts } }
	s.must(t, `query($id: ID!) { task(id: $id) { pod { state pid restarts instanceId startedAt } } }`, map[string]any{"id": id}, &out)
	return out.Task.Pod
}

// ready reports whether the server answers /readyz with 200.
func (s *server) ready() bool {
	resp, err := s.client.Get(s.url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Three servers, twelve pods, and the database away for three lease TTLs:
// every heartbeat is older than the TTL when it comes back, yet no pod is
// lost and none changes owner. Then one server dies, its pods are taken
// over, it comes back — and every instance answers the same Pod for every
// task.
func TestStoreOutageAndTakeoverAcrossInstances(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srvs := []*server{c.start("A"), c.start("B"), c.start("C")}
	names := []string{"A", "B", "C"}
	var ids []string
	owner := map[string]string{}
	for i := range 12 {
		s := srvs[i%3]
		id := s.createTask(t, autoRestartTask(fmt.Sprintf("pod %d on %s", i, names[i%3])))
		s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second)
		ids = append(ids, id)
		owner[id] = names[i%3]
	}
	before := c.leases(ctx)
	for _, id := range ids {
		if before[id].Owner != owner[id] || before[id].PID == 0 {
			t.Fatalf("task %s: lease %+v, want owner %s with a pid", id, before[id], owner[id])
		}
	}
	versions := eventCount(t, srvs[0], ids)

	t.Run("SameInstanceIDRefused", func(t *testing.T) {
		out, err := serveOnce(t, c.homes["A"], "--addr", "127.0.0.1:0", "--database", c.db, "--data-dir", filepath.Join(t.TempDir(), "data"),
			"--instance-id", "A", "--lease-ttl", testTTL.String(), "--heartbeat-interval", testHeartbeat.String())
		if err == nil || !strings.Contains(out, "another running server uses this instance id") {
			t.Fatalf("a second server with instance id A: %v\n%s", err, out)
		}
		if got := eventCount(t, srvs[1], ids); !maps(got, versions) {
			t.Fatalf("versions after the refused start %v, before %v", got, versions)
		}
		if after := c.leases(ctx); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("leases after the refused start %v, before %v", after, before)
		}
	})

	t.Run("OutageLongerThanTTL", func(t *testing.T) {
		unblock := pgtest.Block(t, c.db)
		time.Sleep(3 * testTTL)
		unblock()
		back := time.Now()
		eventually(t, 60*time.Second, func() string {
			for i, s := range srvs {
				if !s.ready() {
					return names[i] + " not ready"
				}
			}
			return ""
		})
		t.Logf("every instance ready %s after the database came back", time.Since(back).Round(time.Millisecond))
		// Long enough for any instance to have judged another dead.
		time.Sleep(3 * testTTL)
		after := c.leases(ctx)
		for _, id := range ids {
			if after[id] != before[id] {
				t.Errorf("task %s: lease %+v before the outage, %+v after", id, before[id], after[id])
			}
			if !ourAlive(before[id].PID, c.homes[owner[id]].tag) {
				t.Errorf("task %s: plugin %d of %s gone", id, before[id].PID, owner[id])
			}
		}
		for _, id := range ids {
			if lost := srvs[1].events(t, id, "pod_lost", "pod_stopped", "pod_crashed"); len(lost) > 0 {
				t.Errorf("task %s: %d pod events after the outage, first %s %s", id, len(lost), lost[0].Type, lost[0].Data)
			}
		}
		if got := eventCount(t, srvs[0], ids); !maps(got, versions) {
			t.Errorf("versions after the outage %v, before %v", got, versions)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("SamePodEverywhereAfterTakeover", func(t *testing.T) {
		// One pod with an automatic restart behind it, so restarts is 1.
		crashed := ids[0]
		if err := syscall.Kill(before[crashed].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srvs[0].waitPod(t, crashed, "RUNNING", "ACTIVE", before[crashed].PID, 30*time.Second)
		srvs[2].crash(t)
		var onC []string
		for _, id := range ids {
			if owner[id] == "C" {
				onC = append(onC, id)
			}
		}
		c.waitRunningElsewhere(ctx, onC, "C", 60*time.Second)
		// C comes back on its own data dir: a server that returns after a
		// takeover.
		srvs[2] = c.homes["C"].start()
		c.srv["C"] = srvs[2]
		eventually(t, 60*time.Second, func() string {
			for _, id := range ids {
				var first podFacts
				for i, s := range srvs {
					got := s.podFacts(t, id)
					if got.State != "RUNNING" || got.PID == nil || got.InstanceID == nil || got.StartedAt == nil {
						return fmt.Sprintf("task %s on %s: %s", id, names[i], got)
					}
					if i == 0 {
						first = got
					} else if got.String() != first.String() {
						return fmt.Sprintf("task %s: %s answers %s, A answers %s", id, names[i], got, first)
					}
				}
			}
			return ""
		})
		if got := srvs[1].podFacts(t, crashed); got.Restarts != 1 {
			t.Errorf("task %s: restarts %d after one automatic restart, want 1", crashed, got.Restarts)
		}
		for _, id := range onC {
			if got := srvs[2].podFacts(t, id); *got.InstanceID == "C" {
				t.Errorf("task %s: C still owns it after the takeover", id)
			}
		}
	})
	if t.Failed() {
		return
	}

	// The case: a server paused past the TTL comes back to find its
	// pods taken over, with its supervisor still remembering them. It
	// answers what the store says, at once, like everyone else.
	t.Run("PausedOwnerReturns", func(t *testing.T) {
		ls := c.leases(ctx)
		var onB []string
		for _, id := range ids {
			if ls[id].Owner == "B" {
				onB = append(onB, id)
			}
		}
		if len(onB) == 0 {
			t.Fatal("B owns no pod")
		}
		srvs[1].kill(syscall.SIGSTOP)
		c.waitRunningElsewhere(ctx, onB, "B", 60*time.Second)
		srvs[1].kill(syscall.SIGCONT)
		eventually(t, 30*time.Second, func() string {
			for _, id := range ids {
				var first podFacts
				for i, s := range srvs {
					got := s.podFacts(t, id)
					if got.State != "RUNNING" || got.PID == nil || got.InstanceID == nil {
						return fmt.Sprintf("task %s on %s: %s", id, names[i], got)
					}
					if i == 0 {
						first = got
					} else if got.String() != first.String() {
						return fmt.Sprintf("task %s: %s answers %s, A answers %s", id, names[i], got, first)
					}
				}
			}
			return ""
		})
	})
}
