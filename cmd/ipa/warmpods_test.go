package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// waitDemoPlugins waits until the home has exactly n live `ipa plugin demo`
// processes, none of them in not, and returns them.
func waitDemoPlugins(t testing.TB, h *home, n int, within time.Duration, not ...int) []int {
	t.Helper()
	var pids []int
	eventually(t, within, func() string {
		pids = h.pluginPids("demo")
		if len(pids) != n {
			return fmt.Sprintf("%d demo plugins %v, want %d", len(pids), pids, n)
		}
		for _, pid := range pids {
			if slices.Contains(not, pid) {
				return fmt.Sprintf("demo plugins %v still include %d", pids, pid)
			}
		}
		return ""
	})
	return pids
}

// waitWarmIdle waits until the server's pool reports n idle, handshaken
// processes of runtime (ipa_pod_warm_idle): a plugin process is visible
// before its handshake is done.
func waitWarmIdle(t testing.TB, s *server, runtime string, n int) {
	t.Helper()
	want := fmt.Sprintf(`ipa_pod_warm_idle{runtime=%q} %d`, runtime, n)
	eventually(t, 20*time.Second, func() string {
		resp, err := s.client.Get(s.url + "/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if line == want {
				return ""
			}
		}
		return "no " + want + " in /metrics yet"
	})
}

// The warm pool through the real binary: idle `ipa plugin demo` processes
// wait, startPod hands one its task and a replacement follows, a clean stop
// leaves no process, and after kill -9 of the server its idle processes
// exit by themselves once their orphan grace has passed.
func TestWarmPodsThroughServer(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	h.env = []string{"IPA_PLUGIN_ORPHAN_GRACE=2s"}
	s := h.start("--warm-pods", "demo=2")
	waitWarmIdle(t, s, "demo", 2)
	idle := waitDemoPlugins(t, h, 2, 20*time.Second)

	id := s.createTask(t, map[string]any{"title": "warm", "runtimeConfig": demoConfig(200)})
	started, tv := s.startPod(t, id)
	if !started || !slices.Contains(idle, tv.Pod.PID) {
		t.Fatalf("startPod: started=%v pid %d, want a start on one of the idle processes %v", started, tv.Pod.PID, idle)
	}
	mustBeOurRunningPlugin(t, h, tv.Pod.PID, "demo")
	evs := s.events(t, id, "pod_started")
	if len(evs) != 1 || dataField[int](t, evs[0], "pid") != tv.Pod.PID || dataField[string](t, evs[0], "trigger") != "manual" {
		t.Fatalf("pod_started %+v, want one with pid %d, trigger manual", evs, tv.Pod.PID)
	}
	// The work runs as on a cold start: the demo walks its phases.
	eventually(t, 10*time.Second, func() string {
		for _, e := range s.events(t, id, "phase_changed") {
			if e.ActorID == "runtime:demo" {
				return ""
			}
		}
		return "no phase change by the demo runtime yet"
	})
	// One pod and two idle processes again.
	all := waitDemoPlugins(t, h, 3, 20*time.Second)
	s.stop(t, 12*time.Second)
	mustBeGone(t, h, 2*time.Second, all...)
	if left := taggedPids(h.tag); len(left) != 0 {
		t.Fatalf("processes alive after a clean stop: %v", left)
	}

	// kill -9: nothing stops the idle processes but their own orphan watch.
	s2 := h.start("--warm-pods", "demo=2", "--resume-pods=false")
	waitWarmIdle(t, s2, "demo", 2)
	idle = waitDemoPlugins(t, h, 2, 20*time.Second)
	s2.crash(t)
	began := time.Now()
	mustBeGone(t, h, 15*time.Second, idle...)
	t.Logf("idle warm plugins gone %s after kill -9 of the server (orphan grace 2s)", time.Since(began).Round(10*time.Millisecond))
	if left := taggedPids(h.tag); len(left) != 0 {
		t.Fatalf("processes alive after the server's kill -9 and the orphan grace: %v", left)
	}
}

