// Package sandbox builds the bubblewrap (bwrap) command line an exec pod's
// command runs under, and checks that bwrap works on this machine.
//
// What the sandbox gives a command: the host's root file system read-only;
// a private /tmp and /dev; the server's own files (its data directory, its
// SQLite store, its key files) hidden behind empty mounts; only the task's
// workspace, its artifacts directory and the paths the task lists writable;
// its own PID, IPC, UTS, cgroup and (unless network is asked for) network
// namespaces, so it sees none of the server's processes (nor their
// /proc/<pid>/environ) and cannot reach any socket of the host, loopback
// included; and it dies with its plugin (--die-with-parent, and the exec
// runtime's process-group guard, which also covers bwrap's setup, before
// bwrap arms the parent-death signal of the sandbox's init). The rlimits of
// the exec runtime apply on top.
//
// What it does not protect against: a kernel bug (user namespaces widen
// the kernel's attack surface); reading anything world-readable on the host
// that is not hidden (other users' readable files, /etc); using the
// network when the task asks for it; exhausting memory, CPU or disk beyond
// the rlimits and the workspace limit (no cgroup is set up); signals to the
// command's own process group; and running as the server's OS user, so a
// file the server's user can read outside the hidden paths stays readable.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Mode is the --sandbox setting.
type Mode string

// Modes.
const (
	// Off runs exec commands without bwrap.
	Off Mode = "off"
	// Auto sandboxes every exec command wherever bwrap works, and runs them
	// without it elsewhere.
	Auto Mode = "auto"
	// Required refuses exec pods when bwrap does not work.
	Required Mode = "required"
)

// ParseMode parses a --sandbox value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Off, Auto, Required:
		return m, nil
	}
	return "", fmt.Errorf("--sandbox must be off, auto or required, not %q", s)
}

// Variables of the exec plugin's environment that carry the sandbox from
// the server (which probed bwrap once) to each plugin.
const (
	// EnvBwrap is the path of a bwrap that works; unset or empty: no sandbox.
	EnvBwrap = "IPA_EXEC_BWRAP"
	// EnvHide lists the paths hidden from the command, one per line.
	EnvHide = "IPA_EXEC_HIDE"
)

// Program is the name bwrap is looked up by.
const Program = "bwrap"

// probeTimeout bounds one probe of bwrap.
const probeTimeout = 10 * time.Second

// Find returns the path of bwrap and checks that it works here: it runs
// `bwrap … true` with every namespace and mount the sandbox uses. path
// names the program (looked up in PATH when it has no slash); "" is bwrap
// from PATH, and only from PATH: a PATH without bwrap means no bwrap, as
// --bwrap and the documentation say, so --sandbox required refuses exec
// pods then rather than picking one up from elsewhere. The error says why
// it does not work.
func Find(ctx context.Context, path string) (string, error) {
	if path == "" {
		path = Program
	}
	found, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("bwrap not found (install bubblewrap): %w", err)
	}
	if abs, err := filepath.Abs(found); err == nil {
		found = abs
	}
	return found, Probe(ctx, found)
}

// Probe runs bwrap with the namespaces and mounts the sandbox uses around
// `true`, and returns why it failed, with bwrap's own words.
func Probe(ctx context.Context, bwrap string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// The probe's workspace is the temporary directory: it exists, and
	// the probe writes nothing.
	args := append(Args(Spec{Workspace: os.TempDir()}), "--", "true")
	cmd := exec.CommandContext(ctx, bwrap, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 300 {
			msg = msg[:300]
		}
		if msg == "" {
			return fmt.Errorf("bwrap does not work here: %w", err)
		}
		return fmt.Errorf("bwrap does not work here: %v: %s", err, msg)
	}
	return nil
}

// Hidden is a path hidden from the command: a directory behind an empty
// tmpfs, a file behind /dev/null.
type Hidden struct {
	Path string
	Dir  bool
}

// Spec is one command's sandbox.
type Spec struct {
	// Workspace is the task's workspace, writable, and the command's
	// working directory. Absolute.
	Workspace string
	// Writable are more paths the command may write (the artifacts
	// directory, runtimeConfig.sandbox.writable). Absolute; each must exist.
	Writable []string
	// ReadOnly are more paths the command may read even where the private
	// /tmp or a hidden path would cover them (the ipa binary behind
	// $IPA_BIN, which `go run` keeps under /tmp). Absolute; each must exist.
	ReadOnly []string
	// Hide are paths hidden from the command (the server's files). A
	// writable path inside one of them is bound back in after it.
	Hide []Hidden
	// Network keeps the host's network namespace.
	Network bool
}

// Args returns bwrap's options for s, up to (not including) the "--" before
// the command. Mounts apply in order, so: the read-only root, then the
// private /dev, /proc and /tmp, then the hidden paths, then the writable
// binds (whose sources bwrap resolves on the host, so a workspace under a
// hidden path or under /tmp is bound in all the same).
func Args(s Spec) []string {
	args := []string{
		"--die-with-parent",
		"--unshare-all",
	}
	if s.Network {
		args = append(args, "--share-net")
	}
	args = append(args,
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
	)
	for _, h := range s.Hide {
		if h.Dir {
			args = append(args, "--tmpfs", h.Path)
		} else {
			args = append(args, "--ro-bind", "/dev/null", h.Path)
		}
	}
	for _, r := range s.ReadOnly {
		args = append(args, "--ro-bind", r, r)
	}
	args = append(args, "--bind", s.Workspace, s.Workspace)
	for _, w := range s.Writable {
		args = append(args, "--bind", w, w)
	}
	args = append(args, "--chdir", s.Workspace)
	return args
}

// CheckWritable refuses a writable path that is not absolute, not clean,
// is the root, or would uncover a hidden path (lies inside one, or holds
// one). It does not touch the file system.
func CheckWritable(path string, hide []Hidden) error {
	switch {
	case path == "" || strings.ContainsAny(path, "\x00\n"):
		return errors.New("must be a non-empty path without NUL or newline")
	case !filepath.IsAbs(path):
		return errors.New("must be absolute")
	case filepath.Clean(path) != path:
		return errors.New("must be clean (no '..', '.', '//' or trailing '/')")
	case path == "/":
		return errors.New("must not be the root")
	}
	for _, h := range hide {
		if within(path, h.Path) || within(h.Path, path) {
			return errors.New("would expose the server's files")
		}
	}
	return nil
}

// within reports whether p is dir or lies under it.
func within(p, dir string) bool {
	if p == dir {
		return true
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// EncodeHide joins paths for EnvHide.
func EncodeHide(paths []string) string {
	var keep []string
	for _, p := range paths {
		if p != "" && !strings.ContainsAny(p, "\x00\n") {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "\n")
}

// DecodeHide reads EnvHide's value and stats each path: missing ones are
// left out (nothing to hide), directories get a tmpfs, the rest /dev/null.
func DecodeHide(v string) []Hidden {
	var out []Hidden
	for _, p := range strings.Split(v, "\n") {
		if p == "" || !filepath.IsAbs(p) {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		out = append(out, Hidden{Path: filepath.Clean(p), Dir: st.IsDir()})
	}
	return out
}

// ExitSignal decodes bwrap's exit status: bwrap exits 128+n when the
// command was killed by signal n. It returns 0 for any other code.
func ExitSignal(code int) int {
	if code > 128 && code < 128+65 {
		return code - 128
	}
	return 0
}
