package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/pgtest"
	"github.com/ipa-dev/ipa/internal/sandbox"
)

// TestChaos runs exec pods (sandboxed wherever bwrap works, as by default)
// on PostgreSQL through everything at once: plugins and their commands
// SIGKILLed at random, the server killed -9 twice and started again on the
// same database and data dir, and a database outage.
// Afterwards the history must be whole (gap-free streams, every run ended
// exactly once, every kill recorded), no task may ever have run two
// commands at once, nothing may outlive the final SIGTERM, and the
// projection must agree with the events.
//
//	IPA_CHAOS=1 [IPA_CHAOS_PODS=50] go test -count=1 -run TestChaos -v ./cmd/ipa/
//
// IPA_CHAOS_LOG_DIR=<dir> keeps the servers' whole logs there.
func TestChaos(t *testing.T) {
	if os.Getenv("IPA_CHAOS") != "1" {
		t.Skip("set IPA_CHAOS=1 to run the chaos test")
	}
	n := 50
	if v := os.Getenv("IPA_CHAOS_PODS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			t.Fatalf("IPA_CHAOS_PODS=%q", v)
		}
	}
	url := dbtest.URL(t, "postgres")
	h := newHome(t)
	h.db = url
	// A plugin whose launch a server kill cut short never gets its host: it
	// waits out the orphan grace (60 s by default) and exits. A shorter grace
	// lets the end of the run check that nothing at all is left.
	h.env = []string{"IPA_PLUGIN_ORPHAN_GRACE=5s"}
	if dir := os.Getenv("IPA_CHAOS_LOG_DIR"); dir != "" {
		// The whole logs, for a post-mortem (a failure prints only tails).
		t.Cleanup(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			for i, s := range h.servers {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("server-%d.log", i+1)), []byte(s.log.String()), 0o644)
			}
		})
	}
	s := h.start()

	// Each task's command carries its own marker as $0, so its processes
	// can be told apart in /proc.
	marker := "chaos-" + h.tag + "-"
	ids := make([]string, n)
	for i := range n {
		ids[i] = s.createTask(t, map[string]any{"title": fmt.Sprintf("chaos %03d", i), "runtime": "exec",
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "while :; do sleep 1; done", fmt.Sprintf("%s%03d", marker, i)},
				"env": tagEnv(h)},
			"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 100, "windowSeconds": 600,
				"initialBackoffMs": 10, "maxBackoffMs": 50},
		})
		if started, _ := s.startPod(t, ids[i]); !started {
			t.Fatalf("startPod %d: started=false", i)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if got := len(scanCommands(h.tag, marker)); got != n {
			return fmt.Sprintf("%d of %d commands running", got, n)
		}
		return ""
	})
	// Where bwrap works the commands run sandboxed (bwrap and the init of
	// its PID namespace between plugin and command), and the run checks
	// that no process of a sandboxed pod outlives its plugin.
	_, bwrapErr := sandbox.Find(context.Background(), "")
	for _, c := range scanCommands(h.tag, marker) {
		if sandboxed := c.ppid != c.plugin; sandboxed != (bwrapErr == nil) {
			t.Fatalf("task %d: command %d sandboxed=%v where bwrap works=%v (%v)", c.task, c.pid, sandboxed, bwrapErr == nil, bwrapErr)
		}
	}
	t.Logf("commands sandboxed: %v", bwrapErr == nil)

	w := &chaosWatch{h: h, marker: marker, killed: map[runKey]string{}, orphanSince: map[int]time.Time{}}
	w.start()
	stopped := false
	defer func() {
		if !stopped {
			w.stop()
		}
	}()
	k := &chaosKiller{w: w, perTask: map[int]int{}, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}

	began := time.Now()
	at := func() time.Duration { return time.Since(began).Round(time.Millisecond) }
	k.run(3 * time.Second)
	serverDown := func() {
		t.Helper()
		t.Logf("%s: server killed -9", at())
		s.crash(t)
		k.run(500 * time.Millisecond) // kills while no server watches
		s = h.start()
	}
	serverDown()
	k.run(3 * time.Second)
	unblock := pgtest.Block(t, url)
	t.Logf("%s: database blocked", at())
	k.run(5 * time.Second)
	unblock()
	t.Logf("%s: database unblocked", at())
	k.run(2 * time.Second)
	serverDown()
	k.run(3 * time.Second)
	t.Logf("%d kills sent (%d plugins, %d commands)", k.plugins+k.commands, k.plugins, k.commands)

	// Settle: every pod back to RUNNING with one command, so every crash
	// has been handled; then a clean stop ends every run.
	eventually(t, 60*time.Second, func() string {
		for i, id := range ids {
			tv := s.task(t, id)
			if tv.Pod.State != "RUNNING" {
				return fmt.Sprintf("task %d: pod %s", i, tv.Pod.State)
			}
		}
		if got := len(scanCommands(h.tag, marker)); got != n {
			return fmt.Sprintf("%d of %d commands running", got, n)
		}
		return ""
	})
	time.Sleep(500 * time.Millisecond) // one more sample of the settled state
	t.Logf("%s: settled; SIGTERM", at())
	s.stop(t, 60*time.Second)
	stopped = true
	samples, violations := w.stop()
	t.Logf("%d /proc samples taken during the run", samples)
	for _, v := range violations {
		t.Error(v)
	}
	if left := waitGone(taggedPids(h.tag), h.tag, 5*time.Second); len(left) > 0 {
		t.Fatalf("%s: processes outlived the server's SIGTERM:%s", at(), describe(left))
	}

	// The history, read through a server that does not resume the pods.
	s2 := h.start("--resume-pods=false")
	var starts, crashes, lost, startFailed, killedBeforeStart, reattachedUnstarted int
	for i, id := range ids {
		evs := s2.events(t, id)
		for j, e := range evs {
			if e.Version != j+1 {
				t.Fatalf("task %d: event %d has version %d; the stream has a gap or a duplicate", i, j, e.Version)
			}
		}
		if tv := s2.task(t, id); tv.Version != len(evs) {
			t.Errorf("task %d: version %d, %d events", i, tv.Version, len(evs))
		}
		st := checkRuns(t, i, evs)
		starts, crashes, lost, startFailed = starts+st.starts, crashes+st.crashed, lost+st.lost, startFailed+st.startFailed
		reattachedUnstarted += st.reattachedUnstarted
		var unstarted []int
		for key, kind := range w.killed {
			if key.task != i {
				continue
			}
			c := st.ends[key.pid]
			if c == nil {
				c = &runEnds{}
			}
			switch {
			case st.started[key.pid] == 0:
				// Killed before its pod_started: a launch that failed (a
				// start_failed crash), or one the server gave up on
				// without a trace (its lease could not be saved during the
				// outage, or the server was killed mid-launch).
				unstarted = append(unstarted, key.pid)
			case st.started[key.pid] > 1:
				t.Logf("task %d: pid %d ran more than once (pid reused)", i, key.pid)
			case c.crashed+c.lost != 1:
				t.Errorf("task %d: run of pid %d (killed: %s) ended by %d pod_crashed and %d pod_lost, want exactly one",
					i, key.pid, kind, c.crashed, c.lost)
			}
		}
		if len(unstarted) > 0 {
			slices.Sort(unstarted)
			t.Logf("task %d: %d kills hit a launch before its pod_started (%d start_failed crashes): pids %v", i, len(unstarted), st.startFailed, unstarted)
		}
		killedBeforeStart += len(unstarted)
		for pid, c := range st.ends {
			if _, ok := w.killed[runKey{i, pid}]; !ok && c.crashed+c.lost > 0 {
				t.Logf("task %d: run of pid %d crashed or was lost without a kill of ours: %s", i, pid, c.how)
				if c.how == "signal" || c.how == "exited" {
					t.Errorf("task %d: run of pid %d ended (%s) though nobody killed it", i, pid, c.how)
				}
			}
		}
	}
	t.Logf("%d tasks: %d runs started, %d pod_crashed (%d start_failed), %d pod_lost; %d kills hit a launch; %d runs recorded without their pod_started",
		n, starts, crashes, startFailed, lost, killedBeforeStart, reattachedUnstarted)
	s2.stop(t, 20*time.Second)

	out, code := h.runIPA(t, "reproject", "--check")
	if code != 0 {
		t.Fatalf("ipa reproject --check: exit %d\n%s", code, out)
	}
}

