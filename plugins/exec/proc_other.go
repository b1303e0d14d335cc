//go:build !linux

package exec

import (
	"errors"
	"syscall"
)

func setDeathSignal(*syscall.SysProcAttr) {}

func applyLimits(int, Limits) error { return errors.New("limits need Linux") }
