// Package exec is the built-in "exec" runtime: it runs a configured command
// for its task in the task's working directory, streams the command's
// stdout/stderr lines to the host (pod_output events, batched and capped),
// reports how the command ended as a runtime.exec.exited event, and then
// exits the plugin process with the command's own status (exit code, or the
// signal that killed it) so the supervisor sees the real outcome. When the
// host asked for the stop (Stop), the plugin exits 0 instead: the pod was
// stopped, it did not crash.
//
// Runtime config: {"command": ["sh", "-c", "echo hi"], "env": {"K": "V"},
// "timeoutMs": 60000, "maxOutputLines": 10000, "limits": {"memoryMB": 512,
// "cpuSeconds": 60, "openFiles": 256, "processes": 64}}; see Config and
// Limits. Past maxOutputLines the head and the tail of the output are kept
// (see output).
//
// Processes: the command runs in the plugin's process group and dies with
// the plugin (group.go). When the plugin is orphaned (no host for the orphan
// grace) it stops the command like Stop and exits.
//
// How the command ended reaches the supervisor as the plugin's own exit
// status, plus an exit report (pod.ExitStatus.Reason) when the status
// cannot tell it: "timeout" after timeoutMs, "limit: …" when a limit was hit.
//
// Environment: the command gets a clean one, never the plugin's (see
// env.go): PATH (DefaultPath), HOME (the working
// directory), LANG (DefaultLang), then runtimeConfig.env, an object of
// strings that may override those three. Names are [A-Za-z_][A-Za-z0-9_]*
// of at most MaxEnvNameLen bytes, values have no NUL byte, at most
// MaxEnvVars variables and MaxEnvBytes in all. The program (command[0]) is
// looked up in that PATH.
//
// Working directory: StartRequest.WorkDir, set by the host (by convention
// <dataDir>/tasks/<taskID>), created when missing; when the host leaves it
// empty, <os.TempDir()>/ipa-exec/<taskID>.
package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podsock"
	"github.com/ipa-dev/ipa/internal/sandbox"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// Description is shown in the runtimes query.
const Description = "Runs a command for the task in its working directory ({\"command\": [\"sh\", \"-c\", \"echo hi\"]}), streams its output and reports its exit status."

// EnvArtifacts names the command's artifacts directory; see ArtifactsDir.
const EnvArtifacts = "IPA_ARTIFACTS"

// ArtifactsDir is the directory, in the workspace, whose files become the
// task's artifacts when the command ends (internal/artifact.StagingDir).
const ArtifactsDir = ".ipa-artifacts"

// EventExited is the type of the event that reports how the command ended.
const EventExited = "runtime.exec.exited"

// DefaultStopTimeout is how long Stop waits after SIGTERM before SIGKILL when
// the request names no deadline.
const DefaultStopTimeout = 10 * time.Second

// timeoutExitCode is the plugin's exit code when the command ran out of time
// but exited 0 on the SIGTERM (as timeout(1) does).
const timeoutExitCode = 124

// reportWait bounds how long Stop waits for the command's end to be reported
// once it has ended.
const reportWait = 3 * time.Second

// readerGrace is how long the output readers may run on after the command
// exited (a background child may still hold the pipes) before the process
// group is killed.
const readerGrace = 2 * time.Second

// ExitedData is the data of runtime.exec.exited.
type ExitedData struct {
	ExitCode       *int   `json:"exitCode"` // nil when killed by a signal
	Signal         string `json:"signal,omitempty"`
	Stopped        bool   `json:"stopped"`  // the host asked for the stop
	TimedOut       bool   `json:"timedOut"` // timeoutMs passed
	Error          string `json:"error,omitempty"`
	DurationMs     int64  `json:"durationMs"`
	OutputLines    int    `json:"outputLines"`
	DroppedLines   int    `json:"droppedLines"`   // in all
	DroppedBetween int    `json:"droppedBetween"` // of them, between the head and the tail kept
	// Reason is the crash reason the plugin reports for this end ("timeout",
	// "limit: cpu"…), empty when the exit status tells it all.
	Reason string `json:"reason,omitempty"`
}

