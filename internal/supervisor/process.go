package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file owns the OS side of a pod: the plugin process itself. The parts
// that learn of an exit and prove a process's identity are Linux's own
// (process_linux.go): exit is learnt without polling from waitid on our own
// children and from a pidfd for a process we adopted after a restart, and
// identity is proven with the start time in /proc/<pid>/stat. Elsewhere
// (process_other.go) a child is waited on with cmd.Wait and a process is
// never adopted after a restart: its pod is treated as gone.

// exitInfo says how a plugin process ended.
type exitInfo struct {
	Code   *int   // exit status when it exited on its own
	Signal string // signal name ("SIGKILL") when a signal ended it
	Known  bool   // false for an adopted process: only our own children can be waited on
}

// proc is one plugin process, ours (child) or adopted (reattached).
type proc struct {
	pid        int
	startTicks uint64 // /proc/<pid>/stat field 22: with pid, the identity of the process
	groupLead  bool   // the process leads its own process group (we start it so)

	// stderrEOF is closed once the plugin's stderr pipe reached its end (so
	// every line it wrote, its exit report too, has been read); nil for an
	// adopted process, whose stderr we do not hold.
	stderrEOF  chan struct{}
	stderrOnce sync.Once
	// pipes are the read ends of the plugin's stdout and stderr (nil for
	// an adopted process). They reach their end only when every process
	// holding a write end has closed it, and one that is not the plugin may
	// (a process forked while they were open, a child that left the group):
	// closePipes ends them for the readers once the plugin is gone.
	pipes []*os.File

	mu     sync.Mutex
	reaped bool // after this the pid may be recycled: never signal it again
	pidfd  int  // adopted processes only; -1 otherwise
	done   chan struct{}
	exit   exitInfo
}

// exited is closed once the process has ended and every process of its group
// has been sent SIGKILL.
func (p *proc) exited() <-chan struct{} { return p.done }

// exitStatus returns how the process ended; valid once exited() is closed.
func (p *proc) exitStatus() exitInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// kill sends sig to the process and, when it leads its group, to the whole
// group, so a runtime's own children never outlive it. It never signals a pid
// that may have been recycled: once reaped it does nothing.
func (p *proc) kill(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	var err error
	if p.pidfd >= 0 {
		err = pidfdSendSignal(p.pidfd, sig)
	} else {
		err = syscall.Kill(p.pid, sig)
	}
	if p.groupLead && (p.pidfd < 0 || groupStillOurs(p.pid, p.startTicks)) {
		// Our child is not reaped, so its pid (the group id) is still ours;
		// an adopted leader may have been reaped by its new parent already.
		_ = syscall.Kill(-p.pid, sig)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// alive reports whether the process has not ended yet.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// childRunner starts a plugin as our child with its own pipes and process
// group, and waits on it itself, so the supervisor learns the exit status the
// instant the process ends (go-plugin's own runner hides it). It implements
// go-plugin's runner.Runner (see plugin.go).
type childRunner struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // read ends, handed to go-plugin
	p              *proc
	// started is p once the process exists, for a caller that gives up on
	// the handshake while go-plugin may still be starting it.
	started atomic.Pointer[proc]
	// spawned, if set, is told of the process the moment it exists, before
	// the handshake; its error fails the start (the caller kills the
	// process, which started holds).
	spawned func(*proc) error
}

// newChildRunner prepares cmd: own process group (so we can kill the whole
// tree, and so a terminal's Ctrl-C does not reach plugins meant to survive a
// server restart), no stdin, and pipes we own.
func newChildRunner(cmd *exec.Cmd) *childRunner {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdin = nil
	return &childRunner{cmd: cmd}
}

// start launches the process and the goroutine that waits for it. The
// goroutine ends when the process ends; nothing else can block it.
func (r *childRunner) start() error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	err = r.cmd.Start()
	// The child has its copies; ours must close or the readers never see EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	r.stdout, r.stderr = outR, errR
	pid := r.cmd.Process.Pid
	ticks, _ := procStartTicks(pid) // the child is ours and alive: the read only fails if /proc is missing
	r.p = &proc{pid: pid, startTicks: ticks, groupLead: true, pidfd: -1, done: make(chan struct{}), stderrEOF: make(chan struct{}),
		pipes: []*os.File{outR, errR}}
	r.started.Store(r.p)
	go r.wait()
	if r.spawned != nil {
		return r.spawned(r.p)
	}
	return nil
}

