// Package podtest is the conformance kit for ipa pod runtimes: it launches a
// runtime plugin as a real process, the way the server does, and drives it
// through the host's lifecycle: handshake and protocol version,
// self-description, start, live state, host calls (output, events, phase
// requests), a second start refused, a host restart followed by Attach, stop
// without and with a deadline, and kill -9. Use it from a runtime's own tests:
//
//	func TestConformance(t *testing.T) {
//		podtest.Run(t, podtest.Config{Command: []string{"./hello"}})
//	}
//
// `ipa plugin check PATH` runs the same checks against any executable, in
// any language.
package podtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/ipa-dev/ipa/internal/configschema"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// Config says which plugin to check and how.
type Config struct {
	// Command is the plugin executable and its arguments.
	Command []string
	// Env is added to the plugin's environment (KEY=VALUE).
	Env []string
	// Title is the title of the task the runtime is started for; default
	// "podtest".
	Title string
	// RuntimeConfig is the config of that task; nil: the runtime's own
	// example config (or {}). It must keep the work running until it is
	// stopped.
	RuntimeConfig json.RawMessage
	// Timeout bounds each step; default 30s.
	Timeout time.Duration
	// Expect, when set, checks what the runtime did once started (the
	// "expect" step), e.g. waiting on the recording for an output line.
	Expect func(ctx context.Context, rec *Recording, st pod.StateResponse) error
	// Log receives the plugin's stderr and the kit's notes; nil: discarded.
	Log io.Writer
}

// Step names, in the order they run.
const (
	StepLaunch      = "launch"
	StepDescribe    = "describe"
	StepStart       = "start"
	StepState       = "state"
	StepHostCalls   = "host-calls"
	StepExpect      = "expect"
	StepStartTwice  = "start-twice"
	StepHostRestart = "attach-after-host-restart"
	StepStop        = "stop"
	StepStopDead    = "stop-with-deadline"
	StepKill        = "kill-9"
)

// Result is the outcome of one step.
type Result struct {
	Step    string
	Passed  bool
	Skipped bool
	Detail  string // what was seen (passed) or what went wrong (failed)
}

// Report is the outcome of a check.
type Report struct {
	Results         []Result
	ProtocolVersion int
	Description     string
	Recording       Snapshot // of the main run
}

// Passed reports whether no step failed.
func (r Report) Passed() bool {
	for _, s := range r.Results {
		if !s.Passed && !s.Skipped {
			return false
		}
	}
	return len(r.Results) > 0
}

// Failed returns the names of the steps that failed.
func (r Report) Failed() []string {
	var out []string
	for _, s := range r.Results {
		if !s.Passed && !s.Skipped {
			out = append(out, s.Step)
		}
	}
	return out
}

