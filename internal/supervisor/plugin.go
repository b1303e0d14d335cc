package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// This file is the only one that speaks go-plugin: it turns a command into a
// connected podapi.Runtime over a process we own (childRunner), and a lease
// back into one over a process we adopt.

// pluginConn is one connected plugin: the go-plugin client and the Runtime it
// dispensed.
type pluginConn struct {
	client *plugin.Client
	rt     podapi.Runtime
}

// close asks the plugin's gRPC server to shut down (go-plugin's controller),
// which ends a well-behaved plugin process, and drops the connection. It does
// not wait for the process, and waits for the request at most until p ends
// or wait has passed: go-plugin bounds that request by nothing but the end of
// the process, and a frozen plugin (stopped, or starved) never answers it.
// The request then goes on aside, until the caller has killed p and released
// the connection (it always does both next).
func (c *pluginConn) close(p *proc, wait time.Duration) {
	rpc, err := c.client.Client()
	if err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rpc.Close()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-p.exited():
	case <-t.C:
	}
}

// abandon drops the connection to a plugin that is to outlive this server
// (a paused pod at a clean shutdown): the gRPC connection is closed without
// the controller's shutdown request, and the process, its pipes and
// go-plugin's client are left alone (releasing the client would kill it).
// The plugin sees what a server crash shows it.
func (c *pluginConn) abandon() {
	rpc, err := c.client.Client()
	if err != nil {
		return
	}
	if g, ok := rpc.(*plugin.GRPCClient); ok && g.Conn != nil {
		_ = g.Conn.Close()
	}
}

// closeWait bounds close where the plugin is killed right after anyway.
const closeWait = time.Second

// release frees what go-plugin holds for the plugin process p, which has
// been killed (goroutines, socket dir). It reads what is left of p's stderr
// for at most stderrDrainWait, then closes p's pipes, so it returns promptly
// even when another process still holds a write end of them (go-plugin's
// Kill alone would wait for that process to end).
func (c *pluginConn) release(p *proc) {
	if p != nil {
		if !p.alive() {
			p.waitStderr(stderrDrainWait)
		}
		p.closePipes()
	}
	c.client.Kill()
}

// hclogger routes go-plugin's own chatter to slog at debug level; a plugin's
// stderr is relayed separately (stderrTail) with the task id.
func hclogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "go-plugin",
		Level:  hclog.Warn,
		Output: slogWriter{log},
	})
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.log.Debug("go-plugin", slog.String("msg", string(b)))
	return len(b), nil
}

// launchPlugin starts cmd as a plugin process, completes the go-plugin
// handshake and dispenses the Runtime. spawned, if not nil, is told of the
// process as soon as it exists (before the handshake); its error ends the
// launch. On error the process, if started, is killed and reaped before it
// returns.
func launchPlugin(ctx context.Context, cmd *exec.Cmd, stderr io.Writer, log *slog.Logger, timeout time.Duration, spawned func(*proc) error) (*pluginConn, *proc, error) {
	r := newChildRunner(cmd)
	r.spawned = spawned
	cfg := podapi.NewClientConfig(cmd, hclogger(log))
	// Our runner instead of go-plugin's: it owns the wait, so the exit status
	// is ours. go-plugin writes the handshake environment (cookie, protocol
	// versions, socket dir) into the cmd it hands RunnerFunc; ours gets it,
	// with the launcher's own variables last so they win.
	cfg.Cmd = nil
	// go-plugin would add the whole host environment; the launch already
	// put in cmd.Env all of it the plugin may have (see env.go).
	cfg.SkipHostEnv = true
	cfg.RunnerFunc = func(_ hclog.Logger, gp *exec.Cmd, _ string) (runner.Runner, error) {
		own := cmd.Env
		cmd.Env = append(append([]string(nil), gp.Env...), own...)
		return r, nil
	}
	cfg.StartTimeout = timeout
	cfg.Stderr = stderr     // the plugin's fd 2: panics, its podapi.Logger
	cfg.SyncStderr = stderr // what it writes to os.Stderr after Serve
	cfg.SyncStdout = stderr
	client := plugin.NewClient(cfg)
	fail := func(err error) (*pluginConn, *proc, error) {
		if p := r.started.Load(); p != nil {
			// Killed and its pipes closed first, so go-plugin's Kill does not
			// wait (2 s, then for the pipes' end) for a process we end anyway.
			_ = terminate(p, DefaultKillWait)
			p.closePipes()
		}
		client.Kill()
		return nil, nil, err
	}
	type result struct {
		rt  podapi.Runtime
		err error
	}
	// go-plugin's handshake has its own StartTimeout but takes no ctx: run it
	// aside so the caller's ctx is honoured too.
	done := make(chan result, 1)
	go func() {
		rt, err := podapi.Dispense(client)
		done <- result{rt: rt, err: err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return fail(fmt.Errorf("plugin handshake: %w", res.err))
		}
		return &pluginConn{client: client, rt: res.rt}, r.p, nil
	case <-ctx.Done():
		c, p, err := fail(fmt.Errorf("plugin handshake: %w", ctx.Err()))
		<-done // the kill above ends the handshake at once
		return c, p, err
	}
}

// reattachInfo is what a lease needs to reconnect to a plugin.
func reattachInfo(c *pluginConn) (network, addr, protocol string, version int) {
	rc := c.client.ReattachConfig()
	if rc == nil || rc.Addr == nil {
		return "", "", "", 0
	}
	return rc.Addr.Network(), rc.Addr.String(), string(rc.Protocol), c.client.NegotiatedVersion()
}

// reattachPlugin reconnects to an adopted plugin process described by l.
func reattachPlugin(l Lease, p *proc, log *slog.Logger) (*pluginConn, error) {
	cfg, err := podapi.NewReattachConfig(podapi.ReattachInfo{
		Pid: l.PID, Network: l.Network, Address: l.Addr, ProtocolVersion: l.ProtocolVersion,
	}, hclogger(log))
	if err != nil {
		return nil, err
	}
	cfg.Reattach.ReattachFunc = func() (runner.AttachedRunner, error) { return adoptedRunner{p}, nil }
	client := plugin.NewClient(cfg)
	rt, err := podapi.Dispense(client)
	if err != nil {
		return nil, fmt.Errorf("reattach: %w", err)
	}
	return &pluginConn{client: client, rt: rt}, nil
}
