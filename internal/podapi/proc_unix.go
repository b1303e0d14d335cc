//go:build unix

package podapi

import (
	"os/exec"
	"syscall"
)

// detach puts the plugin in its own session and process group, so a ^C on the server's
// terminal (sent to the foreground group) does not reach it, and sets no
// parent-death signal, so it survives its host being killed.
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A session of its own, which makes the plugin the leader of its own
	// process group too. A group of its own alone is not enough: when the
	// host dies, that group becomes orphaned within the host's session,
	// and the kernel sends SIGHUP (then SIGCONT) to every member of an
	// orphaned group that holds a stopped process: a paused pod's work
	// would die with its host. In a session of its own the group never
	// becomes orphaned by the host's exit, so it is never sent that.
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setpgid = false
	clearDeathSignal(cmd.SysProcAttr)
}
