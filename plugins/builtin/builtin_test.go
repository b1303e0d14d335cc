package builtin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/plugins/builtin"
	"github.com/ipa-dev/ipa/plugins/exec"
)

// TestMain doubles as the plugin: with IPA_TEST_PLUGIN=<name> the test binary
// serves that built-in runtime, as `ipa plugin <name>` does.
func TestMain(m *testing.M) {
	if name := os.Getenv("IPA_TEST_PLUGIN"); name != "" {
		serve, ok := builtin.Lookup(name)
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown plugin %q\n", name)
			os.Exit(2)
		}
		serve()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// host is a Host with the phase rules, recording everything.
type host struct {
	mu     sync.Mutex
	phase  ipa.Phase
	events []podapi.AppendEventRequest
	lines  []podapi.OutputLine
	drops  []int
}

func (h *host) AppendEvent(_ context.Context, req podapi.AppendEventRequest) (podapi.AppendEventResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, req)
	return podapi.AppendEventResponse{Version: int64(len(h.events))}, nil
}

func (h *host) RequestPhase(_ context.Context, req podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ipa.CheckPhaseTransition(h.phase, ipa.Phase(req.To)); err != nil {
		return podapi.PhaseResponse{Phase: string(h.phase)}, err
	}
	h.phase = ipa.Phase(req.To)
	return podapi.PhaseResponse{Phase: string(h.phase)}, nil
}

func (h *host) Output(_ context.Context, req podapi.OutputRequest) (podapi.OutputResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, req.Lines...)
	if req.Dropped > 0 {
		h.drops = append(h.drops, req.Dropped)
	}
	return podapi.OutputResponse{}, nil
}

func (h *host) eventsOf(typ string) []podapi.AppendEventRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []podapi.AppendEventRequest
	for _, e := range h.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (h *host) getPhase() ipa.Phase {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.phase
}

type pod struct {
	client *plugin.Client
	cmd    *osexec.Cmd
	rt     podapi.Runtime
}

// launch starts the built-in runtime name as a real plugin process.
func launch(t *testing.T, name string, env ...string) pod {
	t.Helper()
	cmd := osexec.Command(os.Args[0])
	cmd.Env = append(append([]string{}, env...), "IPA_TEST_PLUGIN="+name)
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard})
	client := plugin.NewClient(podapi.NewClientConfig(cmd, logger))
	t.Cleanup(client.Kill)
	rt, err := podapi.Dispense(client)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	return pod{client: client, cmd: cmd, rt: rt}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exitStatus waits for the plugin process to end and returns its status.
func exitStatus(t *testing.T, p pod) syscall.WaitStatus {
	t.Helper()
	eventually(t, 10*time.Second, "the plugin to exit", p.client.Exited)
	return p.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func TestRegistry(t *testing.T) {
	if got := builtin.Names(); len(got) != 2 || got[0] != "demo" || got[1] != "exec" {
		t.Fatalf("Names() = %v", got)
	}
	if a := builtin.Args("demo"); len(a) != 2 || a[0] != "plugin" || a[1] != "demo" {
		t.Fatalf("Args = %v", a)
	}
	if _, ok := builtin.Lookup("nope"); ok {
		t.Fatal("Lookup(nope) found something")
	}
	for _, r := range builtin.All() {
		if r.Description == "" || r.Serve == nil || r.ValidateConfig == nil {
			t.Fatalf("incomplete %+v", r.Name)
		}
	}
}

func TestDemoWalksPhases(t *testing.T) {
	p := launch(t, "demo")
	h := &host{phase: ipa.PhaseSpecClarification}
	if _, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"stepMs": 20}`), Attempt: 1, Host: h}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "REVIEW", func() bool { return h.getPhase() == ipa.PhaseReview })
	eventually(t, 5*time.Second, "3 step events", func() bool { return len(h.eventsOf("runtime.demo.step")) == 3 })
	st, err := p.rt.State(context.Background(), podapi.StateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != "REVIEW" || st.Progress != 1 || !st.Running || st.TaskID != "t1" || !json.Valid(st.Live) {
		t.Fatalf("state %+v", st)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(h.eventsOf("runtime.demo.step")); n != 3 {
		t.Fatalf("demo kept stepping in REVIEW: %d events", n)
	}
	if _, err := p.rt.Stop(context.Background(), podapi.StopRequest{Deadline: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
}

func TestDemoAdaptsToRefusal(t *testing.T) {
	p := launch(t, "demo")
	h := &host{phase: ipa.PhaseReview} // a person already moved it on
	if _, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"stepMs": 20}`), Host: h}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the demo to learn the phase", func() bool {
		st, err := p.rt.State(context.Background(), podapi.StateRequest{})
		return err == nil && st.Phase == "REVIEW"
	})
	if h.getPhase() != ipa.PhaseReview {
		t.Fatal("phase changed")
	}
	if _, err := p.rt.Health(context.Background(), podapi.HealthRequest{}); err != nil {
		t.Fatalf("plugin unhealthy after a refusal: %v", err)
	}
}

