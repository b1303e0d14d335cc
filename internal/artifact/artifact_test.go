package artifact

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type recorded struct {
	typ  string
	data any
}

type recorder struct {
	mu  sync.Mutex
	got []recorded
}

func (r *recorder) record(_ context.Context, _, _, typ string, data any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, recorded{typ, data})
	return nil
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"report.txt": true, "a": true, "A-b_c.1": true, strings.Repeat("x", MaxNameLen): true,
		"": false, ".": false, "..": false, ".hidden": false, "../x": false, "a/b": false, `a\b`: false,
		"a b": false, "é": false, "a\x00": false, strings.Repeat("x", MaxNameLen+1): false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v, want %v", name, !ok, ok)
		}
	}
}

func TestSaveLimitsAndCollect(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	s := New(Config{DataDir: dir, MaxBytes: 10, MaxTaskBytes: 15, Record: rec.record})
	ctx := context.Background()
	a, err := s.Save(ctx, "t1", "runtime:x", "a.txt", strings.NewReader("0123456789"))
	if err != nil || a.SizeBytes != 10 || a.SHA256 != "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882" {
		t.Fatalf("Save = %+v, %v", a, err)
	}
	if _, err := s.Save(ctx, "t1", "runtime:x", "big.txt", strings.NewReader("01234567890")); !errors.Is(err, ErrRefused) {
		t.Fatalf("an artifact over the per-artifact limit: %v", err)
	}
	if _, err := s.Save(ctx, "t1", "runtime:x", "b.txt", strings.NewReader("0123456")); !errors.Is(err, ErrRefused) {
		t.Fatalf("an artifact over the task's total: %v", err)
	}
	// Replacing a.txt frees its bytes.
	if _, err := s.Save(ctx, "t1", "runtime:x", "a.txt", strings.NewReader("01234")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "t1", "runtime:x", "../escape", strings.NewReader("x")); !errors.Is(err, ErrRefused) {
		t.Fatalf("a traversal name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); !os.IsNotExist(err) {
		t.Fatal("a traversal name wrote outside")
	}
	if _, err := s.Save(ctx, "../t1", "runtime:x", "ok.txt", strings.NewReader("x")); err == nil {
		t.Fatal("a traversal task id was accepted")
	}

	// Collect: regular files saved, a link and a directory refused, all
	// removed from staging.
	staging := filepath.Join(dir, "staging")
	secret := filepath.Join(dir, "secret")
	for _, f := range []struct{ name, body string }{{"one.log", "1"}, {"two.log", "22"}} {
		if err := os.MkdirAll(staging, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(staging, f.name), []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(staging, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(staging, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	rec.got = nil
	n, err := s.Collect(ctx, "t2", "runtime:exec", staging)
	if err != nil || n != 2 {
		t.Fatalf("Collect = %d, %v", n, err)
	}
	var saved, refused int
	for _, r := range rec.got {
		switch r.typ {
		case EventSaved:
			saved++
		case EventRefused:
			refused++
		}
	}
	if saved != 2 || refused != 2 {
		t.Fatalf("%d saved, %d refused events, want 2 and 2: %+v", saved, refused, rec.got)
	}
	left, _ := os.ReadDir(staging)
	if len(left) != 0 {
		t.Fatalf("staging not emptied: %v", left)
	}
	if b, _ := os.ReadFile(secret); string(b) != "s" {
		t.Fatal("the link's target was touched")
	}
	if _, err := os.Stat(filepath.Join(dir, Dir, "t2", "link.txt")); !os.IsNotExist(err) {
		t.Fatal("a link was saved")
	}
	if err := s.Remove("t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, Dir, "t2")); !os.IsNotExist(err) {
		t.Fatal("Remove left the task's artifacts")
	}
}
