// Package hardening holds the process-wide protections ipa applies to
// itself at start: no descriptor it inherited reaches a process it starts,
// and (for the server) other processes of its user cannot read its memory
// or environment.
package hardening

import (
	"os"
	"strconv"
)

// CloseInheritedFiles marks every descriptor above 2 close-on-exec, so that
// nothing this process was handed by whoever started it (a shell's stray
// /dev/null, a service manager's pipe) reaches the plugins and commands it
// starts: a child gets its stdio and the files it is handed explicitly
// (exec.Cmd.ExtraFiles), nothing else. Call it first thing in main, before
// any process is started. Descriptors Go opens itself are close-on-exec
// already, so marking them again changes nothing.
func CloseInheritedFiles() error {
	if closeRangeCloexec() == nil {
		return nil
	}
	return markEachCloexec()
}

// markEachCloexec is the fallback for kernels without close_range's
// CLOEXEC flag (before Linux 5.11) and for other systems: the descriptors
// listed in /dev/fd, one by one.
func markEachCloexec() error {
	d, err := os.Open("/dev/fd")
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd <= 2 {
			continue
		}
		setCloexec(fd)
	}
	return nil
}