// errNotOurs means the pid in a lease is not (or no longer) the plugin we started.
var errNotOurs = errors.New("process is gone or is not the one we started")

// groupStillOurs reports whether the process group whose id is pid is still
// the one our plugin (pid, startTicks) led, for a plugin we did not start
// (adopted), whose reaping we do not control. While any member of a group is
// alive the kernel does not hand its id out as a new pid, so the group is
// ours unless pid now names another process (the old leader was reaped, its
// group emptied and the number reused).
func groupStillOurs(pid int, startTicks uint64) bool {
	st, err := procStat(pid)
	if err != nil {
		return true // no process has that pid: a group by that id can only be the old one
	}
	return st.startTicks == startTicks
}

// terminate ends p: SIGKILL to it and its group, then waits up to wait for
// the exit to be observed. Returns an error when it is still alive after that.
func terminate(p *proc, wait time.Duration) error {
	if err := p.kill(syscall.SIGKILL); err != nil {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.exited():
		return nil
	case <-t.C:
		return fmt.Errorf("pid %d still alive %s after SIGKILL", p.pid, wait)
	}
}

// Runner plumbing for go-plugin (runner.Runner); kept here because it is
// about the process, not the protocol.

func (r *childRunner) Start(context.Context) error     { return r.start() }
func (r *childRunner) Diagnose(context.Context) string { return "" }
func (r *childRunner) Stdout() io.ReadCloser           { return r.stdout }
func (r *childRunner) Stderr() io.ReadCloser           { return &eofReader{f: r.stderr, p: r.p} }
func (r *childRunner) Name() string                    { return r.cmd.Path }
func (r *childRunner) ID() string                      { return strconv.Itoa(r.p.pid) }
func (r *childRunner) Wait(ctx context.Context) error {
	select {
	case <-r.p.exited():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (r *childRunner) Kill(context.Context) error {
	if r.p == nil {
		return nil
	}
	return r.p.kill(syscall.SIGKILL)
}
func (r *childRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *childRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

// eofReader closes eof when its reader reports the end (or fails): go-plugin
// relays each line before it reads again, so by then every line is relayed.
type eofReader struct {
	f *os.File
	p *proc
}

func (e *eofReader) Read(b []byte) (int, error) {
	n, err := e.f.Read(b)
	if err != nil {
		e.p.stderrOnce.Do(func() { close(e.p.stderrEOF) })
	}
	return n, err
}

func (e *eofReader) Close() error {
	e.p.stderrOnce.Do(func() { close(e.p.stderrEOF) })
	return e.f.Close()
}

// waitStderr waits up to max for the plugin's stderr to be read to its end.
// Call it once the process has ended: when the end does not come in time
// (another process holds the pipe), the pipes are closed, so nothing waits
// for them again.
func (p *proc) waitStderr(max time.Duration) {
	if p.stderrEOF == nil {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-p.stderrEOF:
	case <-t.C:
		p.closePipes()
	}
}

// closePipes closes the read ends of the plugin's stdout and stderr, which
// ends go-plugin's readers of them at once (their Read fails): its Kill waits
// for those readers without a bound, and its doneCtx is only cancelled after
// them, so without this a dead plugin whose pipes another process still
// holds would keep whoever releases it (with the pod's operation lock)
// waiting for that process. Call it once the process is gone and its stderr
// has been read as far as it is going to be.
func (p *proc) closePipes() {
	for _, f := range p.pipes {
		_ = f.Close()
	}
	if p.stderrEOF != nil {
		p.stderrOnce.Do(func() { close(p.stderrEOF) })
	}
}

// adoptedRunner is go-plugin's runner.AttachedRunner for a reattached process.
type adoptedRunner struct{ p *proc }

func (r adoptedRunner) Wait(ctx context.Context) error {
	select {
	case <-r.p.exited():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (r adoptedRunner) Kill(context.Context) error                       { return r.p.kill(syscall.SIGKILL) }
func (r adoptedRunner) ID() string                                       { return strconv.Itoa(r.p.pid) }
func (r adoptedRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r adoptedRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
