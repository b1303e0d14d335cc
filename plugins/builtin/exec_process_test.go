package builtin_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/plugins/exec"
)

// The exec runtime's processes, really started and really killed.

// commandPID asks the runtime for its command's pid.
func commandPID(t *testing.T, rt podapi.Runtime) int {
	t.Helper()
	st, err := rt.State(context.Background(), podapi.StateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var live struct{ PID int }
	if err := json.Unmarshal(st.Live, &live); err != nil || live.PID <= 0 {
		t.Fatalf("live %s: no pid (%v)", st.Live, err)
	}
	return live.PID
}

// liveProc reports whether pid is a live, non-zombie process.
func liveProc(pid int) bool {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// The command runs in the plugin's process group, and dies with the plugin
// even when nobody kills that group (parent-death signal).
func TestExecCommandDiesWithPlugin(t *testing.T) {
	p, _ := startExec(t, `{"command": ["sleep", "60"]}`)
	plugin := p.cmd.Process.Pid
	cmdPID := commandPID(t, p.rt)
	pgid, err := syscall.Getpgid(cmdPID)
	if err != nil {
		t.Fatal(err)
	}
	if pgid != plugin {
		t.Fatalf("command %d is in group %d, want the plugin's group %d", cmdPID, pgid, plugin)
	}
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the command to die with its plugin", func() bool { return !liveProc(cmdPID) })
}

// Stop ends the command and every process it started; the plugin survives
// the SIGTERM its group gets and exits 0 (a requested stop).
func TestExecStopEndsTheWholeTree(t *testing.T) {
	p, h := startExec(t, `{"command": ["sh", "-c", "sleep 60 & sleep 60 & trap '' TERM; wait"]}`)
	plugin := p.cmd.Process.Pid
	var members []int
	eventually(t, 5*time.Second, "the command's children", func() bool {
		members = groupOf(plugin)
		return len(members) >= 4 // plugin, sh, two sleeps
	})
	if _, err := p.rt.Stop(context.Background(), podapi.StopRequest{Deadline: time.Now().Add(500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if d := exited(t, h); !d.Stopped {
		t.Fatalf("exited %+v, want stopped", d)
	}
	if ws := exitStatus(t, p); ws.Signaled() || ws.ExitStatus() != 0 {
		t.Fatalf("plugin exit status %v, want 0", ws)
	}
	for _, pid := range members {
		if pid != plugin && liveProc(pid) {
			t.Fatalf("process %d of the command survived Stop", pid)
		}
	}
}

// groupOf lists the live processes whose process group is pgid.
func groupOf(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := parseInt(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && liveProc(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func parseInt(s string) (int, error) {
	var n int
	err := json.Unmarshal([]byte(s), &n)
	return n, err
}

// An orphaned exec plugin (its host gone, nobody back within the grace)
// stops its command and exits.
func TestExecOrphanStopsCommand(t *testing.T) {
	cmd, info, ended := startDetachedRuntime(t, "exec", podapi.EnvOrphanGrace+"=700ms")
	cfg, _ := podapi.NewReattachConfig(info, hclog.NewNullLogger())
	client := plugin.NewClient(cfg)
	rt, err := podapi.Dispense(client)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{}
	if _, err := rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(`{"command": ["sh", "-c", "sleep 60 & sleep 60; wait"]}`), WorkDir: t.TempDir(), Host: h}); err != nil {
		t.Fatal(err)
	}
	var members []int
	eventually(t, 5*time.Second, "the command's processes", func() bool {
		members = groupOf(cmd.Process.Pid)
		return len(members) >= 4
	})
	proto, _ := client.Client()
	_ = proto.(*plugin.GRPCClient).Conn.Close() // the host is gone for good
	select {
	case <-ended:
	case <-time.After(8 * time.Second):
		t.Fatal("orphaned exec plugin did not exit")
	}
	for _, pid := range members {
		if liveProc(pid) {
			t.Fatalf("process %d of the command outlived its orphaned plugin", pid)
		}
	}
}

func TestExecTimeoutReason(t *testing.T) {
	p, h := startExec(t, `{"command": ["sleep", "30"], "timeoutMs": 300}`)
	d := exited(t, h)
	if !d.TimedOut || d.Reason != ipa.CrashTimeout || d.Signal != "SIGTERM" {
		t.Fatalf("exited %+v, want timed out by SIGTERM with reason timeout", d)
	}
	if ws := exitStatus(t, p); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("plugin exit status %v, want SIGTERM", ws)
	}
}

func TestExecLimits(t *testing.T) {
	t.Run("Applied", func(t *testing.T) {
		_, h := startExec(t, `{"command": ["cat", "/proc/self/limits"], "limits": {"memoryMB": 256, "cpuSeconds": 5, "openFiles": 64, "processes": 5000}}`)
		exited(t, h)
		h.mu.Lock()
		defer h.mu.Unlock()
		want := map[string][]string{
			"Max cpu time":      {"5", "6"},
			"Max address space": {"268435456", "268435456"},
			"Max open files":    {"64", "64"},
			"Max processes":     {"5000", "5000"},
		}
		seen := 0
		for _, l := range h.lines {
			for name, vals := range want {
				if rest, ok := strings.CutPrefix(l.Text, name); ok {
					if f := strings.Fields(rest); len(f) < 2 || !slices.Equal(f[:2], vals) {
						t.Fatalf("%q, want %s %v", l.Text, name, vals)
					}
					seen++
				}
			}
		}
		if seen != len(want) {
			t.Fatalf("saw %d of %d limits in %+v", seen, len(want), h.lines)
		}
	})
	t.Run("CPU", func(t *testing.T) {
		p, h := startExec(t, `{"command": ["sh", "-c", "while :; do :; done"], "limits": {"cpuSeconds": 1}}`)
		if d := exited(t, h); d.Reason != ipa.CrashLimitCPU || d.Signal != "SIGXCPU" {
			t.Fatalf("exited %+v, want SIGXCPU with reason %q", d, ipa.CrashLimitCPU)
		}
		// The plugin dies of its command's signal, even one Go would drop.
		if ws := exitStatus(t, p); !ws.Signaled() || ws.Signal() != syscall.SIGXCPU {
			t.Fatalf("plugin exit status %v, want SIGXCPU", ws)
		}
	})
	t.Run("Memory", func(t *testing.T) {
		_, h := startExec(t, `{"command": ["awk", "BEGIN { s = \"x\"; while (1) s = s s }"], "limits": {"memoryMB": 64}}`)
		if d := exited(t, h); d.Reason != ipa.CrashLimitMemory || d.ExitCode == nil || *d.ExitCode == 0 {
			t.Fatalf("exited %+v, want a failure with reason %q", d, ipa.CrashLimitMemory)
		}
	})
	t.Run("NoLimitNoReason", func(t *testing.T) {
		_, h := startExec(t, `{"command": ["sh", "-c", "echo out of memory >&2; exit 2"]}`)
		if d := exited(t, h); d.Reason != "" {
			t.Fatalf("exited %+v, want no reason without limits", d)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		for _, cfg := range []string{
			`{"command": ["true"], "limits": {"memoryMB": -1}}`,
			`{"command": ["true"], "limits": {"openFiles": 2000000}}`,
			`{"command": ["true"], "limits": {"disk": 1}}`,
		} {
			if err := exec.ValidateConfig([]byte(cfg)); ipa.ErrorCode(err) != ipa.EINVALID {
				t.Fatalf("%s: %v, want EINVALID", cfg, err)
			}
		}
	})
}