// TestWarmPodsMeasurement measures startPod of the demo runtime through a
// server with a warm pool beside one without and beside the bare go-plugin
// launch of `ipa plugin demo`, interleaved in one run, and the memory of an
// idle warm process. A measurement, not a check: set IPA_WARM_BENCH=1.
func TestWarmPodsMeasurement(t *testing.T) {
	if os.Getenv("IPA_WARM_BENCH") == "" {
		t.Skip("a measurement: set IPA_WARM_BENCH=1")
	}
	const n = 40
	hw, hc := newHome(t), newHome(t)
	warm := hw.start("--warm-pods", "demo=2")
	cold := hc.start()
	waitDemoPlugins(t, hw, 2, 20*time.Second)

	startPod := func(s *server) time.Duration {
		id := s.createTask(t, map[string]any{"title": "bench", "runtimeConfig": demoConfig(1000)})
		began := time.Now()
		started, _ := s.startPod(t, id)
		d := time.Since(began)
		if !started {
			t.Fatal("startPod did not start")
		}
		s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
		return d
	}
	floor := func() time.Duration {
		began := time.Now()
		client := plugin.NewClient(podapi.NewClientConfig(exec.Command(ipaBin, "plugin", "demo"), hclog.NewNullLogger()))
		if _, err := podapi.Dispense(client); err != nil {
			t.Fatal(err)
		}
		d := time.Since(began)
		client.Kill()
		return d
	}
	var ws, cs, fs []time.Duration
	for range n {
		waitWarmIdle(t, warm, "demo", 2) // the pool is full again
		ws = append(ws, startPod(warm))
		cs = append(cs, startPod(cold))
		fs = append(fs, floor())
	}
	idle := waitDemoPlugins(t, hw, 2, 20*time.Second)
	var pss []int64
	for _, pid := range idle {
		kb, err := pssKiB(pid)
		if err != nil {
			t.Fatal(err)
		}
		pss = append(pss, kb)
	}
	t.Logf("n=%d each, interleaved; p50 / p99", n)
	t.Logf("startPod, warm pool:  %s / %s", p(ws, 50), p(ws, 99))
	t.Logf("startPod, cold:       %s / %s", p(cs, 50), p(cs, 99))
	t.Logf("bare go-plugin launch of `ipa plugin demo`: %s / %s", p(fs, 50), p(fs, 99))
	t.Logf("idle warm demo plugin PSS: %v KiB", pss)
	warm.stop(t, 12*time.Second)
	cold.stop(t, 12*time.Second)
}

// exec runs from the pool as from a cold launch: its command's output and
// exit status are the task's, recorded as for any exec pod.
func TestWarmPodsExec(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start("--warm-pods", "exec=1")
	waitWarmIdle(t, s, "exec", 1)
	var idle []int
	eventually(t, 20*time.Second, func() string {
		idle = h.pluginPids("exec")
		if len(idle) != 1 {
			return fmt.Sprintf("%d idle exec plugins", len(idle))
		}
		return ""
	})
	id := s.createTask(t, map[string]any{"runtime": "exec",
		"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "echo out1; exit 3"}, "env": tagEnv(h)}})
	started, tv := s.startPod(t, id)
	if !started || tv.Pod.PID != idle[0] {
		t.Fatalf("startPod: started=%v pid %d, want the idle exec plugin %d", started, tv.Pod.PID, idle[0])
	}
	var crashed []event
	eventually(t, 5*time.Second, func() string {
		if crashed = s.events(t, id, "pod_crashed"); len(crashed) == 0 {
			return "no pod_crashed yet"
		}
		return ""
	})
	if code := dataField[*int](t, crashed[0], "exitCode"); code == nil || *code != 3 || dataField[int](t, crashed[0], "pid") != idle[0] {
		t.Fatalf("pod_crashed %s, want exitCode 3 of pid %d", crashed[0].Data, idle[0])
	}
	type line struct{ Stream, Text string }
	var lines []line
	for _, e := range s.events(t, id, "pod_output") {
		lines = append(lines, dataField[[]line](t, e, "lines")...)
	}
	if !slices.Contains(lines, line{"stdout", "out1"}) {
		t.Fatalf("pod_output lines %+v lack stdout out1", lines)
	}
	s.stop(t, 12*time.Second)
	if left := taggedPids(h.tag); len(left) != 0 {
		t.Fatalf("processes alive after a clean stop: %v", left)
	}
}
