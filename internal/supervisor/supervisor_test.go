package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/podapi"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestStartStop(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	task := newTask("", ipa.RestartPolicy{})
	ctx := context.Background()

	st := mustStart(t, b.sup, task)
	ev := decode[ipa.PodStartedData](t, b.rec.wait(t, task.ID, ipa.EventPodStarted, 1))
	if ev.PID != st.PID || ev.Runtime != "test" || ev.Attempt != 1 || ev.Trigger != "manual" {
		t.Fatalf("pod_started = %+v, status pid %d", ev, st.PID)
	}
	if !processAlive(st.PID) {
		t.Fatal("plugin not alive")
	}
	if ls, _ := b.leases.List(ctx); len(ls) != 1 || ls[0].PID != st.PID || ls[0].StartTicks == 0 || ls[0].Addr == "" {
		t.Fatalf("leases = %+v", ls)
	}

	t.Run("LiveStateCached", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for b.sup.Status(task.ID).Phase == "" {
			if time.Now().After(deadline) {
				t.Fatal("no live state polled")
			}
			time.Sleep(10 * time.Millisecond)
		}
		s := b.sup.Status(task.ID)
		if s.Phase != "PLANNING" || s.Progress != 0.5 || !strings.Contains(string(s.Live), "pid") {
			t.Fatalf("status = %+v", s)
		}
		if l := b.sup.List(); len(l) != 1 || l[0].TaskID != task.ID {
			t.Fatalf("List = %+v", l)
		}
	})

	t.Run("StartAgainIsNoop", func(t *testing.T) {
		started, err := b.sup.StartPod(ctx, task, ipa.TriggerManual, "")
		if err != nil || started {
			t.Fatalf("StartPod again = %v, %v", started, err)
		}
	})

	if err := b.sup.StopPod(ctx, task.ID, "done for today"); err != nil {
		t.Fatal(err)
	}
	if processAlive(st.PID) {
		t.Fatal("plugin alive after StopPod")
	}
	stopped := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
	if stopped.Reason != "done for today" || stopped.Forced || stopped.PID != st.PID {
		t.Fatalf("pod_stopped = %+v", stopped)
	}
	if s := b.sup.Status(task.ID); s.State != ipa.PodStopped || s.PID != 0 || s.Live != nil {
		t.Fatalf("status after stop = %+v", s)
	}
	if ls, _ := b.leases.List(ctx); len(ls) != 0 {
		t.Fatalf("leases after stop = %+v", ls)
	}
	if err := b.sup.StopPod(ctx, task.ID, "again"); !errors.Is(err, ipa.ErrPodNotRunning) {
		t.Fatalf("StopPod of a stopped pod = %v", err)
	}
	if err := b.sup.StopPod(ctx, "no-such-task", "x"); !errors.Is(err, ipa.ErrPodNotRunning) || ipa.ErrorReason(err) != ipa.ReasonNotRunning {
		t.Fatalf("StopPod of unknown task = %v", err)
	}
	if got := b.rec.types(task.ID); !slices.Equal(got, []string{ipa.EventPodStarted, ipa.EventPodStopped}) {
		t.Fatalf("events = %v", got)
	}
}

