package podtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/plugins/demo"
	ipaexec "github.com/ipa-dev/ipa/plugins/exec"
	"github.com/ipa-dev/ipa/sdk/pod"
	"github.com/ipa-dev/ipa/sdk/pod/podtest"
)

// TestMain doubles as the plugins under test: with PODTEST_PLUGIN=<name> the
// test binary serves that runtime instead of running tests (a real plugin
// process, as the server would launch it).
func TestMain(m *testing.M) {
	switch os.Getenv("PODTEST_PLUGIN") {
	case "":
		os.Exit(m.Run())
	case "demo":
		demo.Serve()
	case "exec":
		ipaexec.Serve()
	case "broken-stop":
		pod.Serve(&broken{ignoreStop: true})
	case "broken-attach":
		pod.Serve(&broken{wrongAttach: true})
	}
	os.Exit(2)
}

func self(t *testing.T, name string) podtest.Config {
	t.Helper()
	return podtest.Config{
		Command: []string{os.Args[0]},
		Env:     []string{"PODTEST_PLUGIN=" + name},
		Timeout: 60 * time.Second,
	}
}

func TestDemoConforms(t *testing.T) {
	t.Parallel()
	cfg := self(t, "demo")
	cfg.RuntimeConfig = json.RawMessage(`{"stepMs": 50}`)
	cfg.Expect = func(ctx context.Context, rec *podtest.Recording, _ pod.StateResponse) error {
		if !rec.Wait(ctx, func(s podtest.Snapshot) bool { return s.Phase == pod.PhaseReview }) {
			return fmt.Errorf("the demo did not walk the task to REVIEW: %+v", rec.Snapshot())
		}
		return nil
	}
	rep := podtest.Run(t, cfg)
	if rep.ProtocolVersion != pod.ProtocolVersion || rep.Description != demo.Description {
		t.Errorf("protocol %d, description %q", rep.ProtocolVersion, rep.Description)
	}
}

func TestExecConforms(t *testing.T) {
	t.Parallel()
	cfg := self(t, "exec")
	// The kit's work must run until stopped.
	cfg.RuntimeConfig = json.RawMessage(`{"command": ["sh", "-c", "echo started; exec sleep 600"]}`)
	cfg.Expect = func(ctx context.Context, rec *podtest.Recording, _ pod.StateResponse) error {
		if !rec.Wait(ctx, func(s podtest.Snapshot) bool {
			return slices.Contains(s.Output, podtest.OutputLine{Stream: "stdout", Text: "started"})
		}) {
			return fmt.Errorf("no output line 'started': %+v", rec.Snapshot())
		}
		return nil
	}
	podtest.Run(t, cfg)
}

// A broken runtime fails the kit, which names the broken step and only it.
func TestBrokenPluginsFail(t *testing.T) {
	t.Parallel()
	for name, step := range map[string]string{
		"broken-stop":   podtest.StepStop,
		"broken-attach": podtest.StepHostRestart,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := self(t, name)
			var log strings.Builder
			cfg.Log = &syncWriter{w: &log}
			rep := podtest.Check(context.Background(), cfg)
			if rep.Passed() {
				t.Fatalf("the kit passed a broken plugin:\n%s", rep)
			}
			if got := rep.Failed(); !slices.Equal(got, []string{step}) {
				t.Fatalf("failed steps %v, want [%s]:\n%s", got, step, rep)
			}
			if !strings.Contains(rep.String(), "FAIL  "+step) {
				t.Fatalf("report does not name the step:\n%s", rep)
			}
		})
	}
}

// A command that is not a plugin fails at launch, and the report says so.
func TestNotAPlugin(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "not-a-plugin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'I am not a plugin'\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep := podtest.Check(context.Background(), podtest.Config{Command: []string{script}, Timeout: 20 * time.Second})
	if rep.Passed() || !slices.Contains(rep.Failed(), podtest.StepLaunch) {
		t.Fatalf("report:\n%s", rep)
	}
}

// A command that does not exist, or is not executable, fails at launch with
// the reason: the kit reports it and never panics.
func TestMissingCommandFailsAtLaunch(t *testing.T) {
	t.Parallel()
	plain := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for cmd, why := range map[string]string{
		filepath.Join(t.TempDir(), "missing"): "no such file or directory",
		plain:                                 "permission denied",
	} {
		rep := podtest.Check(context.Background(), podtest.Config{Command: []string{cmd}, Timeout: 20 * time.Second})
		if rep.Passed() || !slices.Equal(rep.Failed(), []string{podtest.StepLaunch}) || !strings.Contains(rep.String(), why) {
			t.Fatalf("%s: report:\n%s", cmd, rep)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// broken is a runtime with one deliberate defect.
type broken struct {
	ignoreStop  bool // Stop answers but the work goes on
	wrongAttach bool // Attach refuses a host that restarted

	mu      sync.Mutex
	task    string
	stopped bool
}

func (b *broken) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{Description: "A deliberately broken runtime."}, nil
}

func (b *broken) Start(_ context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.task != "" {
		return pod.StartResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "already started")
	}
	b.task = req.TaskID
	return pod.StartResponse{}, nil
}

func (b *broken) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if req.TaskID != b.task {
		return pod.AttachResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "another task")
	}
	if b.wrongAttach {
		return pod.AttachResponse{}, pod.Errorf(pod.CodeUnavailable, pod.ReasonRuntimeFailed, "cannot take a new host")
	}
	return pod.AttachResponse{TaskID: b.task}, nil
}

func (b *broken) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return pod.StateResponse{TaskID: b.task, Running: b.task != "" && !b.stopped}, nil
}

func (b *broken) Stop(context.Context, pod.StopRequest) (pod.StopResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ignoreStop {
		b.stopped = true
	}
	return pod.StopResponse{}, nil
}
