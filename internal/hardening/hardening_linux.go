package hardening

import (
	"math"
	"syscall"

	"golang.org/x/sys/unix"
)

func closeRangeCloexec() error {
	return unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
}

func setCloexec(fd int) { syscall.CloseOnExec(fd) }

// NotDumpable makes this process non-dumpable (prctl PR_SET_DUMPABLE 0):
// /proc/<pid>/environ, mem, maps and fd then belong to root, so another
// process of the same non-root user (an exec pod's command, above all)
// cannot read the server's environment or memory, nor ptrace it, and a
// crash writes no core file holding its secrets. It changes nothing for
// root, which may read any process, and it is not inherited: execve resets
// it, so the plugins the server starts are ordinary processes.
func NotDumpable() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
