package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ipaCmd runs the ipa binary with args and returns stdout, stderr and the
// exit code.
func ipaCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(ipaBin, args...)
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

// TestBackupUnderLoadAndRestore: `ipa backup` while a real server takes
// writes makes a copy that opens as a store of its own and holds every
// write acknowledged before it began; `ipa restore` is refused while the
// server runs; after the server stops it restores, the server starts on the
// restored store, every such write is there and `ipa reproject --check` is
// clean.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()

	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				data, errs, err := s.post(ctx, `mutation { createTask(input: {title: "load"}) { task { id } } }`, nil)
				if err != nil || len(errs) > 0 {
					if ctx.Err() == nil {
						t.Errorf("create under load: %v %v", err, errs)
					}
					return
				}
				id := strings.Split(string(data), `"id":"`)[1][:36]
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	countAcked := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually(t, 30*time.Second, func() string {
		if n := countAcked(); n < 100 {
			return "too few writes yet"
		}
		return ""
	})
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()

	backup := filepath.Join(t.TempDir(), "ipa-backup.db")
	out, stderr, code := ipaCmd(t, "backup", "--to", backup, "--database", h.db)
	if code != 0 {
		t.Fatalf("ipa backup: exit %d: %s%s", code, out, stderr)
	}
	n := countAcked()
	eventually(t, 30*time.Second, func() string { // the server kept writing
		if countAcked() < n+50 {
			return "no writes after the backup"
		}
		return ""
	})

	// Refused while the server holds the store, which keeps serving.
	_, stderr, code = ipaCmd(t, "restore", "--from", backup, "--database", h.db)
	if code == 0 || !strings.Contains(stderr, "in use by a running ipa server") {
		t.Fatalf("restore under a running server: exit %d, %q", code, stderr)
	}
	cancel()
	wg.Wait()
	s.createTask(t, map[string]any{"title": "still serving"})

	// The copy is a store of its own.
	out, _, code = ipaCmd(t, "reproject", "--check", "--database", "sqlite://"+backup)
	if code != 0 || !strings.Contains(out, "0 rows differ") {
		t.Fatalf("reproject --check on the backup: exit %d, %q", code, out)
	}

	s.stop(t, 15*time.Second)
	out, stderr, code = ipaCmd(t, "restore", "--from", backup, "--database", h.db)
	if code != 0 || !strings.Contains(out, "kept as") {
		t.Fatalf("ipa restore: exit %d: %s%s", code, out, stderr)
	}
	out, _, code = ipaCmd(t, "reproject", "--check", "--database", h.db)
	if code != 0 || !strings.Contains(out, "0 rows differ") {
		t.Fatalf("reproject --check after restore: exit %d, %q", code, out)
	}

	s = h.start()
	var count struct{ TaskCount int }
	s.must(t, `{ taskCount }`, nil, &count)
	if count.TaskCount < len(before) || count.TaskCount >= countAcked()+1 {
		t.Fatalf("restored store has %d tasks; %d were acknowledged before the backup, %d in all (+1 after)",
			count.TaskCount, len(before), countAcked())
	}
	for _, id := range before {
		var got struct{ Task *struct{ ID string } }
		s.must(t, `query($id: ID!) { task(id: $id) { id } }`, map[string]any{"id": id}, &got)
		if got.Task == nil {
			t.Fatalf("task %s was acknowledged before the backup and is missing after the restore", id)
		}
	}
}

// TestBackupRestoreAnswersWithoutAStore: a PostgreSQL store is pointed at
// pg_dump/pg_restore before any connection is tried, and a backup of a
// SQLite file that does not exist is refused without creating it.
func TestBackupRestoreAnswersWithoutAStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pg := "postgres://ipa@127.0.0.1:1/ipa"
	_, stderr, code := ipaCmd(t, "backup", "--to", filepath.Join(dir, "b.db"), "--database", pg)
	if code == 0 || !strings.Contains(stderr, "pg_dump") {
		t.Fatalf("backup of PostgreSQL: exit %d, %q", code, stderr)
	}
	_, stderr, code = ipaCmd(t, "restore", "--from", filepath.Join(dir, "b.db"), "--database", pg)
	if code == 0 || !strings.Contains(stderr, "pg_restore") {
		t.Fatalf("restore into PostgreSQL: exit %d, %q", code, stderr)
	}
	missing := filepath.Join(dir, "missing.db")
	_, stderr, code = ipaCmd(t, "backup", "--to", filepath.Join(dir, "b.db"), "--database", "sqlite://"+missing)
	if code == 0 || !strings.Contains(stderr, "no store to back up") {
		t.Fatalf("backup of a missing store: exit %d, %q", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused commands left files: %v", entries)
	}
	_, stderr, code = ipaCmd(t, "backup", "--database", "sqlite://"+missing)
	if code != 2 || !strings.Contains(stderr, "--to is required") {
		t.Fatalf("backup without --to: exit %d, %q", code, stderr)
	}
}