// Serve runs the exec runtime as a plugin process; it never returns.
func Serve() { pod.Serve(New()) }

// Runtime is the exec runtime. Use New.
type Runtime struct {
	mu        sync.Mutex
	taskID    string
	cfg       Config
	workDir   string
	cmd       *osexec.Cmd
	pgid      int           // the command's process group
	shared    bool          // the group is the plugin's own (see group.go)
	sandboxed bool          // the command runs under bwrap
	cmdDone   chan struct{} // closed once the command ended and its output is read
	out       *output
	started   time.Time
	stopped   bool // Stop was called
	timedOut  bool
	wsFull    bool // the workspace outgrew its limit
	exited    *ExitedData
	done      chan struct{} // closed once the end is reported
	finished  chan pod.ExitStatus
	termOnce  sync.Once
	forceKill chan struct{}
	sock      *podsock.Server // the command's conversation socket
}

// New returns an exec runtime waiting for Start.
func New() *Runtime {
	return &Runtime{finished: make(chan pod.ExitStatus, 1), forceKill: make(chan struct{})}
}

var (
	_ pod.Runtime  = (*Runtime)(nil)
	_ pod.Finisher = (*Runtime)(nil)
)

// Finished yields once the command has ended and its end was reported.
func (r *Runtime) Finished() <-chan pod.ExitStatus { return r.finished }

