package main

import (
	"bytes"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/webhook"
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

// storedSecret reads the webhook_endpoints.secret column of endpoint id
// straight from a SQLite file.
func storedSecret(t *testing.T, path, id string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(`SELECT secret FROM webhook_endpoints WHERE id = ?`, id).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Webhook secrets are sealed at rest: a backup holds no secret, anywhere in
// its bytes; a secret stored in plaintext by an earlier version is sealed
// at the next start and still signs; a server with another key refuses to
// start, saying which file and why.
func TestWebhookSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	h := newHome(t, "--webhook-allow-private", "--webhook-min-backoff", "20ms", "--webhook-max-backoff", "200ms")
	s := h.start()
	rcv := newReceiver(t)
	var created struct {
		CreateWebhookEndpoint struct {
			Secret   string
			Endpoint endpointView
		}
	}
	s.must(t, createEndpoint, map[string]any{"in": map[string]any{"url": rcv.srv.URL + "/hook"}}, &created)
	secret, id := created.CreateWebhookEndpoint.Secret, created.CreateWebhookEndpoint.Endpoint.ID
	key := strings.TrimPrefix(secret, webhook.SecretPrefix)
	rcv.set(func(r *receiver) { r.secret = secret })
	s.createTask(t, map[string]any{"title": "signed with the sealed secret"})
	eventually(t, 20*time.Second, func() string {
		if accepted, _, bad := rcv.snapshot(); len(accepted) == 0 || bad > 0 {
			return fmt.Sprintf("accepted %v, %d badly signed", accepted, bad)
		}
		return ""
	})

	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, stderr, code := ipaCmd(t, "backup", "--to", backup, "--database", h.db); code != 0 {
		t.Fatalf("ipa backup: exit %d: %s%s", code, out, stderr)
	}
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(key)) || bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the backup holds the webhook secret in plaintext")
	}
	if v := storedSecret(t, backup, id); !strings.HasPrefix(v, webhook.SealedPrefix) {
		t.Fatalf("the backup's secret column is %q, want a sealed value", v)
	}
	s.stop(t, 30*time.Second)

	// An earlier version's plaintext secret, as it was stored before.
	dbPath := strings.TrimPrefix(h.db, "sqlite://")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE webhook_endpoints SET secret = ? WHERE id = ?`, secret, id); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	// Another key: refused at start, before anything is signed.
	otherKey := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(otherKey, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, []string{"IPA_SECRET_KEY_FILE=" + otherKey}, "serve", "--addr", "127.0.0.1:0", "--database", h.db, "--data-dir", h.dataDir)
	if want := "--secret-key-file " + otherKey + ": the secret key does not open the webhook secrets stored in this database"; r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("a server with another key: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}

	s = h.start()
	if !strings.Contains(s.log.String(), `msg="webhook secrets sealed" count=1`) {
		t.Fatalf("the plaintext secret was not sealed at start:\n%s", s.logTail(30))
	}
	if v := storedSecret(t, dbPath, id); !strings.HasPrefix(v, webhook.SealedPrefix) {
		t.Fatalf("after the start the secret column is %q, want a sealed value", v)
	}
	before, _, _ := rcv.snapshot()
	s.createTask(t, map[string]any{"title": "signed after sealing"})
	eventually(t, 20*time.Second, func() string {
		if accepted, _, bad := rcv.snapshot(); len(accepted) <= len(before) || bad > 0 {
			return fmt.Sprintf("accepted %v, %d badly signed", accepted, bad)
		}
		return ""
	})
}

// Without --secret-key-file, a SQLite server makes its key beside the
// store: 32 random bytes as hex, readable by its owner alone.
func TestSecretKeyFileDefault(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	h.env = []string{"IPA_SECRET_KEY_FILE="}
	s := h.start()
	path := filepath.Join(filepath.Dir(strings.TrimPrefix(h.db, "sqlite://")), "ipa-secret.key")
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("key file mode %v, want 0600", m)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := hex.DecodeString(strings.TrimSpace(string(b))); err != nil || len(k) != 32 {
		t.Fatalf("key file holds %q, want 64 hex digits", b)
	}
	s.stop(t, 30*time.Second)
	// The next start reads the same key back: the database's check passes.
	s = h.start()
	s.stop(t, 30*time.Second)
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Fatal("the key file changed across restarts")
	}
}
