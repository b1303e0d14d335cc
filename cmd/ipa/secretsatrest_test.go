package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withUmask runs `ipa args…` under umask mask (through sh, which sets it
// for the process it becomes) and returns stdout, stderr and the exit code.
func withUmask(t *testing.T, mask string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `umask ` + mask + ` && exec "$0" "$@"`, ipaBin}, args...)...)
	cmd.Env = cliEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("ipa %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// fileMode returns the permission bits of path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// A backup, a restored store and a new store are readable by their owner
// alone, whatever the umask: they hold what the server holds.
func TestStoreFilesArePrivate(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	s.createTask(t, map[string]any{"title": "something to back up"})
	for _, mask := range []string{"000", "022"} {
		t.Run("umask"+mask, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			backup := filepath.Join(dir, "backup.db")
			if out, stderr, code := withUmask(t, mask, "backup", "--to", backup, "--database", h.db); code != 0 {
				t.Fatalf("ipa backup: exit %d: %s%s", code, out, stderr)
			}
			if m := fileMode(t, backup); m != 0o600 {
				t.Fatalf("backup mode %v under umask %s, want 0600", m, mask)
			}
			fresh := filepath.Join(dir, "fresh.db")
			if out, stderr, code := withUmask(t, mask, "migrate", "--database", "sqlite://"+fresh); code != 0 {
				t.Fatalf("ipa migrate: exit %d: %s%s", code, out, stderr)
			}
			if m := fileMode(t, fresh); m != 0o600 {
				t.Fatalf("new store mode %v under umask %s, want 0600", m, mask)
			}
			restored := filepath.Join(dir, "restored.db")
			if out, stderr, code := withUmask(t, mask, "restore", "--from", backup, "--database", "sqlite://"+restored); code != 0 {
				t.Fatalf("ipa restore: exit %d: %s%s", code, out, stderr)
			}
			if m := fileMode(t, restored); m != 0o600 {
				t.Fatalf("restored store mode %v under umask %s, want 0600", m, mask)
			}
		})
	}
	s.stop(t, 30*time.Second)
}
