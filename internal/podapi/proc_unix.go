//go:build unix

package podapi

import (
	"os/exec"
	"syscall"
)

// detach puts the plugin in its own process group, so a ^C on the server's
// terminal (sent to the foreground group) does not reach it, and sets no
// parent-death signal, so it survives its host being killed.
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	clearDeathSignal(cmd.SysProcAttr)
}
