package podapi

import "syscall"

func clearDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = 0 }