func TestDemoBadConfig(t *testing.T) {
	p := launch(t, "demo")
	_, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"stepMs": 1}`), Host: &host{}})
	if ipa.ErrorCode(err) != ipa.EINVALID {
		t.Fatalf("want EINVALID, got %v", err)
	}
}

func startExec(t *testing.T, cfg string, env ...string) (pod, *host) {
	t.Helper()
	p := launch(t, "exec", env...)
	h := &host{}
	_, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(cfg), WorkDir: t.TempDir(), Host: h})
	if err != nil {
		t.Fatal(err)
	}
	return p, h
}

func exited(t *testing.T, h *host) exec.ExitedData {
	t.Helper()
	eventually(t, 10*time.Second, "runtime.exec.exited", func() bool { return len(h.eventsOf(exec.EventExited)) == 1 })
	var d exec.ExitedData
	if err := json.Unmarshal(h.eventsOf(exec.EventExited)[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestExec(t *testing.T) {
	t.Run("OutputAndExit0", func(t *testing.T) {
		p, h := startExec(t, `{"command": ["sh", "-c", "echo hi; echo oops >&2; pwd; echo $GREETING"], "env": {"GREETING": "hello"}}`)
		d := exited(t, h)
		if d.ExitCode == nil || *d.ExitCode != 0 || d.Signal != "" {
			t.Fatalf("exited %+v", d)
		}
		if ws := exitStatus(t, p); ws.ExitStatus() != 0 || ws.Signaled() {
			t.Fatalf("plugin exit status %v", ws)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		var text []string
		for _, l := range h.lines {
			text = append(text, l.Stream+":"+l.Text)
		}
		joined := strings.Join(text, "|")
		if !strings.Contains(joined, "stdout:hi") || !strings.Contains(joined, "stderr:oops") || !strings.Contains(joined, "stdout:hello") {
			t.Fatalf("lines %v", text)
		}
	})
	t.Run("Exit3", func(t *testing.T) {
		p, h := startExec(t, `{"command": ["sh", "-c", "exit 3"]}`)
		d := exited(t, h)
		if d.ExitCode == nil || *d.ExitCode != 3 {
			t.Fatalf("exited %+v", d)
		}
		if ws := exitStatus(t, p); ws.ExitStatus() != 3 {
			t.Fatalf("plugin exit status %v", ws)
		}
	})
	t.Run("KilledBySignal", func(t *testing.T) {
		p, h := startExec(t, `{"command": ["sh", "-c", "kill -KILL $$"]}`)
		d := exited(t, h)
		if d.ExitCode != nil || d.Signal != "SIGKILL" {
			t.Fatalf("exited %+v", d)
		}
		if ws := exitStatus(t, p); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("plugin exit status %v", ws)
		}
	})
	t.Run("OutputCap", func(t *testing.T) {
		// Head and tail are kept; what fell between is one marker line whose
		// batch says how many.
		_, h := startExec(t, `{"command": ["sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done"], "maxOutputLines": 5}`)
		d := exited(t, h)
		h.mu.Lock()
		defer h.mu.Unlock()
		var text []string
		for _, l := range h.lines {
			text = append(text, l.Text)
		}
		want := []string{"line0", "line1", "line2", "[ipa: 45 lines dropped]", "line48", "line49"}
		if !slices.Equal(text, want) || !slices.Equal(h.drops, []int{45}) || d.DroppedLines != 45 || d.DroppedBetween != 45 || d.OutputLines != 5 {
			t.Fatalf("lines %q drops %v exited %+v; want %q, drops [45]", text, h.drops, d, want)
		}
	})
	t.Run("Stop", func(t *testing.T) {
		p, h := startExec(t, `{"command": ["sh", "-c", "sleep 60"]}`)
		r, err := p.rt.Stop(context.Background(), podapi.StopRequest{Deadline: time.Now().Add(3 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		d := exited(t, h)
		if !d.Stopped || d.Signal != "SIGTERM" || r.Forced {
			t.Fatalf("exited %+v forced %v", d, r.Forced)
		}
		if ws := exitStatus(t, p); ws.ExitStatus() != 0 || ws.Signaled() {
			t.Fatalf("a requested stop should exit 0, got %v", ws)
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		p := launch(t, "exec")
		_, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"command": []}`), Host: &host{}})
		if ipa.ErrorCode(err) != ipa.EINVALID {
			t.Fatalf("want EINVALID, got %v", err)
		}
	})
}

