package podtest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a plugin process the kit started and waits for itself, so it
// learns how the process ended (go-plugin's own runner hides it), as the
// server's supervisor does. It implements go-plugin's runner.Runner.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser

	done   chan struct{}
	mu     sync.Mutex
	exit   Exit
	killed bool // the kit (or go-plugin, after a shutdown that did not end it) killed it
}

// Exit is how a plugin process ended.
type Exit struct {
	Code   int            // when Signal is 0
	Signal syscall.Signal // non-zero: killed by this signal
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return "killed by " + unix.SignalName(e.Signal)
	}
	return "exit status " + strconv.Itoa(e.Code)
}

func newProc(cmd *exec.Cmd) *proc {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdin = nil
	return &proc{cmd: cmd, done: make(chan struct{})}
}

func (p *proc) Start(context.Context) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close()
		_ = outW.Close()
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = outW, errW
	err = p.cmd.Start()
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		return err
	}
	p.stdout, p.stderr = outR, errR
	go p.wait()
	return nil
}

// wait reaps the process; the goroutine ends when the process ends.
func (p *proc) wait() {
	_ = p.cmd.Wait()
	var ex Exit
	if st := p.cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = ws.Signal()
		} else {
			ex.Code = st.ExitCode()
		}
	}
	// Whatever the plugin started in its process group goes with it.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.mu.Lock()
	p.exit = ex
	p.mu.Unlock()
	close(p.done)
}

// waitExit waits up to d for the process to end.
func (p *proc) waitExit(d time.Duration) (Exit, bool) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exit, true
	case <-time.After(d):
		return Exit{}, false
	}
}

func (p *proc) wasKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// pid is the process id, 0 when the process never started (a missing or
// non-executable command): go-plugin's Kill asks for ID() even then.
func (p *proc) pid() int {
	if p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// kill ends the process group at once.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.pid()
	if pid == 0 {
		return
	}
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func (p *proc) Diagnose(context.Context) string { return "" }
func (p *proc) Stdout() io.ReadCloser           { return p.stdout }
func (p *proc) Stderr() io.ReadCloser           { return p.stderr }
func (p *proc) Name() string                    { return p.cmd.Path }

// ID is "" for a process that never started: go-plugin then has nothing to kill.
func (p *proc) ID() string {
	if p.pid() == 0 {
		return ""
	}
	return strconv.Itoa(p.pid())
}

func (p *proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *proc) Kill(context.Context) error {
	if p.pid() == 0 {
		return nil // never started: nothing to wait for
	}
	p.kill()
	<-p.done
	return nil
}

func (p *proc) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (p *proc) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