// Start validates the config, creates the working directory and starts the
// command in its own process group. Returns EINVALID for a bad config,
// ECONFLICT when already started, and EUNAVAILABLE/RUNTIME_FAILED when the
// command cannot be started (e.g. not found).
func (r *Runtime) Start(_ context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	cfg, err := ParseConfig(req.RuntimeConfig)
	if err != nil {
		return pod.StartResponse{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return pod.StartResponse{}, ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidArgument, "The exec runtime is already started.")
	}
	dir := req.WorkDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ipa-exec", req.TaskID)
	}
	// Absolute, as HOME must be (the default --data-dir is relative; the
	// plugin runs in the server's directory, so it resolves the same).
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create the working directory: %v.", err)
	}

	// The command leaves its artifacts in $IPA_ARTIFACTS, a directory of
	// its workspace (so writable in the sandbox too); the host collects
	// them when the command's end is reported.
	artifacts := filepath.Join(dir, ArtifactsDir)
	if err := os.MkdirAll(artifacts, 0o750); err != nil {
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create the artifacts directory: %v.", err)
	}
	// Never nil, so os/exec does not fall back to the plugin's environment.
	env := append(commandEnv(cfg.Env, dir), EnvArtifacts+"="+artifacts)
	// The conversation socket: `"$IPA_BIN" pod ask|messages` reach the
	// host through it. Served for the life of the command.
	var sock *podsock.Server
	if conv, ok := req.Host.(pod.Conversing); ok {
		if sock, err = podsock.Listen(conv, dir); err != nil {
			return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot serve the pod socket: %v.", err)
		}
		env = append(env, podsock.Env+"="+sock.Path())
	}
	started := false
	defer func() {
		if !started && sock != nil {
			sock.Close()
		}
	}()
	var readOnly []string // what the sandbox must let the command read
	if bin, err := os.Executable(); err == nil {
		env = append(env, podsock.BinEnv+"="+bin)
		readOnly = append(readOnly, bin)
	}
	prog, err := lookPath(cfg.Command[0], commandPath(cfg.Env))
	if err != nil {
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot start the command: %v.", err)
	}
	argv := append([]string{prog}, cfg.Command[1:]...)
	var gate *sandboxGate
	sandboxed := false
	if bwrap := os.Getenv(sandbox.EnvBwrap); bwrap != "" {
		// The server found a working bwrap: the command runs in its sandbox.
		// bwrap looks the program up in the same PATH (its environment is
		// the command's) and the same file system, so the command keeps
		// argv[0] as the task gave it.
		sc := cfg.Sandbox
		if sock != nil && !within(dir, filepath.Dir(sock.Path())) {
			// A workspace path too long for a socket puts the socket in
			// the plugin's temporary directory, which the sandbox's
			// private /tmp would hide: bind its directory in.
			sc.Writable = append(slices.Clone(sc.Writable), filepath.Dir(sock.Path()))
		}
		if argv, err = sandboxArgv(bwrap, dir, sc, cfg.Command, cfg.Limits.any(), readOnly...); err != nil {
			return pod.StartResponse{}, err
		}
		sandboxed = true
		if cfg.Limits.any() {
			if gate, err = newSandboxGate(); err != nil {
				return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create pipes: %v.", err)
			}
			defer gate.close()
		}
	}
	cmd := osexec.Command(argv[0], argv[1:]...)
	var gateW *os.File
	switch {
	case gate != nil:
		cmd.ExtraFiles = gate.files()
	case sandboxed:
	case !cfg.Limits.any():
		cmd.Args[0] = cfg.Command[0] // argv[0] as the task gave it
	default:
		// The shim waits for its limits, then becomes the command.
		sh, err := osexec.LookPath("/bin/sh")
		if err != nil {
			return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Limits need /bin/sh: %v.", err)
		}
		cmd = osexec.Command(sh, append([]string{"-c", limitsGate, "ipa-exec-limits"}, argv...)...)
		var gateR *os.File
		if gateR, gateW, err = os.Pipe(); err != nil {
			return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create pipes: %v.", err)
		}
		cmd.ExtraFiles = []*os.File{gateR}
		defer gateR.Close()
		defer gateW.Close()
	}
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	shared := commandGroup(cmd.SysProcAttr)
	outR, outW, err := os.Pipe()
	if err != nil {
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create pipes: %v.", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close()
		_ = outW.Close()
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot create pipes: %v.", err)
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{outR, outW, errR, errW} {
			_ = f.Close()
		}
		return pod.StartResponse{}, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Cannot start %q: %v.", cfg.Command[0], err)
	}
	_ = outW.Close()
	_ = errW.Close()
	pgid := cmd.Process.Pid
	if shared {
		pgid = os.Getpid()
	}
	if gate != nil {
		if err := gate.apply(cfg.Limits); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			for _, f := range []*os.File{outR, errR} {
				_ = f.Close()
			}
			return pod.StartResponse{}, err
		}
	}
	if gateW != nil {
		if err := applyLimits(cmd.Process.Pid, cfg.Limits); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			for _, f := range []*os.File{outR, errR} {
				_ = f.Close()
			}
			return pod.StartResponse{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Cannot apply the limits: %v.", err)
		}
		_, _ = gateW.Write([]byte("go\n"))
	}

	started = true
	r.sock = sock
	r.taskID, r.cfg, r.workDir, r.cmd, r.sandboxed = req.TaskID, cfg, dir, cmd, sandboxed
	r.pgid, r.shared, r.cmdDone = pgid, shared, make(chan struct{})
	r.out = newOutput(req.Host, cfg.MaxOutputLines)
	r.started = time.Now()
	r.done = make(chan struct{})
	go r.wait(req.Host, outR, errR)
	if max := workspaceMax(); max > 0 {
		go r.watchWorkspace(dir, max, r.cmdDone)
	}
	if cfg.TimeoutMs > 0 {
		time.AfterFunc(time.Duration(cfg.TimeoutMs)*time.Millisecond, func() {
			r.mu.Lock()
			ended := r.exited != nil
			if !ended {
				r.timedOut = true
			}
			r.mu.Unlock()
			if !ended {
				r.terminate(time.Now().Add(DefaultStopTimeout))
			}
		})
	}
	return pod.StartResponse{}, nil
}