func TestKilledPluginIsUnavailable(t *testing.T) {
	p := launch(t, "demo")
	if _, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", Host: &host{phase: ipa.PhaseSpecClarification}}); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the plugin to die", p.client.Exited)
	began := time.Now()
	_, err := p.rt.State(context.Background(), podapi.StateRequest{})
	if !errors.Is(err, podapi.ErrRuntimeUnavailable) {
		t.Fatalf("want ErrRuntimeUnavailable, got %v", err)
	}
	if time.Since(began) > time.Second {
		t.Fatalf("took %v", time.Since(began))
	}
}

// startDetached launches the demo plugin by hand, as a host would, reads its
// handshake line, then closes its stdout and stderr: the host is gone.
// The returned channel yields once the process has ended (it is reaped at
// once, as a reattaching host, not being its parent, would see it).
func startDetached(t *testing.T, env ...string) (*osexec.Cmd, podapi.ReattachInfo, <-chan struct{}) {
	t.Helper()
	return startDetachedRuntime(t, "demo", env...)
}

// startDetachedRuntime is startDetached for the built-in runtime name.
func startDetachedRuntime(t *testing.T, name string, env ...string) (*osexec.Cmd, podapi.ReattachInfo, <-chan struct{}) {
	t.Helper()
	cmd := osexec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...),
		"IPA_TEST_PLUGIN="+name,
		podapi.Handshake.MagicCookieKey+"="+podapi.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 5 || parts[4] != "grpc" {
		t.Fatalf("handshake %q", line)
	}
	_ = stdout.Close()
	_ = stderr.Close()
	ended := make(chan struct{})
	go func() { _ = cmd.Wait(); close(ended) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-ended })
	return cmd, podapi.ReattachInfo{Pid: cmd.Process.Pid, Network: parts[2], Address: parts[3], ProtocolVersion: 1}, ended
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestPluginSurvivesHostStdioClosed(t *testing.T) {
	cmd, info, _ := startDetached(t)
	cfg, err := podapi.NewReattachConfig(info, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	client := plugin.NewClient(cfg)
	t.Cleanup(client.Kill)
	rt, err := podapi.Dispense(client)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{phase: ipa.PhaseSpecClarification}
	if _, err := rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"stepMs": 20}`), Host: h}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "REVIEW", func() bool { return h.getPhase() == ipa.PhaseReview })
	if !alive(cmd.Process.Pid) {
		t.Fatal("plugin died")
	}
	if _, err := rt.State(context.Background(), podapi.StateRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestReattachAndOrphanExit(t *testing.T) {
	// The grace is generous so that the reattach below comes well within it
	// on a loaded machine.
	cmd, info, ended := startDetached(t, podapi.EnvOrphanGrace+"=2s")

	// First host: start the work, then vanish without shutting the plugin down.
	cfg, _ := podapi.NewReattachConfig(info, hclog.NewNullLogger())
	first := plugin.NewClient(cfg)
	rt, err := podapi.Dispense(first)
	if err != nil {
		t.Fatal(err)
	}
	h1 := &host{phase: ipa.PhaseSpecClarification}
	if _, err := rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"stepMs": 300}`), Host: h1}); err != nil {
		t.Fatal(err)
	}
	proto, _ := first.Client()
	_ = proto.(*plugin.GRPCClient).Conn.Close() // the host crashed

	// Second host reattaches within the grace period; the work goes on into it.
	time.Sleep(200 * time.Millisecond)
	cfg, _ = podapi.NewReattachConfig(info, hclog.NewNullLogger())
	second := plugin.NewClient(cfg)
	rt2, err := podapi.Dispense(second)
	if err != nil {
		t.Fatal(err)
	}
	h2 := &host{phase: ipa.PhaseSpecClarification}
	if r, err := rt2.Attach(context.Background(), podapi.AttachRequest{TaskID: "t1", Host: h2}); err != nil || r.TaskID != "t1" {
		t.Fatalf("Attach: %+v %v", r, err)
	}
	eventually(t, 5*time.Second, "steps reaching the new host", func() bool { return len(h2.eventsOf("runtime.demo.step")) > 0 })
	// Longer than the grace: a connected host that keeps calling (a real
	// host polls State) keeps it alive; a silent one would not (the plugin
	// would take it for paused).
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, err := rt2.State(context.Background(), podapi.StateRequest{}); err != nil {
			t.Fatalf("State while the host is connected: %v", err)
		}
	}
	if !alive(cmd.Process.Pid) {
		t.Fatal("plugin exited while a host was connected")
	}

	// The second host vanishes too, and nobody comes back: the plugin exits.
	proto2, _ := second.Client()
	_ = proto2.(*plugin.GRPCClient).Conn.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("orphaned plugin did not exit")
	}
}
