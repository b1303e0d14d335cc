package workspace

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestSizeRemoveSweep(t *testing.T) {
	data := t.TempDir()
	d := New(data)
	ctx := context.Background()
	if _, ok, err := d.Size(ctx, "t1"); ok || err != nil {
		t.Fatalf("a missing workspace: ok=%v err=%v", ok, err)
	}
	for _, p := range []string{"", ".", "..", "a/b"} {
		if d.Path(p) != "" {
			t.Errorf("Path(%q) = %q, want none", p, d.Path(p))
		}
	}
	ws := d.Path("t1")
	if err := os.MkdirAll(filepath.Join(ws, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(ws, "a"), make([]byte, 100), 0o600)
	_ = os.WriteFile(filepath.Join(ws, "sub", "b"), make([]byte, 23), 0o600)
	_ = os.Symlink("/etc/passwd", filepath.Join(ws, "link"))
	if n, ok, err := d.Size(ctx, "t1"); !ok || err != nil || n != 123 {
		t.Fatalf("Size = %d, %v, %v; want 123 (links not followed)", n, ok, err)
	}
	// A directory its command made unwritable is removed all the same.
	if err := os.Chmod(filepath.Join(ws, "sub"), 0o500); err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll(d.Path("t2"), 0o750)
	_ = os.MkdirAll(d.Path("gone"), 0o750)
	n, err := d.Sweep(ctx, func(_ context.Context, id string) (bool, error) { return id != "gone", nil })
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if _, err := os.Stat(d.Path("gone")); !os.IsNotExist(err) {
		t.Fatal("the workspace of a task that is gone survived the sweep")
	}
	if err := d.Remove("t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ws); !os.IsNotExist(err) {
		t.Fatal("Remove left the workspace")
	}
	if _, err := os.Stat(d.Path("t2")); err != nil {
		t.Fatal("Remove or Sweep took another task's workspace")
	}
}