// runKey names one run of a task's pod by its plugin's pid.
type runKey struct {
	task int
	pid  int
}

// runEnds counts how a run (a plugin pid) ended in a task's stream.
type runEnds struct {
	crashed, lost, stopped int
	how                    string // the crash reason, or pod_lost's
}

type runStats struct {
	started                                                 map[int]int // pid → runs
	ends                                                    map[int]*runEnds
	starts, crashed, lost, startFailed, reattachedUnstarted int
}

// checkRuns walks a task's pod events in order: at most one run is open at a
// time, every end names the open run, no run ends twice, and none is left
// open (the server was stopped cleanly at the end).
func checkRuns(t *testing.T, task int, evs []event) runStats {
	t.Helper()
	st := runStats{started: map[int]int{}, ends: map[int]*runEnds{}}
	open := 0
	end := func(e event, pid int) *runEnds {
		if pid != 0 && pid != open {
			t.Errorf("task %d v%d: %s of pid %d, but the open run is pid %d", task, e.Version, e.Type, pid, open)
		}
		if pid == 0 {
			pid = open
		}
		open = 0
		c := st.ends[pid]
		if c == nil {
			c = &runEnds{}
			st.ends[pid] = c
		}
		return c
	}
	for _, e := range evs {
		pid := dataField[int](t, e, "pid")
		switch e.Type {
		case "pod_started":
			st.starts++
			if open != 0 {
				t.Errorf("task %d v%d: pod_started pid %d while the run of pid %d has not ended", task, e.Version, pid, open)
			}
			open = pid
			st.started[pid]++
		case "pod_reattached":
			if open == 0 {
				// A restarted server adopted a run whose pod_started was
				// never written (its server died between the lease and
				// the event): it must kill that run instead, recording
				// nothing. Counted as open from here to check the rest.
				t.Errorf("task %d v%d: pod_reattached pid %d, whose pod_started was never written", task, e.Version, pid)
				st.reattachedUnstarted++
				open = pid
				st.started[pid]++
			} else if pid != open {
				t.Errorf("task %d v%d: pod_reattached pid %d, the open run is pid %d", task, e.Version, pid, open)
			}
		case "pod_crashed":
			st.crashed++
			reason := dataField[string](t, e, "reason")
			if reason == "start_failed" && pid == 0 {
				st.startFailed++
				if open != 0 {
					t.Errorf("task %d v%d: start_failed crash while the run of pid %d is open", task, e.Version, open)
				}
				continue
			}
			if pid == 0 {
				t.Errorf("task %d v%d: pod_crashed %s names no pid", task, e.Version, e.Data)
			}
			c := end(e, pid)
			c.crashed++
			c.how = reason
		case "pod_lost":
			st.lost++
			if pid == 0 && open == 0 {
				continue // no_lease: a pod that was between runs
			}
			if open == 0 {
				// As for pod_reattached: a run the stream never saw
				// start cannot be lost either.
				t.Errorf("task %d v%d: pod_lost pid %d, whose pod_started was never written", task, e.Version, pid)
				st.reattachedUnstarted++
				open = pid
				st.started[pid]++
			}
			c := end(e, pid)
			c.lost++
			c.how = "lost: " + dataField[string](t, e, "reason")
		case "pod_stopped":
			if pid == 0 && open == 0 {
				continue // a stop during BACKOFF
			}
			end(e, pid).stopped++
		}
	}
	if open != 0 {
		t.Errorf("task %d: the run of pid %d has no end recorded", task, open)
	}
	return st
}

