//go:build !linux

package supervisor

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// The side of process.go for systems without Linux's waitid(WNOWAIT), pidfds
// and /proc (darwin): a child is waited on with cmd.Wait, and a plugin left
// running by a previous server is never adopted, so after a restart its pod
// is treated as gone (the lease's process is "not ours").

var errUnsupported = errors.New("not supported on this OS")

func pidfdSendSignal(int, syscall.Signal) error { return errUnsupported }

func (r *childRunner) wait() {
	p := r.p
	// Without waitid(WNOWAIT) the child is reaped by the wait itself. Its
	// group id still cannot be handed out as a new pid while any member of
	// the group is alive, so killing the group after the wait reaches only
	// the runtime's orphans, as on Linux.
	_ = r.cmd.Wait()
	p.mu.Lock()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // orphans of the runtime die with it
	p.reaped = true
	p.mu.Unlock()
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

// adopt always fails here: without a pidfd and a process start time there is
// no way to prove that the process at pid is still the plugin we started, so
// a plugin from before a restart is treated as gone.
func adopt(pid int, _ uint64) (*proc, error) {
	return nil, fmt.Errorf("pid %d: %w (%w)", pid, errNotOurs, errUnsupported)
}

// stat is the part of /proc/<pid>/stat the Linux supervisor reads.
type stat struct {
	state      byte
	pgrp       int
	startTicks uint64
}

func procStat(int) (stat, error) { return stat{}, errUnsupported }

func procStartTicks(int) (uint64, error) { return 0, errUnsupported }

// bootID is empty where the boot cannot be identified: a lease then names no
// boot, and adopt refuses its process anyway.
func bootID() string { return "" }