func (r *Runtime) read(f *os.File, stream string, wg *sync.WaitGroup) {
	defer wg.Done()
	br := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 || isPrefix {
			if len(line) < maxLineLen {
				line = append(line, chunk[:min(len(chunk), maxLineLen-len(line))]...)
			}
		}
		if err != nil {
			if len(line) > 0 {
				r.out.add(stream, string(line))
			}
			return
		}
		if !isPrefix {
			r.out.add(stream, string(line))
			line = line[:0]
		}
	}
}

// wait collects the output, waits for the command, reports its end and
// hands the exit status to Serve.
func (r *Runtime) wait(host pod.Host, outR, errR *os.File) {
	var readers sync.WaitGroup
	readers.Add(2)
	go r.read(outR, pod.Stdout, &readers)
	go r.read(errR, pod.Stderr, &readers)

	werr := r.cmd.Wait()
	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()
	select {
	case <-readersDone:
	case <-time.After(readerGrace):
		// Something the command spawned still holds the pipes.
		signalGroup(r.pgid, r.shared, syscall.SIGKILL, 0)
		_ = outR.Close()
		_ = errR.Close()
		<-readersDone
	}
	_ = outR.Close()
	_ = errR.Close()
	close(r.cmdDone)
	r.out.close()
	r.sock.Close()

	data := ExitedData{DurationMs: time.Since(r.started).Milliseconds()}
	data.OutputLines, data.DroppedLines, data.DroppedBetween = r.out.counts()
	status := pod.ExitStatus{}
	ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		data.Signal = unix.SignalName(ws.Signal())
		status.Signal = ws.Signal()
	case ok && r.sandboxed && sandbox.ExitSignal(ws.ExitStatus()) != 0:
		// bwrap reports a command killed by signal n as 128+n.
		sig := syscall.Signal(sandbox.ExitSignal(ws.ExitStatus()))
		data.Signal = unix.SignalName(sig)
		status.Signal = sig
	case ok:
		code := ws.ExitStatus()
		data.ExitCode = &code
		status.Code = code
	default:
		code := r.cmd.ProcessState.ExitCode()
		data.ExitCode = &code
		status.Code = code
	}
	if werr != nil {
		var ee *osexec.ExitError
		if !errors.As(werr, &ee) {
			data.Error = werr.Error()
		}
	}
	r.mu.Lock()
	data.Stopped, data.TimedOut = r.stopped, r.timedOut
	r.mu.Unlock()
	switch {
	case data.Stopped:
		status = pod.ExitStatus{} // a requested stop is a clean end
	case r.wsFullNow():
		status.Reason = ipa.CrashLimitWorkspace
		status.Message = "the workspace outgrew " + itoa64(workspaceMax()) + " bytes (the server's --workspace-max-bytes)"
		if status.Signal == 0 && status.Code == 0 {
			status.Code = 1
		}
	case data.TimedOut:
		status.Reason = ipa.CrashTimeout
		status.Message = "timeoutMs " + itoa(r.cfg.TimeoutMs) + " passed"
		if status.Signal == 0 && status.Code == 0 {
			status.Code = timeoutExitCode // a command that ends well when told to stop still ran out of time
		}
	case status.Signal != 0 || status.Code != 0:
		status.Reason, status.Message = limitReason(r.cfg.Limits, status, r.cmd.ProcessState, r.out.stderrTail())
	}
	data.Reason = status.Reason
	r.mu.Lock()
	r.exited = &data
	r.mu.Unlock()

	raw, _ := json.Marshal(data)
	reportEnd(host, raw)
	if r.shared {
		// The plugin exits next: nothing of the pod stays behind it.
		retireGuard(r.pgid)
	}
	close(r.done)
	r.finished <- status
}