// command is one task's command process seen in /proc. plugin is the
// `ipa plugin exec` it runs under, 0 when there is none: its parent, or,
// sandboxed, the parent of the bwrap processes between them (bwrap, then
// the init of the sandbox's PID namespace, then the command).
type command struct {
	task, pid, ppid, plugin int
}

// pluginOf finds the exec plugin above a command whose parent is ppid,
// passing through bwrap's processes only.
func pluginOf(ppid int) int {
	for p, hops := ppid, 0; p > 1 && hops < 4; hops++ {
		if isPlugin(p, "exec") {
			return p
		}
		if !isBwrap(p) {
			return 0
		}
		p, _ = statPPid(p)
	}
	return 0
}

// isBwrap reports whether pid runs bubblewrap.
func isBwrap(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0) == "bwrap"
}

// scanCommands lists the live command processes (sh -c … <marker>NNN) of
// the home tagged tag.
func scanCommands(tag, marker string) []command {
	ents, _ := os.ReadDir("/proc")
	var out []command
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) != 4 || argv[0] != "sh" || !strings.HasPrefix(argv[3], marker) {
			continue
		}
		task, err := strconv.Atoi(strings.TrimPrefix(argv[3], marker))
		if err != nil {
			continue
		}
		ppid, state := statPPid(pid)
		if state == "" || state == "Z" || !environHas(pid, tag) {
			continue
		}
		out = append(out, command{task: task, pid: pid, ppid: ppid, plugin: pluginOf(ppid)})
	}
	// The shell forks to run sleep, and the child bears the shell's argv
	// until its exec: it is part of the command, not another one.
	pids := map[int]bool{}
	for _, c := range out {
		pids[c.pid] = true
	}
	return slices.DeleteFunc(out, func(c command) bool { return pids[c.ppid] })
}

