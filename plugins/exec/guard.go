package exec

import (
	"os"
	osexec "os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// The group guard kills the plugin's process group the moment the plugin
// is gone, however it went (its own exit, a panic, SIGKILL), even when no
// supervisor is left to do it (the server was killed too).
//
// Parent-death signals alone do not cover a sandboxed command: between
// the plugin and the command sit bwrap and the init of the sandbox's PID
// namespace, and bwrap arms the parent-death signal of that init only at
// the end of its setup, after it has forked it. A plugin that dies during
// those milliseconds leaves the init (and then the command) running for
// good, reparented away from everything that would kill it, or bwrap's
// child blocked forever waiting for a parent that is gone.
//
// The guard is a shell, started once per plugin, reading a pipe whose only
// write end the plugin holds (close-on-exec, so no command inherits it).
// The kernel closes that end when the plugin ends, at any moment, with no
// window: the read returns end of file and the guard sends SIGKILL to the
// plugin's group, which holds bwrap, the sandbox's init (signals from
// outside a PID namespace reach its init when they are SIGKILL, and its
// end takes every process of the namespace along) and the command with its
// children. The guard leads a group of its own, so the signals for the
// command's group (SIGTERM on stop, SIGSTOP on pause, SIGKILL) never reach
// it, and it ignores the terminal's. The group's id is the plugin's pid,
// which the kernel does not hand out again while any member of the group
// is alive.
//
// A plugin about to exit on its own (its command ended and was reported)
// kills what is left of its group itself and retires the guard (the line
// "exit"), waiting for it, so that no process of the pod, the guard
// included, is left once the plugin has gone.
const guardScript = `trap '' TERM INT HUP QUIT; while read -r l; do [ "$l" = exit ] && exit 0; done; kill -KILL -"$1" 2>/dev/null; exit 0`

// guardRetireWait bounds the wait for the guard to end when retired.
const guardRetireWait = 2 * time.Second

var (
	guardOnce sync.Once
	// guardW is the write end the guard watches. Never closed, and held
	// here so the garbage collector never closes it either: its end is
	// the plugin's.
	guardW *os.File
	// guardDone is closed once the guard has ended and been reaped.
	guardDone chan struct{}
)

// startGuard starts the group guard of this plugin, which leads its group.
// Without /bin/sh the parent-death signals are all that is left; that is
// logged, not fatal.
func startGuard() {
	guardOnce.Do(func() {
		r, w, err := os.Pipe()
		if err != nil {
			pod.Logger().Warn("cannot start the process group guard", "error", err)
			return
		}
		cmd := osexec.Command("/bin/sh", "-c", guardScript, "ipa-exec-guard", strconv.Itoa(os.Getpid()))
		cmd.Stdin = r
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = cmd.Start()
		_ = r.Close()
		if err != nil {
			_ = w.Close()
			pod.Logger().Warn("cannot start the process group guard", "error", err)
			return
		}
		guardW, guardDone = w, make(chan struct{})
		// Reaps the guard, which ends when retired, after the plugin, or
		// when someone kills it: the goroutine ends with it.
		go func() {
			if err := cmd.Wait(); err != nil {
				pod.Logger().Warn("the process group guard ended", "error", err)
			}
			close(guardDone)
		}()
	})
}

// retireGuard kills every process of the plugin's group but the plugin,
// then ends the guard and waits for it (at most guardRetireWait). For a
// plugin that leads its group and is done with its command.
func retireGuard(pgid int) {
	killGroupButSelf(pgid)
	if guardW == nil {
		return
	}
	_, _ = guardW.Write([]byte("exit\n"))
	t := time.NewTimer(guardRetireWait)
	defer t.Stop()
	select {
	case <-guardDone:
	case <-t.C:
	}
}
