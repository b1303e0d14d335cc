package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// requireRootWith skips a test that needs to act as another user: only
// root can (runuser), and only with the tools it names installed.
func requireRootWith(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to connect as another user (runuser -u nobody)")
	}
	for _, tool := range append([]string{"runuser"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to connect as another user", tool)
		}
	}
}

// curlGraphQL posts query with curl, as user (root: the test's own user)
// and through the Unix socket when socket is set; extra are more curl
// arguments. It returns the status and the body.
func curlGraphQL(t *testing.T, user, url, socket, query string, extra ...string) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query})
	require.NoError(t, err)
	args := []string{"-sS", "--noproxy", "*", "-m", "20", "-o", "-", "-w", "\n%{http_code}",
		"-H", "Content-Type: application/json", "--data-binary", string(body)}
	if socket != "" {
		args = append(args, "--unix-socket", socket)
	}
	args = append(append(args, extra...), url+"/graphql")
	cmd := exec.Command("curl", args...)
	if user != "root" {
		cmd = exec.Command("runuser", append([]string{"-u", user, "--", "curl"}, args...)...)
	}
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("curl as %s: %v: %s", user, err, ee.Stderr)
	}
	require.NoError(t, err)
	i := strings.LastIndexByte(string(out), '\n')
	require.GreaterOrEqual(t, i, 0, "%s", out)
	var status int
	_, err = fmt.Sscan(string(out[i+1:]), &status)
	require.NoError(t, err, "%s", out)
	return status, out[:i]
}

// requireOtherUserRefused requires the 401 UNAUTHENTICATED a user other
// than the server's gets from the anonymous door, saying how to get a token.
func requireOtherUserRefused(t *testing.T, status int, body []byte) {
	t.Helper()
	require.Equal(t, http.StatusUnauthorized, status, "%s", body)
	var r gqlResponse
	require.NoError(t, json.Unmarshal(body, &r), "%s", body)
	require.Len(t, r.Errors, 1)
	apptest.RequireError(t, r.Errors[0], ipa.EUNAUTHENTICATED, "")
	require.Contains(t, r.Errors[0].Message, "ipa token create --actor")
	require.Contains(t, r.Errors[0].Message, "--role")
	require.Empty(t, r.Data)
}

// TestLocalDoorOnlyForServerUser: while no token exists, a loopback server
// admits requests without a token only from its own OS user: curl run as
// the server's user is the local admin, curl run as nobody gets 401
// UNAUTHENTICATED (HTTP and SSE), and nothing it asked for runs.
func TestLocalDoorOnlyForServerUser(t *testing.T) {
	requireRootWith(t, "curl")
	b := setup(t, "sqlite")
	n := b.anon().Count(t, nil)

	status, body := curlGraphQL(t, "root", b.URL, "", `{ viewer { id role } }`)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, string(body), `"local"`)

	status, body = curlGraphQL(t, "nobody", b.URL, "", `mutation { createTask(input: {title: "not mine"}) { task { id } } }`)
	requireOtherUserRefused(t, status, body)
	status, body = curlGraphQL(t, "nobody", b.URL, "", `subscription { events { type } }`, "-H", "Accept: text/event-stream")
	requireOtherUserRefused(t, status, body)
	require.Equal(t, n, b.anon().Count(t, nil))

	// The door itself is still open for the server's user.
	b.anon().CreateTitled(t, "mine")
}

// TestUnixSocket: a server also serving on a Unix socket makes it mode 0600,
// serves the API on it (the anonymous door included, for the server's user,
// found by SO_PEERCRED), and refuses another user who gets through the
// socket's mode. A socket left behind is replaced; one in use is refused.
func TestUnixSocket(t *testing.T) {
	b := setup(t, "sqlite")
	dir, err := os.MkdirTemp("", "ipa-socket-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755)) // nobody may reach the socket's file, not open it
	path := filepath.Join(dir, "ipa.sock")

	uln, err := httpserver.ListenUnix(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|httpserver.SocketMode, fi.Mode())
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httpserver.NewServer(b.App.Handler, httpserver.ServerOptions{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(httpserver.MergeListeners(tln, uln)) }()
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "the socket file outlived its server")
	})

	// Over the socket, with Go's client, as this process's user.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	resp, err := hc.Post("http://localhost/graphql", "application/json", strings.NewReader(`{"query":"{ viewer { id } }"}`))
	require.NoError(t, err)
	raw := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, raw)
	require.Contains(t, raw, `"local"`)
	// And over TCP, on the same server.
	resp, err = http.Post("http://"+tln.Addr().String()+"/graphql", "application/json", strings.NewReader(`{"query":"{ viewer { id } }"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, readAll(t, resp))

	_, err = httpserver.ListenUnix(path)
	require.ErrorContains(t, err, "in use")

	requireRootWith(t, "curl")
	status, body := curlGraphQL(t, "root", "http://localhost", path, `{ viewer { id } }`)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, string(body), `"local"`)
	// Mode 0600: nobody cannot even connect.
	out, err := exec.Command("runuser", "-u", "nobody", "--", "curl", "-sS", "-m", "20", "--unix-socket", path, "http://localhost/graphql").CombinedOutput()
	require.Error(t, err, "nobody connected to a 0600 socket: %s", out)
	// Past the mode, the peer check still refuses nobody.
	require.NoError(t, os.Chmod(path, 0o666))
	status, body = curlGraphQL(t, "nobody", "http://localhost", path, `{ viewer { id } }`)
	requireOtherUserRefused(t, status, body)
}

// TestListenUnixReplacesStaleSocket: a socket file whose server is gone is
// replaced; any other file at the path is left alone and refused.
func TestListenUnixReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	_, err = os.Stat(path)
	require.NoError(t, err, "the stale socket is there")
	ln, err = httpserver.ListenUnix(path)
	require.NoError(t, err)
	require.NoError(t, ln.Close())

	file := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(file, []byte("keep"), 0o600))
	_, err = httpserver.ListenUnix(file)
	require.ErrorContains(t, err, "not a socket")
	kept, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "keep", string(kept))
}
