package main

// No process of a sandboxed pod outlives its plugin. Under bwrap the
// command is not the plugin's child: the plugin starts bwrap, bwrap's
// child is PID 1 of the sandbox's PID namespace, and the command is that
// init's child. These tests kill the plugin every way it can die and watch
// /proc for the whole tree.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/sandbox"
)

// needBwrap skips, saying why, where bwrap does not work.
func needBwrap(t *testing.T) {
	t.Helper()
	if _, err := sandbox.Find(context.Background(), ""); err != nil {
		t.Skipf("needs a working bwrap: %v", err)
	}
}

// podTree lists the live descendants of pid (not pid itself), by walking
// /proc's parent links.
func podTree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil {
			continue
		}
		if pp, state := statPPid(p); state != "" && state != "Z" {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// cmdlineOf is pid's command line, spaces for NULs.
func cmdlineOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}

// podSleeper starts an exec pod whose command forks a child that forks a
// grandchild, all sleeping, and returns its task, its plugin's pid and the
// pod's processes (bwrap and its init when sandboxed, the command and its
// descendants, the plugin's guard).
func podSleeper(t *testing.T, h *home, s *server, marker string, sandboxed bool) (string, int, []int) {
	t.Helper()
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", `sh -c 'sleep 1000 & sleep 1001; :' & sleep 1002; :`, marker},
		"env":     tagEnv(h),
	}})
	if started, _ := s.startPod(t, id); !started {
		t.Fatal("startPod: started=false")
	}
	var plugin int
	var tree []int
	eventually(t, 30*time.Second, func() string {
		tv := s.task(t, id)
		if tv.Pod.State != "RUNNING" || tv.Pod.PID <= 0 {
			return "pod " + tv.Pod.State
		}
		if want := fmt.Sprintf(`"sandboxed":%v`, sandboxed); !strings.Contains(string(tv.Pod.Live), want) {
			return "the pod's live state lacks " + want + ": " + string(tv.Pod.Live)
		}
		plugin = tv.Pod.PID
		tree = podTree(plugin)
		sleeps := 0
		for _, p := range tree {
			if strings.HasPrefix(cmdlineOf(p), "sleep 100") {
				sleeps++
			}
		}
		if sleeps != 3 {
			return fmt.Sprintf("%d of 3 sleeps running under plugin %d", sleeps, plugin)
		}
		return ""
	})
	var b strings.Builder
	for _, p := range tree {
		pp, _ := statPPid(p)
		fmt.Fprintf(&b, "\n  %d (parent %d): %.80s", p, pp, cmdlineOf(p))
	}
	t.Logf("plugin %d runs:%s", plugin, b.String())
	if slices.ContainsFunc(tree, isBwrap) != sandboxed {
		t.Fatalf("bwrap under plugin %d: %v, want %v", plugin, !sandboxed, sandboxed)
	}
	return id, plugin, tree
}