func TestRestartPod(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	task := newTask("", ipa.RestartPolicy{})
	first := mustStart(t, b.sup, task)
	if err := b.sup.RestartPod(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	second := b.sup.Status(task.ID)
	if second.State != ipa.PodRunning || second.PID == first.PID || processAlive(first.PID) || !processAlive(second.PID) {
		t.Fatalf("restart: first %+v second %+v", first, second)
	}
	if got := b.rec.types(task.ID); !slices.Equal(got, []string{ipa.EventPodStarted, ipa.EventPodStopped, ipa.EventPodStarted}) {
		t.Fatalf("events = %v", got)
	}
	if r := decode[ipa.PodStoppedData](t, b.rec.of(task.ID, ipa.EventPodStopped)[0]).Reason; r != ipa.StopRestart {
		t.Fatalf("stop reason = %q", r)
	}
	// Restart of a stopped pod just starts it.
	if err := b.sup.StopPod(context.Background(), task.ID, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.sup.RestartPod(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	waitState(t, b.sup, task.ID, ipa.PodRunning)
}

func TestStartPodErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	t.Run("UnknownRuntime", func(t *testing.T) {
		task := newTask("", ipa.RestartPolicy{})
		task.Runtime = "nope"
		_, err := b.sup.StartPod(context.Background(), task, ipa.TriggerManual, "")
		if ipa.ErrorCode(err) != ipa.EINVALID {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("BinaryIsNotAPlugin", func(t *testing.T) {
		cfg := b.cfg
		cfg.Launcher = LauncherFunc(func(string) (*exec.Cmd, error) { return exec.Command("/bin/sh", "-c", "echo hello; sleep 30"), nil })
		cfg.StartTimeout = 2 * time.Second
		s := newStarted(t, cfg)
		task := newTask("", ipa.RestartPolicy{})
		_, err := s.StartPod(context.Background(), task, ipa.TriggerManual, "")
		if ipa.ErrorCode(err) != ipa.EUNAVAILABLE || ipa.ErrorReason(err) != ipa.ReasonRuntimeFailed {
			t.Fatalf("err = %v", err)
		}
		// A failed start is a crash (start_failed); the default policy does
		// not restart.
		if st := s.Status(task.ID); st.State != ipa.PodCrashed {
			t.Fatalf("state = %s", st.State)
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		task := newTask(`{"exitAfterMs":"soon"}`, ipa.RestartPolicy{})
		_, err := b.sup.StartPod(context.Background(), task, ipa.TriggerManual, "")
		if ipa.ErrorCode(err) != ipa.EINVALID {
			t.Fatalf("err = %v", err)
		}
		if got := b.rec.types(task.ID); !slices.Equal(got, []string{ipa.EventPodCrashed}) {
			t.Fatalf("events of a refused start: %v, want one pod_crashed", got)
		}
	})
}

// Fifty simultaneous StartPod calls for one task start exactly one process.
func TestConcurrentStartPod(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	task := newTask("", ipa.RestartPolicy{})
	const n = 50
	var wg sync.WaitGroup
	results := make(chan bool, n)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			started, err := b.sup.StartPod(context.Background(), task, ipa.TriggerManual, "")
			if err != nil {
				t.Error(err)
			}
			results <- started
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	count := 0
	for r := range results {
		if r {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("%d calls report started", count)
	}
	if l := b.launches.Load(); l != 1 {
		t.Fatalf("%d processes launched", l)
	}
	if evs := b.rec.of(task.ID, ipa.EventPodStarted); len(evs) != 1 {
		t.Fatalf("%d pod_started events", len(evs))
	}
}

func TestCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	t.Run("SIGKILL", func(t *testing.T) {
		t.Parallel()
		task := newTask("", ipa.RestartPolicy{})
		st := mustStart(t, b.sup, task)
		time.Sleep(50 * time.Millisecond)
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c := decode[ipa.PodCrashedData](t, b.rec.wait(t, task.ID, ipa.EventPodCrashed, 1))
		if c.Signal != "SIGKILL" || c.ExitCode != nil || c.Reason != ipa.CrashSignal || c.UptimeMs < 50 || c.PID != st.PID {
			t.Fatalf("pod_crashed = %+v", c)
		}
		s := waitState(t, b.sup, task.ID, ipa.PodCrashed)
		if s.PID != 0 || len(s.Crashes) != 1 || s.Crashes[0].Signal != "SIGKILL" {
			t.Fatalf("status = %+v", s)
		}
		if err := b.sup.StopPod(context.Background(), task.ID, "x"); !errors.Is(err, ipa.ErrPodNotRunning) {
			t.Fatalf("StopPod of a crashed pod = %v", err)
		}
	})
	t.Run("ExitCode3", func(t *testing.T) {
		t.Parallel()
		task := newTask(`{"exitAfterMs":100,"exitCode":3}`, ipa.RestartPolicy{})
		mustStart(t, b.sup, task)
		c := decode[ipa.PodCrashedData](t, b.rec.wait(t, task.ID, ipa.EventPodCrashed, 1))
		if c.ExitCode == nil || *c.ExitCode != 3 || c.Signal != "" || c.Reason != ipa.CrashExited {
			t.Fatalf("pod_crashed = %+v", c)
		}
		if len(c.Stderr) != stderrTailLines || c.Stderr[len(c.Stderr)-1] != "boom line 24" {
			t.Fatalf("stderr tail = %q", c.Stderr)
		}
	})
	t.Run("ExitReport", func(t *testing.T) {
		// The plugin's exit report names the reason; even a status 0 with a
		// report is a crash, and the report is not a stderr line.
		t.Parallel()
		for _, code := range []int{3, 0} {
			task := newTask(fmt.Sprintf(`{"exitAfterMs":50,"exitCode":%d,"exitReason":"limit: memory"}`, code), ipa.RestartPolicy{})
			mustStart(t, b.sup, task)
			c := decode[ipa.PodCrashedData](t, b.rec.wait(t, task.ID, ipa.EventPodCrashed, 1))
			if c.ExitCode == nil || *c.ExitCode != code || c.Reason != ipa.CrashLimitMemory || c.Message != "told to" {
				t.Fatalf("pod_crashed = %+v, want exit %d with reason %q", c, code, ipa.CrashLimitMemory)
			}
			for _, l := range c.Stderr {
				if strings.HasPrefix(l, podapi.ExitReportPrefix) {
					t.Fatalf("exit report in the stderr tail: %q", c.Stderr)
				}
			}
			if s := waitState(t, b.sup, task.ID, ipa.PodCrashed); len(s.Crashes) != 1 || s.Crashes[0].Reason != ipa.CrashLimitMemory {
				t.Fatalf("status = %+v", s)
			}
		}
	})
	t.Run("ExitZeroIsAStop", func(t *testing.T) {
		t.Parallel()
		task := newTask(`{"exitAfterMs":50,"exitCode":0}`, ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 10, MaxBackoffMs: 10})
		mustStart(t, b.sup, task)
		s := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
		if s.Reason != ipa.StopExited || s.ExitCode == nil || *s.ExitCode != 0 {
			t.Fatalf("pod_stopped = %+v", s)
		}
		waitState(t, b.sup, task.ID, ipa.PodStopped)
	})
}

func TestUnresponsivePluginIsKilled(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.HealthInterval = 50 * time.Millisecond
		c.HealthTimeout = 50 * time.Millisecond
		c.HealthFailures = 3
	})
	task := newTask(`{"hangHealth":true}`, ipa.RestartPolicy{})
	st := mustStart(t, b.sup, task)
	c := decode[ipa.PodCrashedData](t, b.rec.wait(t, task.ID, ipa.EventPodCrashed, 1))
	if c.Reason != ipa.CrashUnresponsive || c.Signal != "SIGKILL" {
		t.Fatalf("pod_crashed = %+v", c)
	}
	if processAlive(st.PID) {
		t.Fatal("hung plugin still alive")
	}
}

func TestRestartPolicy(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := setup(t, func(c *Config) { c.Now, c.After = clock.Now, clock.After })
	pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 1000, MaxBackoffMs: 3000}
	task := newTask("", pol)
	ctx := context.Background()

	crash := func(n int) {
		t.Helper()
		st := waitState(t, b.sup, task.ID, ipa.PodRunning)
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		b.rec.wait(t, task.ID, ipa.EventPodCrashed, n)
	}
	mustStart(t, b.sup, task)
	for i := 1; i <= 3; i++ {
		crash(i)
		ev := decode[ipa.PodRestartScheduledData](t, b.rec.wait(t, task.ID, ipa.EventPodRestartScheduled, i))
		st := waitState(t, b.sup, task.ID, ipa.PodBackoff)
		if st.NextAttemptAt == nil || !st.NextAttemptAt.Equal(ev.At) || ev.Attempt != i {
			t.Fatalf("backoff %d: status %+v event %+v", i, st, ev)
		}
		clock.fire(t, i)
		started := decode[ipa.PodStartedData](t, b.rec.wait(t, task.ID, ipa.EventPodStarted, i+1))
		if started.Trigger != "restart" || started.Attempt != i+1 {
			t.Fatalf("restart %d: pod_started %+v", i, started)
		}
		if r := waitState(t, b.sup, task.ID, ipa.PodRunning).Restarts; r != i {
			t.Fatalf("restarts = %d, want %d", r, i)
		}
	}
	if got, want := clock.Delays(), []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("delays = %v, want %v (1x, 2x, 4x capped at 3s)", got, want)
	}

	// The fourth crash in the window exceeds MaxAttempts: FAILED, and it stays.
	crash(4)
	lim := decode[ipa.PodRestartLimitReachedData](t, b.rec.wait(t, task.ID, ipa.EventPodRestartLimitReached, 1))
	if lim.MaxAttempts != 3 || lim.WindowSeconds != 60 {
		t.Fatalf("limit = %+v", lim)
	}
	waitState(t, b.sup, task.ID, ipa.PodFailed)
	if started, err := b.sup.startPod(ctx, PodSpec{Task: task}, false); started || err != nil {
		t.Fatalf("non-manual start of FAILED = %v, %v", started, err)
	}
	if err := b.sup.StopPod(ctx, task.ID, "x"); !errors.Is(err, ipa.ErrPodNotRunning) {
		t.Fatalf("stop of FAILED = %v", err)
	}

	// A person's start clears FAILED and the counter: the next crash backs off 1x.
	mustStart(t, b.sup, task)
	crash(5)
	b.rec.wait(t, task.ID, ipa.EventPodRestartScheduled, 4)
	if d := clock.Delays(); d[len(d)-1] != time.Second {
		t.Fatalf("delay after manual start = %v", d[len(d)-1])
	}
	clock.fire(t, 4)
	b.rec.wait(t, task.ID, ipa.EventPodStarted, 6)

	// A run that outlives the window resets the count: 1x again, not 2x.
	waitState(t, b.sup, task.ID, ipa.PodRunning)
	clock.Advance(2 * time.Minute)
	crash(6)
	b.rec.wait(t, task.ID, ipa.EventPodRestartScheduled, 5)
	if d := clock.Delays(); d[len(d)-1] != time.Second {
		t.Fatalf("delay after a long run = %v", d[len(d)-1])
	}

	// A stop during BACKOFF calls the restart off.
	waitState(t, b.sup, task.ID, ipa.PodBackoff)
	if err := b.sup.StopPod(ctx, task.ID, "enough"); err != nil {
		t.Fatal(err)
	}
	s := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
	if !s.CancelledRestart || s.Reason != "enough" {
		t.Fatalf("pod_stopped = %+v", s)
	}
	clock.fire(t, 5) // too late: nothing restarts
	time.Sleep(100 * time.Millisecond)
	if st := b.sup.Status(task.ID); st.State != ipa.PodStopped || len(b.rec.of(task.ID, ipa.EventPodStarted)) != 6 {
		t.Fatalf("after cancelled restart: %+v, events %v", st, b.rec.types(task.ID))
	}

	// Forget drops the history.
	b.sup.Forget(task.ID)
	if st := b.sup.Status(task.ID); st.Known || len(st.Crashes) != 0 || st.State != ipa.PodStopped {
		t.Fatalf("after Forget: %+v", st)
	}
}

func TestShutdownStopsEveryPlugin(t *testing.T) {
	t.Parallel()
	// Long enough that the two plugins that do stop are never forced on a
	// loaded machine; the third never stops and is forced when it runs out.
	b := setup(t, func(c *Config) { c.StopTimeout = 3 * time.Second })
	var pids []int
	var tasks []*ipa.Task
	for _, cfg := range []string{"", "", `{"hangStop":true}`} {
		task := newTask(cfg, ipa.RestartPolicy{})
		pids = append(pids, mustStart(t, b.sup, task).PID)
		tasks = append(tasks, task)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.sup.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("pid %d alive after Shutdown", pid)
		}
	}
	for i, task := range tasks {
		s := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
		if s.Reason != ipa.StopShutdown || s.Forced != (i == 2) {
			t.Errorf("pod_stopped %d = %+v", i, s)
		}
	}
	if _, err := b.sup.StartPod(context.Background(), newTask("", ipa.RestartPolicy{}), ipa.TriggerManual, ""); ipa.ErrorCode(err) != ipa.EUNAVAILABLE {
		t.Fatalf("StartPod after Shutdown = %v", err)
	}
	if err := b.sup.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

func TestReattach(t *testing.T) {
	t.Parallel()
	leases := NewMemoryLeaseStore()
	b := setup(t, func(c *Config) { c.Leases = leases })
	task := newTask("", ipa.RestartPolicy{})
	stray := newTask("", ipa.RestartPolicy{})
	pid := mustStart(t, b.sup, task).PID
	strayPID := mustStart(t, b.sup, stray).PID

	// The server dies: its goroutines and go-plugin clients are gone, its
	// plugins and leases are not.
	b.sup.abandon()
	if !processAlive(pid) {
		t.Fatal("plugin died with its host")
	}

	rec2 := newRecorder()
	cfg := b.cfg
	cfg.Recorder = rec2
	s2 := newStarted(t, cfg)
	task.Status = ipa.StatusActive
	began := time.Now()
	if err := s2.Reconcile(context.Background(), []ReconcileTarget{{Task: task}}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if took > 5*time.Second {
		t.Fatalf("reconcile took %s", took)
	}
	re := decode[ipa.PodReattachedData](t, rec2.wait(t, task.ID, ipa.EventPodReattached, 1))
	if re.PID != pid {
		t.Fatalf("reattached pid %d, want %d", re.PID, pid)
	}
	st := s2.Status(task.ID)
	if st.State != ipa.PodRunning || st.PID != pid || !processAlive(pid) {
		t.Fatalf("status after reattach: %+v", st)
	}
	// Its host service and live state work again.
	deadline := time.Now().Add(5 * time.Second)
	for s2.Status(task.ID).Phase == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s2.Status(task.ID).Phase != "PLANNING" {
		t.Fatal("no live state after reattach")
	}
	// The stray plugin (task not active) was killed and recorded lost.
	lost := decode[ipa.PodLostData](t, rec2.wait(t, stray.ID, ipa.EventPodLost, 1))
	if lost.Reason != ipa.LostNotActive || processAlive(strayPID) {
		t.Fatalf("stray: %+v alive=%v", lost, processAlive(strayPID))
	}

	// A crash of the adopted process is noticed through its pidfd.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c := decode[ipa.PodCrashedData](t, rec2.wait(t, task.ID, ipa.EventPodCrashed, 1))
	if c.PID != pid || c.Reason != ipa.CrashLost {
		t.Fatalf("pod_crashed = %+v", c)
	}
	t.Logf("reconcile of 2 leases took %s", took)
}

func TestReconcileLost(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := setup(t, func(c *Config) { c.Now, c.After = clock.Now, clock.After })
	ctx := context.Background()
	pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 500, MaxBackoffMs: 500}

	// A dead pid.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	gone := newTask("", pol)
	gone.Status = ipa.StatusActive
	_ = b.leases.Save(ctx, Lease{TaskID: gone.ID, Runtime: "test", PID: dead.Process.Pid, StartTicks: 1, Network: "unix", Addr: "/nonexistent", Protocol: "grpc"})
	// A recycled pid: alive, but another process (this test) than the lease says.
	recycled := newTask("", ipa.RestartPolicy{})
	recycled.Status = ipa.StatusActive
	self, _ := procStartTicks(syscall.Getpid())
	_ = b.leases.Save(ctx, Lease{TaskID: recycled.ID, Runtime: "test", PID: syscall.Getpid(), StartTicks: self + 1, Network: "unix", Addr: "/nonexistent", Protocol: "grpc"})
	// ACTIVE with no lease at all.
	unleased := newTask("", ipa.RestartPolicy{})
	unleased.Status = ipa.StatusActive
	// FAILED stays FAILED.
	failed := newTask("", pol)
	failed.PodState = ipa.PodFailed

	if err := b.sup.Reconcile(ctx, []ReconcileTarget{{gone}, {recycled}, {unleased}, {failed}}); err != nil {
		t.Fatal(err)
	}
	for task, reason := range map[*ipa.Task]string{gone: ipa.LostProcessGone, recycled: ipa.LostProcessGone, unleased: ipa.LostNoLease} {
		if l := decode[ipa.PodLostData](t, b.rec.wait(t, task.ID, ipa.EventPodLost, 1)); l.Reason != reason {
			t.Errorf("%s: lost %+v, want %s", task.ID, l, reason)
		}
	}
	// The policy applies to a lost pod: gone has auto restart.
	b.rec.wait(t, gone.ID, ipa.EventPodRestartScheduled, 1)
	waitState(t, b.sup, gone.ID, ipa.PodBackoff)
	clock.fire(t, 1)
	b.rec.wait(t, gone.ID, ipa.EventPodStarted, 1)
	waitState(t, b.sup, gone.ID, ipa.PodRunning)
	if st := b.sup.Status(recycled.ID); st.State != ipa.PodCrashed {
		t.Errorf("recycled: %+v", st)
	}
	if st := b.sup.Status(failed.ID); st.State != ipa.PodFailed {
		t.Errorf("failed: %+v", st)
	}
	if ls, _ := b.leases.List(ctx); len(ls) != 1 || ls[0].TaskID != gone.ID {
		t.Errorf("leases = %+v", ls)
	}
}

func TestStderrTail(t *testing.T) {
	t.Parallel()
	tail := newStderrTail(quietLogger())
	for i := range 30 {
		_, _ = tail.Write([]byte("line " + string(rune('a'+i%26)) + "\n"))
	}
	_, _ = tail.Write([]byte("partial"))
	got := tail.Tail()
	if len(got) != stderrTailLines || got[len(got)-1] != "partial" || got[len(got)-2] != "line d" {
		t.Fatalf("tail = %q", got)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := New(Config{})
	for _, field := range []string{"Recorder", "HostFactory", "Launcher", "Leases"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New(empty) = %v, want it to name %s", err, field)
		}
	}
}
