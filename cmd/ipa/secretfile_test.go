package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --database-url-file: the server runs on the URL read from the file (so
// the URL, password included, need not be in its environment), and a file
// that cannot be used stops it with a message that says why.
func TestDatabaseURLFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "from-file.db")
	urlFile := filepath.Join(dir, "database-url")
	// A trailing newline, as editors and `echo` leave one.
	if err := os.WriteFile(urlFile, []byte("sqlite://"+dbPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("Serves", func(t *testing.T) {
		h := newHome(t, "--database-url-file", urlFile)
		h.db = ""
		s := h.start()
		id := s.createTask(t, map[string]any{"title": "kept in the file's database"})
		s.stop(t, 30*time.Second)
		if _, err := os.Stat(dbPath); err != nil {
			t.Fatalf("the server did not use the database named in the file: %v", err)
		}
		// The same store, read through the environment variable form.
		h2 := newHome(t)
		h2.db = ""
		h2.env = []string{"IPA_DATABASE_URL_FILE=" + urlFile}
		h2.dataDir = h.dataDir
		s2 := h2.start()
		if got := s2.task(t, id); got.ID != id {
			t.Fatalf("task %s not found through IPA_DATABASE_URL_FILE", id)
		}
	})

	// Every command takes it; an empty IPA_DATABASE_URL, as a service
	// manager may leave one, does not count as a second URL.
	t.Run("OtherCommandsAndEmptyVariable", func(t *testing.T) {
		other := filepath.Join(dir, "other.db")
		f := filepath.Join(dir, "other-url")
		if err := os.WriteFile(f, []byte("sqlite://"+other), 0o600); err != nil {
			t.Fatal(err)
		}
		r := cli(t, []string{"IPA_DATABASE_URL="}, "migrate", "--database-url-file", f)
		if r.code != 0 {
			t.Fatalf("ipa migrate --database-url-file: exit %d, %s", r.code, r.stderr)
		}
		if _, err := os.Stat(other); err != nil {
			t.Fatalf("ipa migrate did not use the database named in the file: %v", err)
		}
	})

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"Missing", []string{"--database-url-file", filepath.Join(dir, "nope")}, nil, 1,
			"--database-url-file " + filepath.Join(dir, "nope") + ": cannot read it: no such file or directory"},
		{"Unreadable", []string{"--database-url-file", dir}, nil, 1,
			"--database-url-file " + dir + ": cannot read it: is a directory"},
		{"Empty", []string{"--database-url-file", empty}, nil, 1, "the file is empty"},
		{"BothFlags", []string{"--database-url-file", urlFile, "--database", "sqlite://" + dbPath}, nil, 2, "the database URL is given twice"},
		{"FileAndVariable", []string{"--database-url-file", urlFile}, []string{"IPA_DATABASE_URL=sqlite://" + dbPath}, 2, "the database URL is given twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, c.env, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}, c.args...)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, c.code, c.want)
			}
		})
	}
}