// treeGone waits for the plugin to end, then samples /proc until none of
// tree is alive, and fails when some process of it is still there within
// after the plugin ended. It returns how long the last one outlived the
// plugin.
func treeGone(t *testing.T, h *home, plugin int, tree []int, pluginWithin, after time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(pluginWithin)
	for ourAlive(plugin, h.tag) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still alive %s later", plugin, pluginWithin)
		}
		time.Sleep(2 * time.Millisecond)
	}
	gone := time.Now()
	for {
		var left []int
		for _, p := range tree {
			if ourAlive(p, h.tag) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return time.Since(gone)
		}
		if time.Since(gone) > after {
			t.Fatalf("processes of the pod outlived its plugin %d by %s:%s", plugin, after, describe(left))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSandboxTreeDiesWithPlugin kills a pod's plugin every way it can die
// and checks that its whole tree goes with it: the plugin ending after
// stopPod, SIGKILLed while the server watches (the supervisor kills its
// group), SIGKILLed while no server runs (the plugin's guard, the
// kernel's parent-death signals and the PID namespace are left), and
// ending by itself after the server was killed -9 (its host silent for
// the orphan grace). Sandboxed, and unsandboxed for comparison (there the
// command's children have no parent-death signal of their own either).
func TestSandboxTreeDiesWithPlugin(t *testing.T) {
	t.Parallel()
	// Generous: it bounds how long a process may outlive its plugin on a
	// loaded machine; the kernel's part takes milliseconds.
	const outlive = 5 * time.Second
	for _, c := range []struct{ mode, how string }{
		{"required", "stopped"}, {"required", "plugin-killed"}, {"required", "plugin-killed-server-down"}, {"required", "host-silent"},
		{"off", "plugin-killed-server-down"}, {"off", "host-silent"},
	} {
		how := c.how
		t.Run(c.mode+"/"+how, func(t *testing.T) {
			if c.mode == "required" {
				needBwrap(t)
			}
			t.Parallel()
			h := newHome(t, "--sandbox", c.mode)
			h.env = []string{"IPA_PLUGIN_ORPHAN_GRACE=2s"}
			s := h.start()
			id, plugin, tree := podSleeper(t, h, s, "sandbox-death-"+h.tag, c.mode == "required")
			switch how {
			case "stopped":
				s.must(t, stopPodQ, map[string]any{"id": id, "r": "done"}, nil)
			case "plugin-killed":
				_ = syscall.Kill(plugin, syscall.SIGKILL)
			case "plugin-killed-server-down":
				s.crash(t)
				_ = syscall.Kill(plugin, syscall.SIGKILL)
			case "host-silent":
				s.crash(t)
			}
			d := treeGone(t, h, plugin, tree, 60*time.Second, outlive)
			t.Logf("the last process of the pod ended %s after its plugin", d.Round(time.Millisecond))
		})
	}
}

// TestSandboxStopIsGraceful: stopPod's SIGTERM reaches a sandboxed command,
// which ends in its own time, as an unsandboxed one does. (bwrap itself
// dies of SIGTERM, and its sandbox with it by SIGKILL, so it must not get
// one.)
func TestSandboxStopIsGraceful(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"required", "off"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "required" {
				needBwrap(t)
			}
			t.Parallel()
			h := newHome(t, "--sandbox", mode)
			s := h.start()
			id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
				"command": []string{"sh", "-c", `trap 'echo term; sleep 0.3; echo cleaned; exit 3' TERM; echo ready; while :; do sleep 0.1; done`},
				"env":     tagEnv(h),
			}})
			s.startPod(t, id)
			type line struct{ Stream, Text string }
			output := func() []string {
				var out []string
				for _, e := range s.events(t, id, "pod_output") {
					for _, l := range dataField[[]line](t, e, "lines") {
						out = append(out, l.Text)
					}
				}
				return out
			}
			eventually(t, 30*time.Second, func() string {
				if !slices.Contains(output(), "ready") {
					return "the command has not started"
				}
				return ""
			})
			s.must(t, stopPodQ, map[string]any{"id": id, "r": "graceful"}, nil)
			var exited []event
			eventually(t, 30*time.Second, func() string {
				if exited = s.events(t, id, "runtime.exec.exited"); len(exited) == 0 {
					return "the command has not ended"
				}
				return ""
			})
			if out := output(); !slices.Contains(out, "cleaned") {
				t.Fatalf("--sandbox %s: the command did not end in its own time on stopPod: output %q, %s", mode, out, exited[0].Data)
			}
			if code := dataField[*int](t, exited[0], "exitCode"); code == nil || *code != 3 {
				t.Fatalf("--sandbox %s: the command's end %s, want exit code 3", mode, exited[0].Data)
			}
		})
	}
}

// A stop that comes while bwrap is still setting the sandbox up (the pod is
// RUNNING as soon as its plugin answers, before the command exists) ends
// the pod without the stop timeout: there is no command to spare bwrap for
// yet, so the SIGTERM ends the sandbox before its command can start.
func TestSandboxStopDuringSetUp(t *testing.T) {
	needBwrap(t)
	t.Parallel()
	h := newHome(t, "--sandbox", "required")
	s := h.start()
	for i := range 5 {
		// autoStart: the stop below waits for the start and follows it at
		// once, with no round trip between them.
		id := s.createTask(t, map[string]any{"runtime": "exec", "autoStart": true, "runtimeConfig": map[string]any{
			"command": []string{"sh", "-c", "while true; do sleep 1; done"}, "env": tagEnv(h)}})
		s.must(t, stopPodQ, map[string]any{"id": id, "r": "at once"}, nil)
		stopped := s.events(t, id, "pod_stopped")
		if len(stopped) != 1 {
			t.Fatalf("round %d: %d pod_stopped events after stopPod returned", i, len(stopped))
		}
		if dataField[bool](t, stopped[0], "forced") {
			t.Fatalf("round %d: the stop needed SIGKILL at its deadline: %s", i, stopped[0].Data)
		}
	}
}
