//go:build unix && !linux

package hardening

import (
	"errors"
	"syscall"
)

func closeRangeCloexec() error { return errors.ErrUnsupported }

func setCloexec(fd int) { syscall.CloseOnExec(fd) }

// NotDumpable does nothing outside Linux.
func NotDumpable() error { return nil }
