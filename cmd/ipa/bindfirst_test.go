package main

// `ipa serve` binds its listener before it migrates: with the migration
// held up (the test holds the migrations' advisory lock on PostgreSQL),
// the server's port already accepts connections, another server cannot
// take it, and the schema is still untouched; let go, the server migrates
// and becomes ready.

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3/lock"

	"github.com/ipa-dev/ipa/internal/dbtest"
)

func TestServeBindsBeforeMigrating(t *testing.T) {
	db := dbtest.URL(t, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	// The lock goose takes around migrations (lock.DefaultLockID, which
	// the store's migrations use): while the test holds it, they wait.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock.DefaultLockID); err != nil {
		t.Fatalf("advisory lock: %v", err)
	}
	migrated := func() bool {
		var table *string
		// tasks, which the first migration creates (goose may make its
		// own version table before it takes its lock).
		if err := conn.QueryRow(ctx, `SELECT to_regclass('tasks')::text`).Scan(&table); err != nil {
			t.Fatalf("look for the migrations' table: %v", err)
		}
		return table != nil
	}

	// A free port, named in advance so the test can dial it before the
	// server says anything.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	_ = probe.Close()

	h := newHome(t)
	cmd := exec.Command(ipaBin, "serve", "--addr", addr, "--database", db, "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "info")
	env := []string{tagVar + "=" + h.tag, "IPA_SECRET_KEY_FILE=" + secretKeyFile}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPA_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var out logBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ipa serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	eventually(t, 60*time.Second, func() string {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("ipa serve exited while its migration waited: %v\n%s", err, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return "the port does not accept connections yet: " + err.Error()
		}
		_ = c.Close()
		return ""
	})
	// The server is held up at its migration — one of its sessions has
	// asked for the lock the test holds (goose's query, which stays in
	// pg_stat_activity) — and its port was bound before.
	eventually(t, 60*time.Second, func() string {
		var tries int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND pid <> pg_backend_pid() AND query = 'SELECT pg_try_advisory_lock($1)'`).Scan(&tries); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if tries == 0 {
			return "the server has not tried to take the migrations' lock yet"
		}
		return ""
	})
	if migrated() {
		t.Fatalf("the schema was migrated while the test held the migrations' lock")
	}
	if strings.Contains(out.String(), "ipa serving") || strings.Contains(out.String(), "applied migration") {
		t.Fatalf("the server got past its migration while it was held up:\n%s", out.String())
	}
	// The port is this server's: a second one on it is refused at once.
	second, err := serveOnce(t, h, "--addr", addr, "--database", db, "--data-dir", filepath.Join(t.TempDir(), "data2"))
	if err == nil || !strings.Contains(second, "address already in use") {
		t.Fatalf("a second server on the bound port: %v\n%s", err, second)
	}

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lock.DefaultLockID); err != nil {
		t.Fatalf("advisory unlock: %v", err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	eventually(t, 2*time.Minute, func() string {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			return err.Error()
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
	if !migrated() {
		t.Fatalf("ready, but the schema was not migrated")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("ipa serve: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("ipa serve did not stop on SIGTERM:\n%s", out.String())
	}
}