// describe says what pids are, for a failure message.
func describe(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		ppid, state := statPPid(pid)
		fmt.Fprintf(&b, "\n  pid %d state %s ppid %d age %s: %s", pid, state, ppid, procAge(pid).Round(time.Millisecond), strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
	}
	return b.String()
}

// procAge is how long ago pid started.
func procAge(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	up, err := os.ReadFile("/proc/uptime")
	if err != nil || len(f) < 20 {
		return 0
	}
	var uptime float64
	fmt.Sscan(string(up), &uptime)
	ticks, _ := strconv.ParseFloat(f[19], 64)
	return time.Duration((uptime - ticks/100) * float64(time.Second)) // USER_HZ is 100 on Linux
}

// statPPid reads the parent pid and state of pid from /proc/<pid>/stat.
func statPPid(pid int) (int, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid, f[0]
}

// chaosWatch samples /proc for the whole run: never two commands of one
// task at once, and no command outliving its plugin for long. It also holds
// the record of the kills.
type chaosWatch struct {
	h      *home
	marker string

	mu          sync.Mutex
	killed      map[runKey]string // run → what was killed ("plugin" or "command")
	orphanSince map[int]time.Time
	samples     int
	violations  []string
	done        chan struct{}
	finished    chan struct{}
}

func (w *chaosWatch) start() {
	w.done, w.finished = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.finished)
		for {
			w.sample()
			select {
			case <-w.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
}

// stop ends the sampling (one last sample first) and returns what it saw.
func (w *chaosWatch) stop() (int, []string) {
	close(w.done)
	<-w.finished
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples, slices.Clone(w.violations)
}

func (w *chaosWatch) sample() {
	cmds := scanCommands(w.h.tag, w.marker)
	now := time.Now()
	per := map[int][]string{}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	seen := map[int]bool{}
	for _, c := range cmds {
		per[c.task] = append(per[c.task], fmt.Sprintf("%d (plugin %d)", c.pid, c.plugin))
		if c.plugin != 0 {
			continue
		}
		// Its plugin is gone: the command must follow within moments.
		seen[c.pid] = true
		first, ok := w.orphanSince[c.pid]
		if !ok {
			w.orphanSince[c.pid] = now
		} else if now.Sub(first) > 2*time.Second && len(w.violations) < 50 {
			w.violations = append(w.violations, fmt.Sprintf("task %d: command %d outlived its plugin by %s (parent now %d)",
				c.task, c.pid, now.Sub(first).Round(time.Millisecond), c.ppid))
			w.orphanSince[c.pid] = now
		}
	}
	for pid := range w.orphanSince {
		if !seen[pid] {
			delete(w.orphanSince, pid)
		}
	}
	for task, pids := range per {
		if len(pids) > 1 && len(w.violations) < 50 {
			w.violations = append(w.violations, fmt.Sprintf("task %d: %d commands at once: %v", task, len(pids), pids))
		}
	}
}

// chaosKiller sends SIGKILL to the plugins and commands of running pods.
type chaosKiller struct {
	w                 *chaosWatch
	rng               *rand.Rand
	perTask           map[int]int
	plugins, commands int
}

// maxKillsPerTask keeps every task well inside its restart policy
// (maxAttempts 100 in the window), so no pod is given up on.
const maxKillsPerTask = 60

// run kills for d: every 20–60 ms a random running pod's plugin or
// command, never a run already killed, at most maxKillsPerTask per task.
func (k *chaosKiller) run(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(20+k.rng.IntN(40)) * time.Millisecond)
		var cands []command
		k.w.mu.Lock()
		for _, c := range scanCommands(k.w.h.tag, k.w.marker) {
			if _, done := k.w.killed[runKey{c.task, c.plugin}]; !done && k.perTask[c.task] < maxKillsPerTask && c.plugin != 0 && environHas(c.plugin, k.w.h.tag) {
				cands = append(cands, c)
			}
		}
		if len(cands) == 0 {
			k.w.mu.Unlock()
			continue
		}
		c := cands[k.rng.IntN(len(cands))]
		target, kind := c.plugin, "plugin"
		if k.rng.IntN(2) == 0 {
			target, kind = c.pid, "command"
		}
		if err := syscall.Kill(target, syscall.SIGKILL); err == nil {
			k.w.killed[runKey{c.task, c.plugin}] = kind
			k.perTask[c.task]++
			if kind == "plugin" {
				k.plugins++
			} else {
				k.commands++
			}
		}
		k.w.mu.Unlock()
	}
}
