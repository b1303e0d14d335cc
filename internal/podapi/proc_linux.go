package podapi

import (
	"syscall"
	"unsafe"
)

func clearDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = 0 }

// defaultSignalAction sets sig's disposition to the kernel default (SIG_DFL).
// signal.Reset only restores Go's own default, under which signals like
// SIGXCPU are dropped; a plugin re-raising its work's signal must die of it.
func defaultSignalAction(sig syscall.Signal) {
	var act [4]uint64 // struct sigaction, all zero: SIG_DFL, no flags, empty mask
	_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
}
