// Package workspace keeps tasks' workspaces: one directory per task,
// <dataDir>/tasks/<taskID>, created by the task's first pod, kept across its
// pods' and the server's restarts (the exec runtime works in it and, when
// sandboxed, may write nowhere else), and removed with the task.
package workspace

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir names the directory, under the data directory, that holds them.
const Dir = "tasks"

// Dirs are the workspaces under one data directory.
type Dirs struct {
	root string
}

// New returns the workspaces of dataDir.
func New(dataDir string) *Dirs { return &Dirs{root: filepath.Join(dataDir, Dir)} }

// Path is taskID's workspace. A taskID that is not one plain name (empty,
// with a separator, "." or "..") has none: "".
func (d *Dirs) Path(taskID string) string {
	if taskID == "" || taskID == "." || taskID == ".." || strings.ContainsAny(taskID, `/\`+"\x00") {
		return ""
	}
	return filepath.Join(d.root, taskID)
}

// maxEntries bounds one size walk: a workspace of more files is reported at
// the size of its first maxEntries.
const maxEntries = 1_000_000

// Size adds up the sizes of the regular files in taskID's workspace
// (symbolic links are not followed). ok is false when it does not exist.
func (d *Dirs) Size(ctx context.Context, taskID string) (size int64, ok bool, err error) {
	p := d.Path(taskID)
	if p == "" {
		return 0, false, nil
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	size, err = SizeOf(ctx, p)
	return size, true, err
}

// SizeOf adds up the sizes of the regular files under dir. Files that
// vanish or cannot be read during the walk are skipped.
func SizeOf(ctx context.Context, dir string) (int64, error) {
	var size int64
	n := 0
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone or unreadable: not counted
		}
		if n++; n > maxEntries {
			return filepath.SkipAll
		}
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	return size, err
}

// Remove deletes taskID's workspace and everything in it; a missing one is
// no error. Directories a command made unwritable are made writable first.
func (d *Dirs) Remove(taskID string) error {
	p := d.Path(taskID)
	if p == "" {
		return nil
	}
	err := os.RemoveAll(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = filepath.WalkDir(p, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				_ = os.Chmod(path, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(p)
	}
	return err
}

// Sweep removes the workspaces of tasks that no longer exist (deleted or
// pruned while this server did not run, or by `ipa prune`). exists answers
// for one task id; an error keeps the workspace. It returns how many it
// removed.
func (d *Dirs) Sweep(ctx context.Context, exists func(ctx context.Context, taskID string) (bool, error)) (int, error) {
	entries, err := os.ReadDir(d.root)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		if !e.IsDir() || d.Path(e.Name()) == "" {
			continue
		}
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		ok, err := exists(ctx, e.Name())
		if err != nil || ok {
			continue
		}
		if err := d.Remove(e.Name()); err == nil {
			removed++
		}
	}
	return removed, nil
}
