package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// The tests run real plugin processes: the test binary re-executed with
// IPA_TEST_PLUGIN set serves testRuntime through podapi.Serve, so every test
// goes through the real go-plugin handshake, real gRPC and real signals.

const envTestPlugin = "IPA_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envTestPlugin) != "" {
		podapi.Serve(&testRuntime{})
		os.Exit(0)
	}
	dbtest.Main(m) // stops the PostgreSQL cluster the database tests started
}

// testConfig is the runtime config the helper plugin understands.
type testConfig struct {
	ExitAfterMs int    `json:"exitAfterMs"` // exit on its own after this long (0: never)
	ExitCode    int    `json:"exitCode"`
	ExitReason  string `json:"exitReason"` // written as the exit report before exiting
	HangHealth  bool   `json:"hangHealth"` // Health never answers
	HangStop    bool   `json:"hangStop"`   // Stop never returns and the process ignores shutdown
}

type testRuntime struct {
	mu     sync.Mutex
	taskID string
	cfg    testConfig
}

func (r *testRuntime) Start(_ context.Context, req podapi.StartRequest) (podapi.StartResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.taskID = req.TaskID
	if len(req.RuntimeConfig) > 0 {
		if err := json.Unmarshal(req.RuntimeConfig, &r.cfg); err != nil {
			return podapi.StartResponse{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "bad config: %v", err)
		}
	}
	if r.cfg.ExitAfterMs > 0 {
		cfg := r.cfg
		go func() {
			time.Sleep(time.Duration(cfg.ExitAfterMs) * time.Millisecond)
			for i := range 25 {
				// fd 2 is the pipe the host reads (go-plugin swaps os.Stderr).
				_, _ = syscall.Write(2, []byte(fmt.Sprintf("boom line %d\n", i)))
			}
			if cfg.ExitReason != "" {
				_, _ = syscall.Write(2, podapi.FormatExitReport(podapi.ExitReport{Reason: cfg.ExitReason, Message: "told to"}))
			}
			os.Exit(cfg.ExitCode)
		}()
	}
	return podapi.StartResponse{}, nil
}

func (r *testRuntime) Attach(_ context.Context, req podapi.AttachRequest) (podapi.AttachResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return podapi.AttachResponse{TaskID: r.taskID}, nil
}

func (r *testRuntime) State(context.Context, podapi.StateRequest) (podapi.StateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return podapi.StateResponse{TaskID: r.taskID, Phase: "PLANNING", Progress: 0.5, Live: []byte(`{"pid":` + strconv.Itoa(os.Getpid()) + `}`), Running: true}, nil
}

func (r *testRuntime) Stop(ctx context.Context, _ podapi.StopRequest) (podapi.StopResponse, error) {
	r.mu.Lock()
	hang := r.cfg.HangStop
	r.mu.Unlock()
	if hang {
		select {} // neither the host's Stop nor go-plugin's shutdown ever finishes
	}
	return podapi.StopResponse{}, nil
}

func (r *testRuntime) Health(ctx context.Context, _ podapi.HealthRequest) (podapi.HealthResponse, error) {
	r.mu.Lock()
	hang := r.cfg.HangHealth
	r.mu.Unlock()
	if hang {
		<-ctx.Done()
		return podapi.HealthResponse{}, ctx.Err()
	}
	return podapi.HealthResponse{Healthy: true}, nil
}

// recorder is an in-memory Recorder; the Recorder is a seam, not the thing
// under test.
type recorder struct {
	mu     sync.Mutex
	events []ipa.Event
	at     []time.Time // wall time each event arrived
	notify chan struct{}
	seq    atomic.Int64
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) RecordPodEvent(_ context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error) {
	b, err := json.Marshal(ev.Data)
	if err != nil {
		return ipa.Event{}, err
	}
	e := ipa.Event{ID: strconv.FormatInt(r.seq.Add(1), 10), TaskID: taskID, Type: ev.Type, Data: b, CausationID: ev.CausationID, OccurredAt: time.Now()}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return e, nil
}

// of returns the events of one task with type typ.
func (r *recorder) of(taskID, typ string) []ipa.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ipa.Event
	for _, e := range r.events {
		if e.TaskID == taskID && (typ == "" || e.Type == typ) {
			out = append(out, e)
		}
	}
	return out
}

// wait waits (up to 10s) for the n-th event of typ for taskID and returns it.
func (r *recorder) wait(t testing.TB, taskID, typ string, n int) ipa.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if evs := r.of(taskID, typ); len(evs) >= n {
			return evs[n-1]
		}
		select {
		case <-r.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %d× %s for task %s; have %v", n, typ, taskID, r.types(taskID))
		}
	}
}

func (r *recorder) types(taskID string) []string {
	var out []string
	for _, e := range r.of(taskID, "") {
		out = append(out, e.Type)
	}
	return out
}

func decode[T any](t testing.TB, e ipa.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("decode %s: %v", e.Type, err)
	}
	return v
}

type nopHost struct{}

