package exec

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// No process of a pod outlives it. The supervisor starts each plugin as the
// leader of its own process group and, when the plugin ends however it ends,
// kills that whole group before anything else (a restart included). So the
// command runs in the plugin's group, not a group of its own, and everything
// it starts (unless it leaves the group on purpose) dies with the plugin. On
// Linux the command also gets SIGKILL as its parent-death signal, so a
// plugin killed outright takes its command along even when no supervisor is
// there to kill the group; and the plugin's group guard (guard.go) kills
// the whole group the moment the plugin is gone, which also covers what a
// parent-death signal does not reach: the command's own children, and a
// sandboxed command, which is not the plugin's child.
//
// Signals for the command then reach the plugin too: the plugin catches
// SIGTERM (and does nothing with it), and SIGKILL goes to every member of
// the group but the plugin itself. A plugin started some other way (not
// leading its group) gives the command a group of its own, as before.

var ignoreTermOnce sync.Once

// commandGroup decides the command's process group: the plugin's own when
// the plugin leads it (shared), else a new one led by the command.
func commandGroup(attr *syscall.SysProcAttr) (shared bool) {
	setDeathSignal(attr)
	if unix.Getpgrp() != os.Getpid() {
		attr.Setpgid = true
		return false
	}
	startGuard()
	ignoreTermOnce.Do(func() {
		// Notified, not ignored: an ignored signal would stay ignored in
		// the command, a caught one is reset to the default when it execs.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		go func() {
			for range c {
			}
		}()
	})
	return true
}

// signalGroup sends sig to the command's process group. In a shared group
// SIGTERM goes to the whole group (the plugin catches it) and SIGKILL to
// every member but the plugin. spare (0: none) is a member that gets
// SIGKILL only: the bwrap outside a sandbox, which would die of any other
// signal at once and so SIGKILL the whole sandbox (its init dies with it)
// before the command could end cleanly. Without it, the command gets the
// signal and the sandbox ends when the command does. (The init of the
// sandbox's PID namespace, also in the group, never gets a signal it has
// no handler for from outside its namespace, SIGKILL aside.)
func signalGroup(pgid int, shared bool, sig syscall.Signal, spare int) {
	switch {
	case sig == syscall.SIGKILL && shared:
		killGroupButSelf(pgid)
	case sig == syscall.SIGKILL || spare == 0:
		_ = syscall.Kill(-pgid, sig)
	default:
		// One by one, so spare is left out: a member forked meanwhile
		// may miss the signal, as it may miss a group's; SIGKILL at the
		// deadline reaches it.
		self := os.Getpid()
		for _, pid := range groupMembers(pgid) {
			if pid != spare && pid != self {
				_ = syscall.Kill(pid, sig)
			}
		}
	}
}

// sandboxCommandStarted reports whether the sandbox that bwrap (pid outer)
// set up in group pgid runs its command yet: besides this plugin and the
// outer bwrap, the group then holds the sandbox's init and at least the
// command; during the set-up, at most the init.
func sandboxCommandStarted(pgid, outer int) bool {
	self, n := os.Getpid(), 0
	for _, pid := range groupMembers(pgid) {
		if pid != self && pid != outer {
			n++
		}
	}
	return n > 1
}

// killGroupButSelf sends SIGKILL to every process in group pgid except this
// one, scanning /proc until none is left (a member may fork while it is
// scanned; its child is found by the next scan), for at most a second.
func killGroupButSelf(pgid int) {
	self := os.Getpid()
	end := time.Now().Add(time.Second)
	for {
		found := false
		for _, pid := range groupMembers(pgid) {
			if pid != self {
				found = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if !found || time.Now().After(end) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupMembers lists the live (not zombie) processes of group pgid.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		f := strings.Fields(string(b[i+2:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// limitsGate is the tiny shell shim a command with limits runs under: it
// waits on fd 3 until the plugin has set the limits on it (prlimit), then
// becomes the command. Limits set on the shim before it execs the command
// hold from the command's first instruction and are inherited by all it
// starts. A shim whose plugin vanished before that exits 125.
const limitsGate = `read -r _ <&3 || exit 125; exec 3<&-; exec "$@"`

// limitReason tells, when it can, which of the command's limits ended it:
// CPU by the signals RLIMIT_CPU sends (SIGXCPU, then SIGKILL with the CPU
// time used at the limit); the others only by what the command said on its
// way out (an allocation, open or fork that failed), since the kernel just
// fails the call. It returns "" when no limit can be blamed.
func limitReason(l Limits, st pod.ExitStatus, ps *os.ProcessState, errTail []string) (reason, message string) {
	if l.CPUSeconds > 0 {
		used := ps.UserTime() + ps.SystemTime()
		if st.Signal == syscall.SIGXCPU || (st.Signal == syscall.SIGKILL && used >= time.Duration(l.CPUSeconds)*time.Second) {
			return ipa.CrashLimitCPU, fmt.Sprintf("used its %d s of CPU time (limits.cpuSeconds)", l.CPUSeconds)
		}
	}
	said := strings.ToLower(strings.Join(errTail, "\n"))
	if l.MemoryMB > 0 && (st.Signal == syscall.SIGSEGV || st.Signal == syscall.SIGBUS ||
		strings.Contains(said, "memory") || strings.Contains(said, "alloc")) {
		return ipa.CrashLimitMemory, fmt.Sprintf("ran out of its %d MB of memory (limits.memoryMB)", l.MemoryMB)
	}
	if l.OpenFiles > 0 && strings.Contains(said, "too many open files") {
		return ipa.CrashLimitOpenFiles, fmt.Sprintf("ran out of its %d open files (limits.openFiles)", l.OpenFiles)
	}
	if l.Processes > 0 && (strings.Contains(said, "fork") || strings.Contains(said, "resource temporarily unavailable")) {
		return ipa.CrashLimitProcesses, fmt.Sprintf("could not start more processes (limits.processes %d, counted per user)", l.Processes)
	}
	return "", ""
}
