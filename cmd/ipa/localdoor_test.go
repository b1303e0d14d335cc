package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/client"
)

// TestServeSocketAndLocalDoor: `ipa serve --socket PATH` makes a 0600 Unix
// socket and serves the API on it too: the CLI (`--server unix://PATH`),
// including a subscription, works there as the server's user without a
// token. Over TCP, the anonymous door refuses another OS user (curl run as
// nobody) with 401 UNAUTHENTICATED saying how to create a token, while the
// server's user keeps it. When the server stops, the socket file goes.
func TestServeSocketAndLocalDoor(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	dir, err := os.MkdirTemp("", "ipa-sock-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "ipa.sock")
	s := h.start("--socket", sock)

	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|0o600, fi.Mode())

	server := "unix://" + sock
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ipaBin, append(args, "--server", server)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "ipa %v: %s", args, out)
		return string(out)
	}
	out := cli("task", "create", "--title", "over the socket")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := lines[len(lines)-1]
	require.Contains(t, cli("task", "list", "-o", "json"), "over the socket")
	require.Contains(t, cli("task", "get", id), "over the socket")

	c, err := client.New(server, "", 30*time.Second)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, `subscription($id: ID!) { taskEvents(taskId: $id, afterVersion: 0) { type } }`, map[string]any{"id": id})
	require.NoError(t, err)
	first, err := sub.Next(ctx)
	require.NoError(t, err)
	require.Contains(t, string(first), "task_created")
	require.NoError(t, sub.Close())

	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("curl"); err == nil {
			body := `{"query":"mutation { createTask(input: {title: \"from nobody\"}) { task { id } } }"}`
			out, err := exec.Command("runuser", "-u", "nobody", "--", "curl", "-sS", "--noproxy", "*", "-m", "20",
				"-w", "\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", body, s.url+"/graphql").Output()
			require.NoError(t, err)
			require.True(t, strings.HasSuffix(string(out), "\n401"), "%s", out)
			require.Contains(t, string(out), `"UNAUTHENTICATED"`)
			require.Contains(t, string(out), "ipa token create --actor")
			require.NotContains(t, cli("task", "list", "-o", "json"), "from nobody")
		} else {
			t.Log("curl not installed: the other-user check is covered in internal/httpserver")
		}
	} else {
		t.Log("not root: cannot connect as another user; the other-user check needs root (runuser)")
	}
	// The server's own user over TCP, without a token, is still the
	// local admin.
	var viewer struct{ Viewer struct{ ID string } }
	s.must(t, `{ viewer { id } }`, nil, &viewer)
	require.Equal(t, "local", viewer.Viewer.ID)

	s.stop(t, 30*time.Second)
	_, err = os.Stat(sock)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket file outlived the server")
}
