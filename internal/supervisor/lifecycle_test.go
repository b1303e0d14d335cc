package supervisor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/lifecycle/lifecycletest"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// The supervisor is a lifecycle.Service, its warm pool's processes
// included.
func TestSupervisorLifecycle(t *testing.T) {
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		s, err := New(Config{
			Recorder:    newRecorder(),
			HostFactory: func(string, string) podapi.Host { return nopHost{} },
			Launcher:    testLauncher(&atomic.Int64{}),
			Leases:      NewMemoryLeaseStore(),
			WarmPods:    map[string]int{"test": 1},
			Logger:      quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Stop is Shutdown bounded by ShutdownTimeout: a pod that stops is
// recorded stopped and StopErr is nil; a pod that ignores its stop is
// killed when the timeout passes, and StopErr says the shutdown ran out of
// time.
func TestSupervisorStopReportsAForcedShutdown(t *testing.T) {
	t.Parallel()
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "Graceful", true: "Forced"}[hang], func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *Config) {
				c.StopTimeout = time.Minute // the shutdown's own bound decides
				if hang {
					c.ShutdownTimeout = 500 * time.Millisecond
				}
			})
			cfg := ""
			if hang {
				cfg = `{"hangStop":true}`
			}
			task := newTask(cfg, ipa.RestartPolicy{})
			pid := mustStart(t, b.sup, task).PID
			b.sup.Stop()
			if processAlive(pid) {
				t.Errorf("pid %d alive after Stop", pid)
			}
			s := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
			// Killed by the shutdown's last resort (not its own stop
			// timeout): the signal says so.
			if s.Reason != ipa.StopShutdown || (s.Signal == "SIGKILL") != hang {
				t.Errorf("pod_stopped %+v", s)
			}
			if err := b.sup.StopErr(); hang != errors.Is(err, context.DeadlineExceeded) || (!hang && err != nil) {
				t.Errorf("StopErr = %v", err)
			}
			b.sup.Stop() // the second waits for nothing and changes nothing
			if err := b.sup.StopErr(); hang != (err != nil) {
				t.Errorf("StopErr after a second Stop = %v", err)
			}
		})
	}
}
