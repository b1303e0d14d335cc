package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVersion: `ipa version` and `ipa --version` print the same line with
// the version, commit, build time and Go version.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, stderr, code := ipaCmd(t, "version")
	if code != 0 {
		t.Fatalf("ipa version: exit %d, %q", code, stderr)
	}
	re := regexp.MustCompile(`^ipa \S+ \(commit \S+, built \S+, go1\.\S+ \S+/\S+\)\n$`)
	if !re.MatchString(out) {
		t.Fatalf("ipa version printed %q, want it to match %s", out, re)
	}
	flag, _, code := ipaCmd(t, "--version")
	if code != 0 || flag != out {
		t.Fatalf("ipa --version: exit %d, %q; want %q", code, flag, out)
	}
}

// TestDatabaseURLSafety: a --database value that would start on the wrong
// store is refused with a message saying what to do, and nothing is created.
func TestDatabaseURLSafety(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo", "dir", "ipa.db")

	_, stderr, code := ipaCmd(t, "migrate", "--database", "sqlite://"+typo)
	if code != 2 || !strings.Contains(stderr, "does not exist") || !strings.Contains(stderr, "--create-dirs") {
		t.Fatalf("missing directory: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !os.IsNotExist(err) {
		t.Fatalf("a refused --database created its directory: %v", err)
	}
	// serve refuses it too, before it listens or writes anything.
	_, stderr, code = ipaCmd(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--database", "sqlite://"+typo)
	if code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("serve on a missing directory: exit %d, %q", code, stderr)
	}

	out, stderr, code := ipaCmd(t, "migrate", "--create-dirs", "--database", "sqlite://"+typo)
	if code != 0 {
		t.Fatalf("--create-dirs: exit %d, %q %q", code, out, stderr)
	}
	if _, err := os.Stat(typo); err != nil {
		t.Fatalf("--create-dirs did not create the store: %v", err)
	}

	bare := filepath.Join(dir, "ipa.db")
	_, stderr, code = ipaCmd(t, "migrate", "--database", bare)
	if code != 2 || !strings.Contains(stderr, "did you mean sqlite://"+bare+"?") {
		t.Fatalf("path without scheme: exit %d, %q", code, stderr)
	}
	_, stderr, code = ipaCmd(t, "migrate", "--database", "mysql://u:hunter2@db/x")
	if code != 2 || !strings.Contains(stderr, `unsupported scheme "mysql"`) || strings.Contains(stderr, "hunter2") {
		t.Fatalf("unknown scheme: exit %d, %q", code, stderr)
	}

	// Port 1 on loopback refuses connections.
	_, stderr, code = ipaCmd(t, "migrate", "--database", "postgres://ipa:hunter2@127.0.0.1:1/tasks")
	if code == 0 || strings.Contains(stderr, "hunter2") ||
		!strings.Contains(stderr, "cannot reach PostgreSQL at 127.0.0.1:1") || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("unreachable PostgreSQL: exit %d, %q", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("refused commands left files: %v", entries)
	}
}
