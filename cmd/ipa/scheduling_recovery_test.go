package main

// Scheduling when servers die or return: a queued pod whose granted start
// was cut short by a kill -9 runs once after all; restarts and resumes go
// through the concurrency limits.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cmdlineHas reports whether pid's command line contains s.
func cmdlineHas(pid int, s string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), s)
}

// TestSchedulingKilledWhileStarting: under a global limit of 1 a queued pod
// is granted the slot its predecessor frees; its runtime ("slowdemo", the
// demo behind a wrapper that sleeps before it execs) is spawned, and the
// server is killed with SIGKILL before the start is recorded, then
// restarted at once (well within any lease TTL). The pod is neither left
// QUEUED with no place in the queue nor started twice: the half-started
// plugin is killed, the pod queues again and starts, one pod_started in
// all, one plugin process.
func TestSchedulingKilledWhileStarting(t *testing.T) {
	dir := newPluginDir(t)
	slow := filepath.Join(t.TempDir(), "slow")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %q ]; then sleep 60; fi\nexec %q plugin demo \"$@\"\n", slow, ipaBin)
	if err := os.WriteFile(filepath.Join(dir, "slowdemo"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHome(t, "--plugin-dir", dir)
	s := h.start()
	s.setLimit(t, "global", 1)
	first := s.createTask(t, map[string]any{"title": "first", "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	if started, _ := s.startPod(t, first); !started {
		t.Fatal("the first pod did not start")
	}
	q := s.createTask(t, map[string]any{"title": "queued", "runtime": "slowdemo", "runtimeConfig": demoConfig(3_600_000)})
	if started, tv := s.startPod(t, q); started || tv.Pod.State != "QUEUED" {
		t.Fatalf("start beyond the limit: started %v, pod %s", started, tv.Pod.State)
	}
	if err := os.WriteFile(slow, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.complete(t, first) // its slot goes to q, whose start now hangs in the wrapper

	var wrapper int
	eventually(t, 20*time.Second, func() string {
		for _, pid := range taggedPids(h.tag) {
			if cmdlineHas(pid, "slowdemo") {
				wrapper = pid
				return ""
			}
		}
		return "the granted pod's plugin was not spawned"
	})
	time.Sleep(500 * time.Millisecond) // its claim is written as it spawns
	if tv := s.task(t, q); tv.Status == "ACTIVE" {
		t.Fatalf("the start was recorded before the kill: %+v", tv)
	}
	s.crash(t)
	if err := os.Remove(slow); err != nil {
		t.Fatal(err)
	}

	s = h.start()
	if left := waitGone([]int{wrapper}, h.tag, 10*time.Second); len(left) > 0 {
		t.Fatalf("the half-started plugin %d of the killed server still runs", wrapper)
	}
	tv := s.waitPod(t, q, "RUNNING", "ACTIVE", 0, 30*time.Second)
	if starts := s.events(t, q, "pod_started"); len(starts) != 1 {
		t.Fatalf("%d pod_started, want 1", len(starts))
	}
	if n := len(s.events(t, q, "pod_lost")); n != 0 {
		t.Fatalf("%d pod_lost for a pod whose start was never recorded", n)
	}
	time.Sleep(1500 * time.Millisecond) // more than one look at the queue
	var plugins []int
	for _, pid := range taggedPids(h.tag) {
		if pid != s.pid() && procState(pid) != "Z" && (isPlugin(pid, "demo") || cmdlineHas(pid, "slowdemo")) {
			plugins = append(plugins, pid)
		}
	}
	if len(plugins) != 1 || plugins[0] != tv.Pod.PID {
		t.Fatalf("plugin processes %v, want only the pod's %d", plugins, tv.Pod.PID)
	}
}

// TestSchedulingRestartThroughLimits: a person's restartPod and a resume
// after a clean restart take a slot only where the limits have room. Under
// a global limit of 2 lowered to 1 while two pods run, restarting one of
// them stops it and queues it behind the pod queued before; it starts when
// its turn comes, as a person's start. A clean restart of the server with
// two pods under a limit of 1 resumes one and queues the other (trigger
// resume), which starts, as a resume, when the first completes.
func TestSchedulingRestartThroughLimits(t *testing.T) {
	h := newHome(t)
	s := h.start()
	s.setLimit(t, "global", 2)
	mk := func(title string) string {
		return s.createTask(t, map[string]any{"title": title, "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	for _, id := range []string{a, b} {
		if started, _ := s.startPod(t, id); !started {
			t.Fatalf("pod %s did not start", id)
		}
	}
	if started, _ := s.startPod(t, c); started {
		t.Fatal("a third pod started under a limit of 2")
	}
	s.setLimit(t, "global", 1)
	s.must(t, `mutation($id: ID!) { restartPod(taskId: $id) { task { id } } }`, map[string]any{"id": a}, nil)
	if v := s.queued(t, a); v.Pod.State != "QUEUED" || v.Pod.QueuePosition == nil || *v.Pod.QueuePosition != 2 {
		t.Fatalf("restarted pod beyond the lowered limit: %+v, want QUEUED at 2", v)
	}
	if ev := s.events(t, a, "pod_stopped"); len(ev) != 1 || dataField[string](t, ev[0], "reason") != "restart" {
		t.Fatalf("a's pod_stopped %+v", ev)
	}
	if n := len(h.pluginPids("demo")); n != 1 {
		t.Fatalf("%d plugin processes under a limit of 1", n)
	}
	s.complete(t, b)
	s.waitPod(t, c, "RUNNING", "ACTIVE", 0, 20*time.Second)
	if v := s.queued(t, a); v.Pod.State != "QUEUED" {
		t.Fatalf("a overtook the pod queued before it: %+v", v)
	}
	s.complete(t, c)
	s.waitPod(t, a, "RUNNING", "ACTIVE", 0, 20*time.Second)
	if ev := s.events(t, a, "pod_started"); len(ev) != 2 || dataField[string](t, ev[1], "trigger") != "manual" {
		t.Fatalf("a's pod_started %+v", ev)
	}

	// A resume: two pods run under a limit of 2, lowered to 1; a clean
	// restart resumes one of them and queues the other.
	d := mk("d")
	s.setLimit(t, "global", 2)
	if started, _ := s.startPod(t, d); !started {
		t.Fatal("d did not start")
	}
	s.setLimit(t, "global", 1)
	s.stop(t, 30*time.Second)
	s = h.start()
	var running, queued string
	for _, id := range []string{a, d} {
		switch v := s.queued(t, id); v.Pod.State {
		case "RUNNING":
			running = id
		case "QUEUED":
			queued = id
		}
	}
	if running == "" || queued == "" {
		t.Fatalf("after the restart a is %s and d is %s: want one RUNNING, one QUEUED", s.queued(t, a).Pod.State, s.queued(t, d).Pod.State)
	}
	if ev := s.events(t, queued, "pod_queued"); len(ev) == 0 || dataField[string](t, ev[len(ev)-1], "trigger") != "resume" {
		t.Fatalf("the resume beyond the limit: pod_queued %+v", ev)
	}
	if n := len(h.pluginPids("demo")); n != 1 {
		t.Fatalf("%d plugin processes under a limit of 1 after the resume", n)
	}
	s.complete(t, running)
	s.waitPod(t, queued, "RUNNING", "ACTIVE", 0, 20*time.Second)
	starts := s.events(t, queued, "pod_started")
	if last := starts[len(starts)-1]; dataField[string](t, last, "trigger") != "resume" {
		t.Fatalf("the queued resume started with %s", last.Data)
	}
}

// TestSchedulingTakeoverOfStartCutShort: on PostgreSQL, server B is killed
// with SIGKILL while it starts a queued pod it was granted (its plugin
// spawned, the start not recorded) and does not come back. Once B's
// heartbeat is older than the TTL, A takes B's lease of the pod over, kills
// the half-started plugin, and the pod queues again and runs once, on A:
// no pod_lost for a start that never happened, one pod_started.
func TestSchedulingTakeoverOfStartCutShort(t *testing.T) {
	dir := newPluginDir(t)
	slow := filepath.Join(t.TempDir(), "slow")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %q ]; then sleep 60; fi\nexec %q plugin demo \"$@\"\n", slow, ipaBin)
	if err := os.WriteFile(filepath.Join(dir, "slowdemo"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	a, b := c.start("A", "--plugin-dir", dir), c.start("B", "--plugin-dir", dir)
	a.setLimit(t, "global", 1)
	first := a.createTask(t, map[string]any{"title": "first", "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	if started, _ := a.startPod(t, first); !started {
		t.Fatal("the first pod did not start")
	}
	q := b.createTask(t, map[string]any{"title": "queued", "runtime": "slowdemo", "runtimeConfig": demoConfig(3_600_000)})
	if started, tv := b.startPod(t, q); started || tv.Pod.State != "QUEUED" {
		t.Fatalf("start beyond the limit: started %v, pod %s", started, tv.Pod.State)
	}
	if err := os.WriteFile(slow, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.complete(t, first) // the slot goes to q, on B, which received its start

	var wrapper int
	eventually(t, 20*time.Second, func() string {
		for _, pid := range taggedPids(c.homes["B"].tag) {
			if cmdlineHas(pid, "slowdemo") {
				wrapper = pid
				return ""
			}
		}
		return "B did not spawn the granted pod's plugin"
	})
	eventually(t, 10*time.Second, func() string {
		if l, ok := c.leases(context.Background())[q]; !ok || l.Owner != "B" || l.PID != wrapper {
			return fmt.Sprintf("lease %+v, want B's naming pid %d", l, wrapper)
		}
		return ""
	})
	b.crash(t)
	if err := os.Remove(slow); err != nil {
		t.Fatal(err)
	}

	tv := a.waitPod(t, q, "RUNNING", "ACTIVE", 0, 30*time.Second)
	if left := waitGone([]int{wrapper}, c.homes["B"].tag, 10*time.Second); len(left) > 0 {
		t.Fatalf("the half-started plugin %d of the killed server still runs", wrapper)
	}
	if o := a.podOwner(t, q); o != "A" {
		t.Fatalf("the pod runs on %q, want A", o)
	}
	if n := len(a.events(t, q, "pod_started")); n != 1 {
		t.Fatalf("%d pod_started, want 1", n)
	}
	if n := len(a.events(t, q, "pod_lost")); n != 0 {
		t.Fatalf("%d pod_lost for a start that was never recorded", n)
	}
	if !mustPluginOf(c, "A", tv.Pod.PID) {
		t.Fatalf("pid %d is not A's plugin", tv.Pod.PID)
	}
}

// mustPluginOf reports whether pid is a live plugin process of instance id.
func mustPluginOf(c *cluster, id string, pid int) bool {
	for _, p := range c.plugins(id) {
		if p == pid {
			return true
		}
	}
	return false
}

// TestSchedulingOrphanQueuedPodOnStart: a pod the stream says is QUEUED
// that lost its place in the queue with no lease left either (what a
// server killed between taking a stopped pod out of the queue and
// recording the stop leaves, or a database written before a start's claim
// named its process) queues again when a server starts with no other one
// alive, and starts once a slot frees.
func TestSchedulingOrphanQueuedPodOnStart(t *testing.T) {
	h := newHome(t, "--lease-ttl", testTTL.String(), "--heartbeat-interval", testHeartbeat.String())
	s := h.start()
	s.setLimit(t, "global", 1)
	first := s.createTask(t, map[string]any{"title": "first", "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	if started, _ := s.startPod(t, first); !started {
		t.Fatal("the first pod did not start")
	}
	q := s.createTask(t, map[string]any{"title": "orphan", "runtime": "demo", "runtimeConfig": demoConfig(3_600_000)})
	if started, _ := s.startPod(t, q); started {
		t.Fatal("a second pod started under a limit of 1")
	}
	s.crash(t)
	db, err := sql.Open("sqlite", strings.TrimPrefix(h.db, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`DELETE FROM pod_queue WHERE task_id = ?`, q)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%d queue rows of the queued pod, want 1", n)
	}
	db.Close()

	// Only a pod unchanged for a TTL is taken for one whose place was lost
	// (a younger one may be having its stop recorded).
	time.Sleep(testTTL + 500*time.Millisecond)
	s = h.start()
	if v := s.queued(t, q); v.Pod.State != "QUEUED" || v.Pod.QueuePosition == nil || *v.Pod.QueuePosition != 1 {
		t.Fatalf("after the restart: %+v, want QUEUED at 1", v)
	}
	s.complete(t, first)
	s.waitPod(t, q, "RUNNING", "ACTIVE", 0, 20*time.Second)
	if n := len(s.events(t, q, "pod_started")); n != 1 {
		t.Fatalf("%d pod_started, want 1", n)
	}
}