// String is a readable report, one line per step.
func (r Report) String() string {
	var b strings.Builder
	for _, s := range r.Results {
		mark := "PASS"
		switch {
		case s.Skipped:
			mark = "SKIP"
		case !s.Passed:
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s  %-26s %s\n", mark, s.Step, s.Detail)
	}
	if r.Passed() {
		fmt.Fprintf(&b, "ok: the runtime passed every check (protocol version %d)\n", r.ProtocolVersion)
	} else {
		fmt.Fprintf(&b, "FAILED: %s\n", strings.Join(r.Failed(), ", "))
	}
	return b.String()
}

// Run runs Check and fails t, naming every failed step, unless it passed.
func Run(t testing.TB, cfg Config) Report {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = testWriter{t}
	}
	rep := Check(context.Background(), cfg)
	for _, s := range rep.Results {
		if !s.Passed && !s.Skipped {
			t.Errorf("podtest: step %s failed: %s", s.Step, s.Detail)
		}
	}
	if t.Failed() {
		t.Logf("podtest report:\n%s", rep)
	}
	return rep
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checker holds one check's state.
type checker struct {
	cfg     Config
	rep     Report
	log     hclog.Logger
	cfgJSON json.RawMessage
}

// Check runs every step against the plugin and reports. Steps that depend
// on a failed one are reported as failed too, saying so.
func Check(ctx context.Context, cfg Config) Report {
	if cfg.Title == "" {
		cfg.Title = "podtest"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	c := &checker{cfg: cfg, log: hclog.New(&hclog.LoggerOptions{Name: "podtest", Level: hclog.Error, Output: cfg.Log})}
	if len(cfg.Command) == 0 {
		c.fail(StepLaunch, "no command to run")
		return c.rep
	}
	c.main(ctx)
	c.stopWithDeadline(ctx)
	c.kill9(ctx)
	return c.rep
}

func (c *checker) pass(step, format string, args ...any) {
	c.rep.Results = append(c.rep.Results, Result{Step: step, Passed: true, Detail: fmt.Sprintf(format, args...)})
}

func (c *checker) fail(step, format string, args ...any) {
	// One line per step: go-plugin's errors may span several.
	detail := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	c.rep.Results = append(c.rep.Results, Result{Step: step, Detail: detail})
}

func (c *checker) skip(step, format string, args ...any) {
	c.rep.Results = append(c.rep.Results, Result{Step: step, Skipped: true, Detail: fmt.Sprintf(format, args...)})
}

// conn is one plugin process and the kit's client to it.
type conn struct {
	p      *proc
	client *plugin.Client
	rt     podapi.Runtime
}

func (c *checker) launch(ctx context.Context) (*conn, error) {
	cmd := exec.Command(c.cfg.Command[0], c.cfg.Command[1:]...)
	p := newProc(cmd)
	pc := podapi.NewClientConfig(cmd, c.log)
	pc.Cmd = nil
	pc.RunnerFunc = func(_ hclog.Logger, gp *exec.Cmd, _ string) (runner.Runner, error) {
		// go-plugin's environment (ours and its handshake variables), then
		// the config's, which win.
		cmd.Env = append(append([]string(nil), gp.Env...), c.cfg.Env...)
		return p, nil
	}
	pc.StartTimeout = c.cfg.Timeout
	pc.Stderr = c.cfg.Log
	pc.SyncStderr = c.cfg.Log
	pc.SyncStdout = c.cfg.Log
	client := plugin.NewClient(pc)
	type res struct {
		rt  podapi.Runtime
		err error
	}
	done := make(chan res, 1)
	go func() {
		rt, err := podapi.Dispense(client)
		done <- res{rt, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			client.Kill()
			if p.cmd.Process != nil {
				p.kill()
			}
			return nil, r.err
		}
		return &conn{p: p, client: client, rt: r.rt}, nil
	case <-ctx.Done():
		client.Kill()
		<-done
		return nil, ctx.Err()
	}
}

// close ends a connection's process whatever state it is in.
func (cn *conn) close() {
	cn.client.Kill()
	cn.p.kill()
	_, _ = cn.p.waitExit(10 * time.Second)
}

func (c *checker) stepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

func (c *checker) newTask(ctx context.Context, cn *conn, id string, h *host) error {
	sctx, cancel := c.stepCtx(ctx)
	defer cancel()
	_, err := cn.rt.Start(sctx, podapi.StartRequest{
		TaskID:        id,
		Title:         c.cfg.Title,
		Description:   "started by the ipa conformance kit",
		RuntimeConfig: c.cfgJSON,
		Attempt:       1,
		WorkDir:       "",
		Host:          h,
	})
	return err
}

// main runs the steps on one process, from launch to a stop without deadline.
func (c *checker) main(ctx context.Context) {
	cn, err := c.launch(ctx)
	if err != nil {
		c.fail(StepLaunch, "the plugin did not complete the go-plugin handshake: %v", err)
		return
	}
	defer cn.close()
	v := podapi.NegotiatedVersion(cn.rt)
	c.rep.ProtocolVersion = v
	if v < podapi.MinProtocolVersion || v > podapi.ProtocolVersion {
		c.fail(StepLaunch, "negotiated protocol version %d; the host speaks %d to %d", v, podapi.MinProtocolVersion, podapi.ProtocolVersion)
		return
	}
	c.pass(StepLaunch, "pid %d, protocol version %d", cn.p.pid(), v)

	c.describe(ctx, cn, v)

	rec := newRecording()
	h := &host{rec: rec}
	const task = "podtest-task-1"
	if err := c.newTask(ctx, cn, task, h); err != nil {
		c.fail(StepStart, "Start answered %v", err)
		return
	}
	c.pass(StepStart, "Start answered")

	st, ok := c.state(ctx, cn, task)
	if !ok {
		return
	}

	c.hostCalls(ctx, rec)
	if c.cfg.Expect != nil {
		ectx, cancel := c.stepCtx(ctx)
		err := c.cfg.Expect(ectx, rec, pod.StateResponse{
			TaskID: st.TaskID, Phase: st.Phase, WantedPhase: st.WantedPhase, Progress: st.Progress,
			Live: st.Live, Message: st.Message, Running: st.Running,
		})
		cancel()
		if err != nil {
			c.fail(StepExpect, "%v", err)
		} else {
			c.pass(StepExpect, "the runtime did what the test expects")
		}
	}
	defer func() { c.rep.Recording = rec.Snapshot() }()

	err = c.newTask(ctx, cn, "podtest-task-2", &host{rec: newRecording()})
	if ipa.ErrorCode(err) == ipa.ECONFLICT {
		c.pass(StepStartTwice, "a second Start is refused with CONFLICT")
	} else {
		c.fail(StepStartTwice, "a second Start must answer CONFLICT (the plugin runs one task); it answered %v", errOrOK(err))
	}

	cn, ok = c.hostRestart(ctx, cn, task, h)
	if !ok {
		return
	}
	defer cn.close()

	// Stop without a deadline: the work ends, then the host shuts the
	// plugin down and it must exit 0 by itself (the server records
	// pod_stopped, not a crash).
	sctx, cancel := c.stepCtx(ctx)
	resp, err := cn.rt.Stop(sctx, podapi.StopRequest{Reason: "podtest: stop"})
	cancel()
	if err != nil {
		c.fail(StepStop, "Stop answered %v", err)
		return
	}
	sctx, cancel = c.stepCtx(ctx)
	after, err := cn.rt.State(sctx, podapi.StateRequest{})
	cancel()
	if err == nil && after.Running {
		c.fail(StepStop, "State still reports running after Stop answered")
		return
	}
	cn.client.Kill()
	ex, ok := cn.p.waitExit(c.cfg.Timeout)
	switch {
	case !ok:
		c.fail(StepStop, "the process did not exit within %s after the host shut it down", c.cfg.Timeout)
	case cn.p.wasKilled():
		c.fail(StepStop, "the process did not exit within go-plugin's 2 s after the host shut it down and was killed (the server would record a crash)")
	case ex.Signal != 0 || ex.Code != 0:
		c.fail(StepStop, "after Stop and shutdown the process ended with %s; it must exit 0 (the server records anything else as a crash)", ex)
	default:
		c.pass(StepStop, "Stop answered (forced=%v), the process exited 0 after shutdown", resp.Forced)
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "success"
	}
	return err.Error()
}

func (c *checker) describe(ctx context.Context, cn *conn, v int) {
	if v < 2 {
		c.skip(StepDescribe, "protocol version %d has no self-description (the server shows a generic description)", v)
		c.cfgJSON = c.cfg.RuntimeConfig
		return
	}
	dctx, cancel := c.stepCtx(ctx)
	d, err := podapi.Describe(dctx, cn.rt)
	cancel()
	c.cfgJSON = c.cfg.RuntimeConfig
	if c.cfgJSON == nil && len(d.ExampleConfig) > 0 {
		c.cfgJSON = d.ExampleConfig
	}
	if err != nil {
		c.fail(StepDescribe, "Describe answered %v", err)
		return
	}
	c.rep.Description = d.Description
	var problems []string
	if strings.TrimSpace(d.Description) == "" {
		problems = append(problems, "the description is empty")
	}
	var schema *configschema.Schema
	if len(d.ConfigSchema) > 0 {
		if schema, err = configschema.Compile(d.ConfigSchema); err != nil {
			problems = append(problems, fmt.Sprintf("configSchema is not a usable JSON Schema: %v", err))
		}
	}
	if len(d.ExampleConfig) > 0 {
		var obj map[string]any
		if json.Unmarshal(d.ExampleConfig, &obj) != nil {
			problems = append(problems, "exampleConfig is not a JSON object")
		} else if schema != nil {
			if err := schema.Validate(d.ExampleConfig); err != nil {
				problems = append(problems, fmt.Sprintf("exampleConfig does not match configSchema: %v", err))
			}
		}
	}
	if schema != nil && len(c.cfgJSON) > 0 {
		if err := schema.Validate(c.cfgJSON); err != nil {
			problems = append(problems, fmt.Sprintf("the config under test does not match configSchema: %v", err))
		}
	}
	if len(problems) > 0 {
		c.fail(StepDescribe, "%s", strings.Join(problems, "; "))
		return
	}
	c.pass(StepDescribe, "%q (config schema: %v, example: %v)", d.Description, len(d.ConfigSchema) > 0, len(d.ExampleConfig) > 0)
}

// state waits until the runtime reports the task running, with a valid
// live state.
func (c *checker) state(ctx context.Context, cn *conn, task string) (podapi.StateResponse, bool) {
	sctx, cancel := c.stepCtx(ctx)
	defer cancel()
	var last podapi.StateResponse
	var lastErr error
	for {
		st, err := cn.rt.State(sctx, podapi.StateRequest{})
		last, lastErr = st, err
		if err == nil && st.Running && st.TaskID == task {
			break
		}
		select {
		case <-sctx.Done():
			if lastErr != nil {
				c.fail(StepState, "State answered %v", lastErr)
			} else {
				c.fail(StepState, "State must report taskId %q and running; it reports taskId %q, running %v", task, last.TaskID, last.Running)
			}
			return last, false
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(last.Live) > 0 {
		var obj map[string]any
		if json.Unmarshal(last.Live, &obj) != nil {
			c.fail(StepState, "live state must be a JSON object; got %s", last.Live)
			return last, false
		}
	}
	if last.Progress < 0 || last.Progress > 1 {
		c.fail(StepState, "progress must be between 0 and 1; got %v", last.Progress)
		return last, false
	}
	c.pass(StepState, "running task %s, live %s", last.TaskID, orNone(last.Live))
	return last, true
}

func orNone(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// hostCalls checks what the runtime sent the host so far: a short quiet
// period lets a runtime that greets on start do so.
func (c *checker) hostCalls(ctx context.Context, rec *Recording) {
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	rec.Wait(wctx, func(s Snapshot) bool { return len(s.Refused) > 0 })
	cancel()
	s := rec.Snapshot()
	if len(s.Refused) > 0 {
		c.fail(StepHostCalls, "the host refused: %s", strings.Join(s.Refused, "; "))
		return
	}
	c.pass(StepHostCalls, "%d output lines, %d events, %d phase requests, phase now %s", len(s.Output), len(s.Events), len(s.Phases), s.Phase)
}

// hostRestart does what a server restart does to a plugin: the host's
// connection drops without a shutdown, a new host reattaches from the
// persisted ReattachInfo and calls Attach; the work goes on.
func (c *checker) hostRestart(ctx context.Context, cn *conn, task string, h *host) (*conn, bool) {
	info, ok := podapi.Reattach(cn.client)
	if !ok {
		c.fail(StepHostRestart, "no reattach info for the plugin")
		return cn, false
	}
	if info.Pid == 0 { // our own runner: go-plugin does not know the pid
		info.Pid = cn.p.pid()
	}
	// Drop the first host's connection as a dying host would: no Shutdown.
	if proto, err := cn.client.Client(); err == nil {
		if g, ok := proto.(*plugin.GRPCClient); ok {
			_ = g.Conn.Close()
		}
	}
	rc, err := podapi.NewReattachConfig(info, c.log)
	if err != nil {
		c.fail(StepHostRestart, "reattach config: %v", err)
		return cn, false
	}
	p := cn.p
	rc.Reattach.ReattachFunc = func() (runner.AttachedRunner, error) { return p, nil }
	client := plugin.NewClient(rc)
	next := &conn{p: p, client: client}
	rt, err := podapi.Dispense(client)
	if err != nil {
		c.fail(StepHostRestart, "a new host could not reconnect to the running plugin: %v", err)
		return next, false
	}
	next.rt = rt
	sctx, cancel := c.stepCtx(ctx)
	defer cancel()
	if _, err := rt.Attach(sctx, podapi.AttachRequest{TaskID: "podtest-other-task", Host: h}); ipa.ErrorCode(err) != ipa.ECONFLICT {
		c.fail(StepHostRestart, "Attach naming another task must answer CONFLICT; it answered %v", errOrOK(err))
		return next, false
	}
	resp, err := rt.Attach(sctx, podapi.AttachRequest{TaskID: task, Host: h})
	if err != nil {
		c.fail(StepHostRestart, "Attach answered %v", err)
		return next, false
	}
	if resp.TaskID != task {
		c.fail(StepHostRestart, "Attach must answer the task it runs, %q; it answered %q", task, resp.TaskID)
		return next, false
	}
	st, err := rt.State(sctx, podapi.StateRequest{})
	if err != nil || !st.Running || st.TaskID != task {
		c.fail(StepHostRestart, "after Attach, State must report task %q running; got %+v, %v", task, st, err)
		return next, false
	}
	c.pass(StepHostRestart, "the work went on; Attach answered task %s", resp.TaskID)
	return next, true
}

// stopWithDeadline starts a second process and stops it with a deadline:
// Stop must answer by the deadline (the host waits 2 s more) and the process
// must exit 0 after shutdown.
func (c *checker) stopWithDeadline(ctx context.Context) {
	if c.rep.ProtocolVersion == 0 {
		c.skip(StepStopDead, "not run: the plugin did not launch")
		return
	}
	cn, err := c.launch(ctx)
	if err != nil {
		c.fail(StepStopDead, "launch: %v", err)
		return
	}
	defer cn.close()
	if err := c.newTask(ctx, cn, "podtest-task-3", &host{rec: newRecording()}); err != nil {
		c.fail(StepStopDead, "Start answered %v", err)
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	resp, err := cn.rt.Stop(ctx, podapi.StopRequest{Deadline: deadline, Reason: "podtest: stop with a deadline"})
	if err != nil {
		c.fail(StepStopDead, "Stop with a deadline 3 s away answered %v (the host gives up 2 s past the deadline)", err)
		return
	}
	cn.client.Kill()
	ex, ok := cn.p.waitExit(c.cfg.Timeout)
	switch {
	case !ok || cn.p.wasKilled():
		c.fail(StepStopDead, "the process did not exit by itself after the host shut it down")
	case ex.Signal != 0 || ex.Code != 0:
		c.fail(StepStopDead, "after Stop and shutdown the process ended with %s; it must exit 0", ex)
	default:
		c.pass(StepStopDead, "Stop answered by the deadline (forced=%v); exit 0", resp.Forced)
	}
}

// kill9 starts a third process and kills it with SIGKILL: the host must see
// the runtime unavailable at once and the exit as a kill (the server records
// pod_crashed with signal SIGKILL and restarts by policy).
func (c *checker) kill9(ctx context.Context) {
	if c.rep.ProtocolVersion == 0 {
		c.skip(StepKill, "not run: the plugin did not launch")
		return
	}
	cn, err := c.launch(ctx)
	if err != nil {
		c.fail(StepKill, "launch: %v", err)
		return
	}
	defer cn.close()
	if err := c.newTask(ctx, cn, "podtest-task-4", &host{rec: newRecording()}); err != nil {
		c.fail(StepKill, "Start answered %v", err)
		return
	}
	_ = syscall.Kill(cn.p.pid(), syscall.SIGKILL)
	ex, ok := cn.p.waitExit(c.cfg.Timeout)
	if !ok {
		c.fail(StepKill, "the process did not die of SIGKILL")
		return
	}
	sctx, cancel := c.stepCtx(ctx)
	_, err = cn.rt.State(sctx, podapi.StateRequest{})
	cancel()
	if !errors.Is(err, podapi.ErrRuntimeUnavailable) {
		c.fail(StepKill, "after kill -9 the host must see the runtime unavailable; State answered %v", errOrOK(err))
		return
	}
	if ex.Signal != syscall.SIGKILL {
		c.fail(StepKill, "the process ended with %s, not by SIGKILL", ex)
		return
	}
	c.pass(StepKill, "the host saw %s and the runtime unavailable: the server records pod_crashed (signal SIGKILL)", ex)
}