// reportEnd appends runtime.exec.exited, waiting for a host while none is
// connected (Serve's orphan watch ends the wait if none ever comes back).
func reportEnd(host pod.Host, data []byte) {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := host.AppendEvent(ctx, pod.AppendEventRequest{Type: EventExited, Data: data})
		cancel()
		if err == nil || !errors.Is(err, pod.ErrHostUnavailable) {
			if err != nil {
				pod.Logger().Error("cannot report the command's end", "error", err)
			}
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// terminate sends SIGTERM to the command's process group and SIGKILL at
// deadline if it is still running; it returns once the command has ended
// (not waiting for its end to be reported: a host may be gone) and reports
// whether SIGKILL was needed.
func (r *Runtime) terminate(deadline time.Time) bool {
	r.mu.Lock()
	cmd, done := r.cmd, r.cmdDone
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return false
	}
	spare := 0
	if r.sandboxed && sandboxCommandStarted(r.pgid, cmd.Process.Pid) {
		// bwrap is spared (see signalGroup) once there is a command in the
		// sandbox to end cleanly. Before that (a stop during bwrap's set-up)
		// it gets the SIGTERM, and its death ends the sandbox: else the
		// command, started after the signal went out, would run on.
		spare = cmd.Process.Pid
	}
	r.termOnce.Do(func() { signalGroup(r.pgid, r.shared, syscall.SIGTERM, spare) })
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		signalGroup(r.pgid, r.shared, syscall.SIGKILL, 0)
		<-done
		return true
	}
}

// Attach needs nothing: the Host handle from Start follows the new host.
func (r *Runtime) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	return pod.AttachResponse{TaskID: req.TaskID}, nil
}

// State reports whether the command runs, and a live blob with its pid,
// working directory, output counts and, once ended, how it ended.
func (r *Runtime) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[string]any{"command": r.cfg.Command, "workDir": r.workDir, "sandboxed": r.sandboxed}
	resp := pod.StateResponse{TaskID: r.taskID}
	if r.cmd != nil && r.cmd.Process != nil {
		live["pid"] = r.cmd.Process.Pid
	}
	if r.out != nil {
		live["outputLines"], live["droppedLines"], _ = r.out.counts()
	}
	switch {
	case r.cmd == nil:
		resp.Message = "not started"
	case r.exited == nil:
		resp.Running = true
		resp.Message = "running " + r.cfg.Command[0]
	default:
		resp.Progress = 1
		live["exited"] = r.exited
		if r.exited.ExitCode != nil {
			resp.Message = "exited with code " + itoa(*r.exited.ExitCode)
		} else {
			resp.Message = "killed by " + r.exited.Signal
		}
	}
	resp.Live, _ = json.Marshal(live)
	return resp, nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Stop sends SIGTERM to the command's process group, SIGKILL once
// req.Deadline (default DefaultStopTimeout from now) has passed, and returns
// when the command's end has been reported. Forced says SIGKILL was needed.
func (r *Runtime) Stop(ctx context.Context, req pod.StopRequest) (pod.StopResponse, error) {
	r.mu.Lock()
	if r.cmd == nil {
		r.mu.Unlock()
		return pod.StopResponse{}, nil
	}
	if r.exited == nil {
		r.stopped = true
	}
	r.mu.Unlock()
	deadline := req.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultStopTimeout)
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d.Add(-100 * time.Millisecond)
	}
	forced := r.terminate(deadline)
	// The end is reported promptly while a host is connected; without one
	// (an orphan stopping its work) the report waits for a host and Stop
	// returns without it.
	t := time.NewTimer(reportWait)
	defer t.Stop()
	select {
	case <-r.done:
	case <-ctx.Done():
	case <-t.C:
	}
	return pod.StopResponse{Forced: forced}, nil
}

// Health reports unhealthy once the command has ended.
func (r *Runtime) Health(context.Context, pod.HealthRequest) (pod.HealthResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited != nil {
		return pod.HealthResponse{Healthy: false, Message: "command ended"}, nil
	}
	return pod.HealthResponse{Healthy: true}, nil
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
