//go:build unix && !linux

package podapi

import "syscall"

func clearDeathSignal(*syscall.SysProcAttr) {}
