package supervisor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// holdRecorder holds the first record of one event type until released.
type holdRecorder struct {
	Recorder
	typ     string
	held    chan struct{} // closed when that record waits
	release chan struct{}
	once    sync.Once
}

func (h *holdRecorder) RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error) {
	if ev.Type == h.typ {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.Recorder.RecordPodEvent(ctx, taskID, ev)
}

// logBuffer is a log destination safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A scheduled restart held up by the store says so while it waits, naming
// what it waits for, instead of leaving "pod restart scheduled" as the last
// word; once the write goes through, the restart happens.
func TestRestartHeldUpSaysWhy(t *testing.T) {
	var logs logBuffer
	hold := &holdRecorder{typ: ipa.EventPodRestartScheduled, held: make(chan struct{}), release: make(chan struct{})}
	b := setup(t, func(c *Config) {
		hold.Recorder = c.Recorder
		c.Recorder = hold
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	released := false
	defer func() {
		if !released {
			close(hold.release)
		}
	}()
	task := newTask("", ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 10, MaxBackoffMs: 10})
	first := mustStart(t, b.sup, task)
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hold.held:
	case <-time.After(30 * time.Second):
		t.Fatal("pod_restart_scheduled was never recorded")
	}

	want := []string{`msg="pod restart held up"`, `task_id=` + task.ID, `waiting_for="pod_restart_scheduled to be recorded"`}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := logs.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("while the restart waits for the store, the log never says %s:\n%s", missing, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.sup.Status(task.ID); st.State != ipa.PodBackoff || st.Restarts != 0 {
		t.Fatalf("while held: pod %s with %d restarts, want BACKOFF with none yet", st.State, st.Restarts)
	}

	close(hold.release)
	released = true
	b.rec.wait(t, task.ID, ipa.EventPodStarted, 2)
	st := waitState(t, b.sup, task.ID, ipa.PodRunning)
	if st.PID == first.PID || st.Restarts != 1 {
		t.Fatalf("after the write: pod pid %d (first %d) with %d restarts, want a new process and one restart", st.PID, first.PID, st.Restarts)
	}
}
