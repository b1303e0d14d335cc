package exec

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// setDeathSignal makes the command die with the plugin. The kernel sends it
// when the thread that started the command ends; Go ends threads only for
// goroutines that exit while locked to theirs, which the plugin never does.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// applyLimits sets l on pid (the waiting shim).
func applyLimits(pid int, l Limits) error {
	set := func(what string, res int, soft, hard uint64) error {
		if err := unix.Prlimit(pid, res, &unix.Rlimit{Cur: soft, Max: hard}, nil); err != nil {
			return fmt.Errorf("limits.%s: %w", what, err)
		}
		return nil
	}
	if l.MemoryMB > 0 {
		b := uint64(l.MemoryMB) << 20
		if err := set("memoryMB", unix.RLIMIT_AS, b, b); err != nil {
			return err
		}
	}
	if l.CPUSeconds > 0 {
		s := uint64(l.CPUSeconds)
		if err := set("cpuSeconds", unix.RLIMIT_CPU, s, s+1); err != nil {
			return err
		}
	}
	if l.OpenFiles > 0 {
		n := uint64(l.OpenFiles)
		if err := set("openFiles", unix.RLIMIT_NOFILE, n, n); err != nil {
			return err
		}
	}
	if l.Processes > 0 {
		n := uint64(l.Processes)
		if err := set("processes", unix.RLIMIT_NPROC, n, n); err != nil {
			return err
		}
	}
	return nil
}
