//go:build unix && !linux

package podapi

import (
	"os/signal"
	"syscall"
)

func clearDeathSignal(*syscall.SysProcAttr) {}

func defaultSignalAction(sig syscall.Signal) { signal.Reset(sig) }
