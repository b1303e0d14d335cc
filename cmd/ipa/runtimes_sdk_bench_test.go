package main

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// TestStartPodLatencyOfExamples measures startPod of the example runtimes
// beside their floors in the same run: a bare go-plugin launch of the same
// executable (process start, handshake, gRPC connection) and, for Python,
// `python3 -c pass`. A measurement, not a check: set IPA_SDK_BENCH=1.
func TestStartPodLatencyOfExamples(t *testing.T) {
	if os.Getenv("IPA_SDK_BENCH") == "" {
		t.Skip("a measurement: set IPA_SDK_BENCH=1")
	}
	const n = 30
	dir := newPluginDir(t)
	goBin := buildGoExample(t, dir)
	pyBin := copyPythonExample(t, dir)
	s := newHome(t).start("--plugin-dir", dir)

	startPod := func(runtime string) []time.Duration {
		var out []time.Duration
		{
			id := s.createTask(t, map[string]any{"title": "bench", "runtime": runtime})
			began := time.Now()
			started, _ := s.startPod(t, id)
			d := time.Since(began)
			if !started {
				t.Fatalf("startPod of %s did not start", runtime)
			}
			out = append(out, d)
			s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
		}
		return out
	}
	launch := func(path string) []time.Duration {
		var out []time.Duration
		{
			began := time.Now()
			client := plugin.NewClient(podapi.NewClientConfig(exec.Command(path), hclog.NewNullLogger()))
			if _, err := podapi.Dispense(client); err != nil {
				t.Fatal(err)
			}
			out = append(out, time.Since(began))
			client.Kill()
		}
		return out
	}
	run := func(name string, args ...string) []time.Duration {
		var out []time.Duration
		{
			began := time.Now()
			if err := exec.Command(name, args...).Run(); err != nil {
				t.Fatal(err)
			}
			out = append(out, time.Since(began))
		}
		return out
	}

	// Interleaved, one of each per round, so the machine's noise falls on
	// all of them alike.
	var goStart, goFloor, pyStart, pyFloor, pyPass []time.Duration
	for i := 0; i < n; i++ {
		goStart = append(goStart, startPod("hello")...)
		goFloor = append(goFloor, launch(goBin)...)
		pyStart = append(pyStart, startPod("hello-py")...)
		pyFloor = append(pyFloor, launch(pyBin)...)
		pyPass = append(pyPass, run("/usr/bin/python3", "-c", "pass")...)
	}
	t.Logf("n=%d each, p50 (p90)", n)
	t.Logf("hello    startPod %s (%s); bare go-plugin launch %s (%s)", p(goStart, 50), p(goStart, 90), p(goFloor, 50), p(goFloor, 90))
	t.Logf("hello-py startPod %s (%s); bare go-plugin launch %s (%s); python3 -c pass %s (%s)",
		p(pyStart, 50), p(pyStart, 90), p(pyFloor, 50), p(pyFloor, 90), p(pyPass, 50), p(pyPass, 90))
}

func p(ds []time.Duration, q int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*q/100].Round(100 * time.Microsecond)
}
