package supervisor

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// TestSilentHostPodIsLost runs real plugins whose host stops calling them
// (state and health polls an hour apart, as when the server is paused): each
// plugin waits out its orphan grace, stops its work and exits with its exit
// report. The supervisor, which still owns the pods, records pod_lost with
// reason host_silent — never pod_stopped exited, the work did not finish —
// and applies the restart policy: restarted with autoRestart, CRASHED
// without.
func TestSilentHostPodIsLost(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.StateInterval = time.Hour
		c.HealthInterval = time.Hour
		c.Launcher = LauncherFunc(func(runtime string) (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = []string{envTestPlugin + "=1", podapi.EnvOrphanGrace + "=300ms", "GORACE=atexit_sleep_ms=0"}
			return cmd, nil
		})
	})
	restarted := newTask("", ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 600, InitialBackoffMs: 10, MaxBackoffMs: 10})
	kept := newTask("", ipa.RestartPolicy{})
	first := mustStart(t, b.sup, restarted)
	mustStart(t, b.sup, kept)

	for _, task := range []*ipa.Task{restarted, kept} {
		lost := decode[ipa.PodLostData](t, b.rec.wait(t, task.ID, ipa.EventPodLost, 1))
		if lost.Reason != ipa.LostHostSilent || lost.PID <= 0 {
			t.Errorf("task %s: pod_lost %+v, want reason %s with the pid", task.ID, lost, ipa.LostHostSilent)
		}
	}
	again := decode[ipa.PodStartedData](t, b.rec.wait(t, restarted.ID, ipa.EventPodStarted, 2))
	if again.Trigger != ipa.TriggerRestart || again.PID == first.PID {
		t.Errorf("after the loss: pod_started %+v, want a restart as a new process", again)
	}
	st := waitState(t, b.sup, kept.ID, ipa.PodCrashed)
	if len(st.Crashes) != 1 || st.Crashes[0].Reason != ipa.CrashLost {
		t.Errorf("task without autoRestart: status %+v, want CRASHED with the loss", st)
	}
	for _, task := range []*ipa.Task{restarted, kept} {
		if evs := b.rec.of(task.ID, ipa.EventPodStopped); len(evs) != 0 {
			t.Errorf("task %s: pod_stopped recorded for work that did not finish: %v", task.ID, b.rec.types(task.ID))
		}
	}
}
