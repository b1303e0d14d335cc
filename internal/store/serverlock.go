package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrServerRunning is LockServer's answer when another server holds the lock.
var ErrServerRunning = errors.New("another ipa server is running")

// ServerLockPath is the lock a server holds on a SQLite store ("" for a
// PostgreSQL URL, where several servers share one database): a file beside
// the database, apart from the in-use lock that every command takes.
func ServerLockPath(rawURL string) (string, error) {
	if !strings.HasPrefix(rawURL, "sqlite://") {
		return "", nil
	}
	path, err := sqlitePath(rawURL)
	if err != nil {
		return "", err
	}
	return filepath.Abs(path + ".server.lock")
}

// LockServer creates path's directory when missing (private: 0700, as the
// data dir is), takes the exclusive lock at path (guarding what, named in the
// error) without waiting, and writes
// this process's id into the file for the message another server shows.
// Only one `ipa serve` may hold it: a second one on the same data dir or the
// same SQLite store refuses to start (ErrServerRunning, wrapped with the
// holder's pid) before it opens, migrates or changes anything. The kernel
// drops the lock when the process ends, even by SIGKILL, so nothing stale
// is left. Call release when the server has stopped.
func LockServer(path, what string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := lockFile(path, true)
	if errors.Is(err, errFileLocked) {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("%w (%s) on %s", ErrServerRunning, holder, what)
	}
	if err != nil {
		return nil, err
	}
	if f == nil { // no file locks on this system
		return func() {}, nil
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}
