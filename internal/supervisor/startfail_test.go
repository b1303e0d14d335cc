package supervisor

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// These tests run before the parallel ones: the package's shutdown tests
// give a stop 300 ms, which extra plugin launches next to them can eat.

// TestStartFailureIsACrash: a plugin that exits before its handshake is
// recorded as pod_crashed (start_failed) with a message that names the
// runtime and no path; StartPod still returns RUNTIME_FAILED.
func TestStartFailureIsACrash(t *testing.T) {
	b := setup(t, func(c *Config) {
		c.Launcher = LauncherFunc(func(string) (*exec.Cmd, error) {
			return exec.Command("/bin/sh", "-c", "echo broken >&2; exit 3"), nil
		})
	})
	task := newTask("", ipa.RestartPolicy{})
	_, err := b.sup.StartPod(context.Background(), task, ipa.TriggerAutoStart, "cause-1")
	if ipa.ErrorCode(err) != ipa.EUNAVAILABLE || ipa.ErrorReason(err) != ipa.ReasonRuntimeFailed {
		t.Fatalf("err = %v", err)
	}
	evs := b.rec.of(task.ID, "")
	if len(evs) != 1 || evs[0].Type != ipa.EventPodCrashed {
		t.Fatalf("events %v, want one pod_crashed", b.rec.types(task.ID))
	}
	var d ipa.PodCrashedData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != ipa.CrashStartFailed || d.Message == "" || !strings.Contains(d.Message, `"test"`) || strings.Contains(d.Message, "/") {
		t.Fatalf("crash data %+v", d)
	}
	if evs[0].CausationID != "cause-1" {
		t.Fatalf("causation %q", evs[0].CausationID)
	}
	st := b.sup.Status(task.ID)
	if st.State != ipa.PodCrashed || len(st.Crashes) != 1 || st.Crashes[0].Message != d.Message {
		t.Fatalf("status %+v", st)
	}
}

// TestStartFailureFollowsThePolicy: with automatic restarts, a failed start
// backs off and is retried like any crash, until the limit.
func TestStartFailureFollowsThePolicy(t *testing.T) {
	b := setup(t, func(c *Config) {
		c.Launcher = LauncherFunc(func(string) (*exec.Cmd, error) { return exec.Command("/bin/false"), nil })
	})
	task := newTask("", ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 1, WindowSeconds: 60, InitialBackoffMs: 10, MaxBackoffMs: 10})
	if _, err := b.sup.StartPod(context.Background(), task, ipa.TriggerManual, ""); err == nil {
		t.Fatal("a start of /bin/false succeeded")
	}
	b.rec.wait(t, task.ID, ipa.EventPodRestartLimitReached, 1)
	want := []string{ipa.EventPodCrashed, ipa.EventPodRestartScheduled, ipa.EventPodCrashed, ipa.EventPodRestartLimitReached}
	if got := b.rec.types(task.ID); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	waitState(t, b.sup, task.ID, ipa.PodFailed)
}

// TestShutdownThenResume: Shutdown records the instance in pod_stopped, and
// Resume on the next supervisor starts the pod with trigger "resume".
func TestShutdownThenResume(t *testing.T) {
	b := setup(t, func(c *Config) { c.InstanceID = "node-a" })
	task := newTask("", ipa.RestartPolicy{})
	mustStart(t, b.sup, task)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.sup.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := b.rec.of(task.ID, ipa.EventPodStopped)
	var sd ipa.PodStoppedData
	if len(stopped) != 1 || json.Unmarshal(stopped[0].Data, &sd) != nil || sd.Reason != ipa.StopShutdown || sd.InstanceID != "node-a" {
		t.Fatalf("pod_stopped %+v", stopped)
	}

	next := newStarted(t, b.cfg)
	if n := ResumeEach(context.Background(), []*ipa.Task{task}, next.StartPod, next.log); n != 1 {
		t.Fatalf("resumed %d pods, want 1", n)
	}
	waitState(t, next, task.ID, ipa.PodRunning)
	started := b.rec.of(task.ID, ipa.EventPodStarted)
	var d ipa.PodStartedData
	if len(started) != 2 || json.Unmarshal(started[1].Data, &d) != nil || d.Trigger != ipa.TriggerResume {
		t.Fatalf("pod_started %+v", started)
	}
	// A second Resume finds the pod running and starts nothing.
	if n := ResumeEach(context.Background(), []*ipa.Task{task}, next.StartPod, next.log); n != 0 {
		t.Fatalf("second resume started %d", n)
	}
}