func (nopHost) AppendEvent(context.Context, podapi.AppendEventRequest) (podapi.AppendEventResponse, error) {
	return podapi.AppendEventResponse{}, nil
}
func (nopHost) RequestPhase(context.Context, podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	return podapi.PhaseResponse{}, nil
}
func (nopHost) Output(context.Context, podapi.OutputRequest) (podapi.OutputResponse, error) {
	return podapi.OutputResponse{}, nil
}

// fakeClock is an injectable Now and After: back-off timers fire only when
// the test says so, and it records every delay asked for.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	delays []time.Duration
	chans  []chan time.Time
	added  chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), added: make(chan struct{}, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.delays = append(c.delays, d)
	c.chans = append(c.chans, ch)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// fire waits for the n-th back-off timer (1-based), advances the clock by
// its delay and fires it.
func (c *fakeClock) fire(t testing.TB, n int) time.Duration {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.chans) >= n {
			d := c.delays[n-1]
			c.now = c.now.Add(d)
			c.chans[n-1] <- c.now
			c.mu.Unlock()
			return d
		}
		c.mu.Unlock()
		select {
		case <-c.added:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no back-off timer #%d", n)
		}
	}
}

func (c *fakeClock) Delays() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.delays...)
}

// bundle is what a test gets from setup.
type bundle struct {
	sup      *Supervisor
	rec      *recorder
	leases   *MemoryLeaseStore
	launches *atomic.Int64
	cfg      Config
}

// testLauncher runs the test binary as the helper plugin.
func testLauncher(count *atomic.Int64) Launcher {
	return LauncherFunc(func(runtime string) (*exec.Cmd, error) {
		if runtime != "test" {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown runtime %q.", runtime)
		}
		count.Add(1)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		// A race-enabled binary sleeps 1s at exit unless told not to.
		cmd.Env = []string{envTestPlugin + "=1", podapi.EnvOrphanGrace + "=30s", "GORACE=atexit_sleep_ms=0"}
		return cmd, nil
	})
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup starts a Supervisor over real helper plugins; tune adjusts the
// config first. Cleanup shuts it down and checks no plugin is left alive.
func setup(t testing.TB, tune func(*Config)) *bundle {
	t.Helper()
	b := &bundle{rec: newRecorder(), leases: NewMemoryLeaseStore(), launches: &atomic.Int64{}}
	b.cfg = Config{
		Recorder:       b.rec,
		HostFactory:    func(string, string) podapi.Host { return nopHost{} },
		Launcher:       testLauncher(b.launches),
		Leases:         b.leases,
		StopTimeout:    3 * time.Second,
		StateInterval:  50 * time.Millisecond,
		HealthInterval: 100 * time.Millisecond,
		HealthTimeout:  time.Second,
		Logger:         quietLogger(),
	}
	if tune != nil {
		tune(&b.cfg)
	}
	b.sup = newStarted(t, b.cfg)
	return b
}

func newStarted(t testing.TB, cfg Config) *Supervisor {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pids := s.livePIDs()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, pid := range pids {
			if processAlive(pid) {
				t.Errorf("pid %d alive after Shutdown", pid)
			}
		}
	})
	return s
}

// livePIDs lists the pids of the running pods.
func (s *Supervisor) livePIDs() []int {
	var out []int
	for _, st := range s.List() {
		if st.PID > 0 {
			out = append(out, st.PID)
		}
	}
	return out
}

// abandon simulates the death of the server: every goroutine stops, every
// go-plugin client is dropped without Kill, every plugin keeps running.
func (s *Supervisor) abandon() {
	s.mu.Lock()
	s.state = stateClosed
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	close(s.stopped)
}

// processAlive reports whether pid names a live (not zombie) process.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	_, err := procStartTicks(pid)
	return err == nil
}

var taskSeq atomic.Int64

func newTask(cfg string, pol ipa.RestartPolicy) *ipa.Task {
	if cfg == "" {
		cfg = "{}"
	}
	return &ipa.Task{
		ID: fmt.Sprintf("task-%d", taskSeq.Add(1)), Title: "t", Runtime: "test",
		Status: ipa.StatusInactive, RuntimeConfig: json.RawMessage(cfg), RestartPolicy: pol,
	}
}

func mustStart(t testing.TB, s *Supervisor, task *ipa.Task) ipa.PodStatus {
	t.Helper()
	started, err := s.StartPod(context.Background(), task, ipa.TriggerManual, "")
	if err != nil {
		t.Fatalf("StartPod: %v", err)
	}
	if !started {
		t.Fatal("StartPod: started=false for a new pod")
	}
	st := s.Status(task.ID)
	if st.State != ipa.PodRunning || st.PID <= 0 {
		t.Fatalf("status after start: %+v", st)
	}
	return st
}

// waitState waits up to 10s for the pod to reach state.
func waitState(t testing.TB, s *Supervisor, taskID string, state ipa.PodState) ipa.PodStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Status(taskID)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod of %s is %s, want %s", taskID, st.State, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
