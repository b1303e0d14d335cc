package supervisor

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// holdPipes starts a process, in a session of its own (so no kill of the
// plugin's group reaches it), that holds copies of the write ends of the
// plugin's stdout and stderr pipes: what a process forked while those pipes
// were open does until it execs or exits. The pipes then reach no end when
// the plugin dies. The process is killed at cleanup.
func holdPipes(t *testing.T, pluginPID int) (ended <-chan struct{}) {
	t.Helper()
	var files []*os.File
	for _, fd := range []int{1, 2} {
		f, err := os.OpenFile("/proc/"+strconv.Itoa(pluginPID)+"/fd/"+strconv.Itoa(fd), os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("open the plugin's fd %d: %v", fd, err)
		}
		files = append(files, f)
	}
	cmd := exec.Command("sleep", "300")
	cmd.Stdout, cmd.Stderr = files[0], files[1]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err := cmd.Start()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatalf("start the pipe holder: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return done
}

// TestCrashRestartDoesNotWaitForPipeHolders: a plugin SIGKILLed while
// another process holds its output pipes open is recorded as crashed and
// restarted by its policy while that process still lives: the crash's
// handling never waits for the pipes of a dead plugin to reach their end.
func TestCrashRestartDoesNotWaitForPipeHolders(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	task := newTask("", ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 2, WindowSeconds: 60, InitialBackoffMs: 50, MaxBackoffMs: 200})
	st := mustStart(t, b.sup, task)
	held := holdPipes(t, st.PID)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.rec.wait(t, task.ID, ipa.EventPodCrashed, 1)
	started := b.rec.wait(t, task.ID, ipa.EventPodStarted, 2)
	if d := decode[ipa.PodStartedData](t, started); d.Trigger != ipa.TriggerRestart || d.Attempt != 2 {
		t.Fatalf("second pod_started = %+v, want the policy's restart (attempt 2)", d)
	}
	select {
	case <-held:
		t.Fatal("the pipe holder ended before the restart: the test proves nothing")
	default:
	}
	if s := waitState(t, b.sup, task.ID, ipa.PodRunning); s.PID == st.PID || s.Restarts != 1 {
		t.Fatalf("status after the restart = %+v", s)
	}
}

// TestStopDoesNotWaitForPipeHolders: a pod whose plugin's output pipes
// another process holds open stops, while that process still lives.
func TestStopDoesNotWaitForPipeHolders(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	task := newTask("", ipa.RestartPolicy{})
	st := mustStart(t, b.sup, task)
	held := holdPipes(t, st.PID)
	stopped := make(chan error, 1)
	go func() { stopped <- b.sup.StopPod(context.Background(), task.ID, "test") }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("StopPod: %v", err)
		}
	case <-held:
		t.Fatal("the pipe holder ended before the stop returned: the test proves nothing")
	case <-time.After(60 * time.Second):
		t.Fatal("StopPod did not return while another process held the plugin's pipes")
	}
	if s := b.sup.Status(task.ID); s.State != ipa.PodStopped {
		t.Fatalf("status after the stop = %+v", s)
	}
	b.rec.wait(t, task.ID, ipa.EventPodStopped, 1)
}

// TestStopOfAFrozenPlugin: a plugin that no longer runs at all (SIGSTOP:
// its gRPC server answers nothing, its process never exits on its own) is
// stopped: killed at the stop deadline, whatever go-plugin's shutdown of the
// connection waits for.
func TestStopOfAFrozenPlugin(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.StopTimeout = 500 * time.Millisecond })
	task := newTask("", ipa.RestartPolicy{})
	st := mustStart(t, b.sup, task)
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.sup.StopPod(context.Background(), task.ID, "test") }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("StopPod: %v", err)
		}
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(st.PID, syscall.SIGKILL)
		t.Fatal("StopPod of a frozen plugin did not return")
	}
	d := decode[ipa.PodStoppedData](t, b.rec.wait(t, task.ID, ipa.EventPodStopped, 1))
	if !d.Forced {
		t.Fatalf("pod_stopped = %+v, want forced", d)
	}
	if processAlive(st.PID) {
		t.Fatalf("pid %d alive after the stop", st.PID)
	}
}
