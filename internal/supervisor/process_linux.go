//go:build linux

package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The Linux side of process.go: waitid without reaping, pidfds for adopted
// processes and /proc for a process's identity.

func pidfdSendSignal(fd int, sig syscall.Signal) error {
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

func (r *childRunner) wait() {
	p := r.p
	// Block until the child has exited without reaping it, so its pid (the
	// process group id) stays ours while the rest of the group is killed.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	p.mu.Lock()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // orphans of the runtime die with it
	p.reaped = true
	p.mu.Unlock()
	_ = r.cmd.Wait()
	ex := exitInfo{Known: true}
	if st := r.cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = unix.SignalName(ws.Signal())
		} else {
			c := st.ExitCode()
			ex.Code = &c
		}
	}
	p.mu.Lock()
	p.exit = ex
	p.mu.Unlock()
	close(p.done)
}

// adopt takes hold of a running process that is not (necessarily) our child,
// after a server restart. It fails unless the process alive at pid started at
// startTicks, so a recycled pid is never adopted. The pidfd taken first pins
// the identity: the check after it cannot race a recycle.
func adopt(pid int, startTicks uint64) (*proc, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w", pid, errNotOurs)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w (%w)", pid, errNotOurs, err)
	}
	ticks, err := procStartTicks(pid)
	if err != nil || ticks != startTicks {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d started at %d, lease says %d: %w", pid, ticks, startTicks, errNotOurs)
	}
	st, _ := procStat(pid)
	p := &proc{pid: pid, startTicks: ticks, groupLead: st.pgrp == pid, pidfd: fd, done: make(chan struct{})}
	f := os.NewFile(uintptr(fd), "pidfd")
	go p.waitPidfd(f)
	return p, nil
}

// waitPidfd blocks (in the runtime's poller, no thread and no polling loop)
// until the pidfd becomes readable, which the kernel does when the process
// exits. The goroutine ends when the process ends.
func (p *proc) waitPidfd(f *os.File) {
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(fds, 0)
			return perr != nil || n > 0
		})
	}
	if err != nil {
		// Not pollable (very old kernel): fall back to a blocking poll in this goroutine.
		fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
		for {
			if _, perr := unix.Poll(fds, -1); !errors.Is(perr, syscall.EINTR) {
				break
			}
		}
	}
	p.mu.Lock()
	if p.groupLead && groupStillOurs(p.pid, p.startTicks) {
		// The leader is gone; its group members, if any, still belong to it
		// and die with it.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	p.reaped = true
	p.pidfd = -1
	p.exit = exitInfo{Known: false}
	p.mu.Unlock()
	f.Close()
	close(p.done)
}

// stat is the part of /proc/<pid>/stat the supervisor reads.
type stat struct {
	state      byte
	pgrp       int
	startTicks uint64
}

// procStartTicks returns the start time of pid in clock ticks since boot, or
// an error when no such process is alive (a zombie counts as gone).
func procStartTicks(pid int) (uint64, error) {
	st, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if st.state == 'Z' || st.state == 'X' {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return st.startTicks, nil
}

func procStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields are
	// counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	pgrp, err1 := strconv.Atoi(f[5-3])
	start, err2 := strconv.ParseUint(f[22-3], 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return stat{state: f[0][0], pgrp: pgrp, startTicks: start}, nil
}

// bootID identifies the current boot, so a lease from before a reboot is
// never matched against a process that happens to have the same pid and ticks.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
