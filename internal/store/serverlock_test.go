//go:build unix

package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// One holder at a time; the refusal names the holder's pid and what is
// guarded; the lock is free again once released. A PostgreSQL URL needs no
// store lock.
func TestLockServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "server.lock")
	release, err := LockServer(path, "data dir X")
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid()), strings.TrimSpace(string(b)))

	_, err = LockServer(path, "data dir X")
	require.True(t, errors.Is(err, ErrServerRunning), "%v", err)
	require.Contains(t, err.Error(), "pid "+strconv.Itoa(os.Getpid()))
	require.Contains(t, err.Error(), "data dir X")

	release()
	again, err := LockServer(path, "data dir X")
	require.NoError(t, err)
	again()

	p, err := ServerLockPath("postgres://u@h/db")
	require.NoError(t, err)
	require.Empty(t, p)
	p, err = ServerLockPath("sqlite:///srv/ipa/ipa.db?_x=1")
	require.NoError(t, err)
	require.Equal(t, "/srv/ipa/ipa.db.server.lock", p)
}
