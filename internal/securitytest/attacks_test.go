package securitytest_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/catalog"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/plugins/builtin"
)

const (
	createTask     = `mutation($title: String!) { createTask(input: {title: $title}) { task { id } } }`
	allEvents      = `subscription { events(afterPosition: "0") { type } }`
	revokeToken    = `mutation($id: ID!) { revokeToken(id: $id) { token { id } } }`
	createAdmin    = `mutation { createToken(actorId: "mallory", role: ADMIN) { secret } }`
	viewerQuery    = `{ viewer { id role } }`
	revokedCloseWS = websocket.StatusCode(4403)
)

// Attack 1: a token revoked while its WebSocket and SSE connections stay
// open kept working on them, and a socket opened anonymously kept the local
// admin's rights after the first token shut the anonymous door. Now both
// close with 4403 within a second, and nothing more runs on them.
func TestAttack1RevokedTokenOnOpenSocket(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		s := start(t, backend, auth.ModeAuto, nil)

		// The anonymous local admin opens a socket, then someone creates
		// the first token.
		anon := s.dialWS(t, "")
		require.NoError(t, subscribe(anon, "who", viewerQuery, nil))
		require.Contains(t, string(next(t, anon, "who").Data), "ADMIN")
		var made struct{ CreateToken struct{ Secret string } }
		s.must(t, "", `mutation { createToken(actorId: "ada", role: ADMIN) { secret } }`, nil, &made)
		admin := made.CreateToken.Secret
		// The attacker keeps using the anonymous socket.
		_ = subscribe(anon, "steal", createAdmin, nil)
		require.Equal(t, revokedCloseWS, closeCode(t, anon))

		// An operator's token is revoked while its socket and stream are open.
		opTok, op := s.mint(t, "oscar", ipa.RoleOperator)
		ws := s.dialWS(t, op)
		require.NoError(t, subscribe(ws, "feed", allEvents, nil))
		stream := s.openSSE(t, op, allEvents)
		s.must(t, admin, revokeToken, map[string]any{"id": opTok.ID}, nil)
		_ = subscribe(ws, "make", createTask, map[string]any{"title": "after revoke"})
		require.Equal(t, revokedCloseWS, closeCode(t, ws))
		requireEnded(t, stream)

		require.Zero(t, s.taskCount(t, admin), "an operation ran on a dead credential")
		tokens, err := s.app.Store.ListTokens(context.Background())
		require.NoError(t, err)
		require.Len(t, tokens, 2, "the anonymous socket minted a token")
	})
}

// Attack 2: an operator became admin through exec: a task running
// `ipa token create --role admin` inherited the server's environment, so its
// IPA_DATABASE_URL, and minted an admin token into the server's database.
// Now exec needs ADMIN by default, and with --exec-role operator the command
// gets a clean environment: the token it mints is not the server's.
func TestAttack2OperatorToAdminThroughExec(t *testing.T) {
	bin := ipaBinary(t)
	dbURL := dbtest.URL(t, "sqlite")
	// The server is configured through its environment, as a service
	// manager would run it (its plugins get only a minimal environment, and
	// the command a clean one).
	t.Setenv("IPA_DATABASE_URL", dbURL)
	launch := supervisor.LauncherFunc(func(runtime string) (*exec.Cmd, error) {
		return exec.Command(bin, builtin.Args(runtime)...), nil
	})
	input := map[string]any{"title": "escalate", "runtime": "exec", "runtimeConfig": map[string]any{"command": []string{
		"sh", "-c", `echo "db=$IPA_DATABASE_URL"; exec "$0" token create --actor mallory --role admin`, bin}}}
	create := `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`

	t.Run("DefaultRole", func(t *testing.T) {
		s := startOn(t, dbURL, auth.ModeRequired, func(c *app.Config) { c.Launcher = launch })
		_, op := s.mint(t, "oscar", ipa.RoleOperator)
		refused(t, s.post(t, op, create, map[string]any{"in": input}), http.StatusOK, ipa.EFORBIDDEN)
		_, admin := s.mint(t, "ada", ipa.RoleAdmin)
		require.Zero(t, s.taskCount(t, admin))
		s.stop()
	})

	t.Run("ExecRoleOperator", func(t *testing.T) {
		cat, err := catalog.Discover(catalog.Options{EnableExec: true, ExecRole: ipa.RoleOperator}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		s := startOn(t, dbURL, auth.ModeRequired, func(c *app.Config) {
			c.Launcher, c.Runtimes = launch, cat.Runtimes()
		})
		_, op := s.mint(t, "oscar", ipa.RoleOperator)
		var out struct {
			CreateTask struct{ Task struct{ ID string } }
		}
		s.must(t, op, create, map[string]any{"in": input}, &out)
		id := out.CreateTask.Task.ID
		s.must(t, op, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": id}, nil)

		lines := podOutput(t, s, op, id)
		require.Contains(t, lines, "db=", "the command saw the server's database: %q", lines)
		// It minted a token, into a database of its own making.
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "ipa_") })
		require.GreaterOrEqualf(t, i, 0, "the command printed no secret: %q", lines)
		secret := lines[i]
		r := s.post(t, secret, viewerQuery, nil)
		refused(t, r, http.StatusUnauthorized, ipa.EUNAUTHENTICATED)
		tokens, err := s.app.Store.ListTokens(context.Background())
		require.NoError(t, err)
		for _, tok := range tokens {
			require.NotEqual(t, "mallory", tok.ActorID, "the command minted a token into the server's database")
		}
	})
}

// podOutput waits for the task's pod to end and returns what it printed.
func podOutput(t *testing.T, s *server, token, id string) []string {
	t.Helper()
	q := `query($id: ID!) { task(id: $id) { events(first: 200) { edges { node { type data } } } } }`
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out struct {
			Task struct {
				Events struct {
					Edges []struct {
						Node struct {
							Type string
							Data json.RawMessage
						}
					}
				}
			}
		}
		s.must(t, token, q, map[string]any{"id": id}, &out)
		var lines []string
		ended := false
		for _, e := range out.Task.Events.Edges {
			switch e.Node.Type {
			case "pod_output":
				var d struct{ Lines []struct{ Text string } }
				require.NoError(t, json.Unmarshal(e.Node.Data, &d))
				for _, l := range d.Lines {
					lines = append(lines, l.Text)
				}
			case "pod_stopped", "pod_crashed":
				ended = true
			}
		}
		if ended {
			return lines
		}
		require.Truef(t, time.Now().Before(deadline), "the pod did not end; events: %+v", out.Task.Events.Edges)
		time.Sleep(100 * time.Millisecond)
	}
}

// Attack 3: one request asked for 1.4 GB: 500 aliases of a full page of
// tasks, or a page of tasks with a page of events each. Now both are
// refused with COMPLEXITY_LIMIT_EXCEEDED before anything is read.
func TestAttack3OneRequestGigabytes(t *testing.T) {
	s := start(t, "sqlite", auth.ModeAuto, nil)
	s.must(t, "", createTask, map[string]any{"title": "something to read"}, nil)
	var aliases strings.Builder
	aliases.WriteString("{")
	for i := range 500 {
		fmt.Fprintf(&aliases, " a%d: tasks(first: 1000) { edges { node { id title description metadata } } }", i)
	}
	aliases.WriteString(" }")
	nested := `{ tasks(first: 1000) { edges { node { events(first: 1000) { edges { node { id type data } } } } } } }`
	for _, q := range []string{aliases.String(), nested} {
		r := s.post(t, "", q, nil)
		require.Lenf(t, r.Errors, 1, "%.300s", r.Raw)
		require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", r.Errors[0].code())
		require.Contains(t, []string{"", "null"}, string(r.Data), "the query ran")
	}
	require.Equal(t, 1, s.taskCount(t, ""), "the server still answers")
}

// Attack 4: DNS rebinding. A page on attacker.example, resolved to
// 127.0.0.1, posted to the open anonymous door with a matching Origin, so
// the same-origin checks passed. Now a request naming another host is
// refused with 403 FORBIDDEN while the door is open, and runs nothing.
func TestAttack4DNSRebinding(t *testing.T) {
	s := start(t, "sqlite", auth.ModeAuto, nil)
	_, port, _ := strings.Cut(strings.TrimPrefix(s.url, "http://"), ":")
	for _, host := range []string{"attacker.example", "attacker.example:" + port} {
		req := s.request(t, "", `mutation { createTask(input: {title: "rebound", runtime: "exec", runtimeConfig: {command: ["id"]}, autoStart: true}) { task { id } } }`, nil)
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		refused(t, send(t, req), http.StatusForbidden, ipa.EFORBIDDEN)
	}
	require.Zero(t, s.taskCount(t, ""), "a rebound request created a task")
}

// Attack 5: revoking the last token reopened the anonymous admin door (and
// a restart did too). Now the door stays shut once a token existed.
func TestAttack5RevokeLastTokenReopensDoor(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		s := start(t, backend, auth.ModeAuto, nil)
		tok, admin := s.mint(t, "ada", ipa.RoleAdmin)
		s.must(t, admin, revokeToken, map[string]any{"id": tok.ID}, nil)
		refused(t, s.post(t, "", createAdmin, nil), http.StatusUnauthorized, ipa.EUNAUTHENTICATED)
		time.Sleep(1100 * time.Millisecond) // past the one-second cache of the door
		refused(t, s.post(t, "", createAdmin, nil), http.StatusUnauthorized, ipa.EUNAUTHENTICATED)

		s.stop()
		restarted := startOn(t, s.dbURL, auth.ModeAuto, nil)
		refused(t, restarted.post(t, "", createAdmin, nil), http.StatusUnauthorized, ipa.EUNAUTHENTICATED)
		tokens, err := restarted.app.Store.ListTokens(context.Background())
		require.NoError(t, err)
		require.Len(t, tokens, 1, "an anonymous request minted a token")
	})
}

// Attack 6: the plugin allow-list hashed a file, then ran the path; swapping
// the file in between ran bytes nobody listed. Now discovery pins a private
// copy and the bytes hashed are the bytes run, whatever happens to the file.
func TestAttack6PluginSwapAfterCheck(t *testing.T) {
	const good, evil = "#!/bin/sh\necho good\n", "#!/bin/sh\necho evil\n"
	root := t.TempDir()
	plugins, allow := filepath.Join(root, "plugins"), filepath.Join(root, "allow.sha256")
	require.NoError(t, os.Mkdir(plugins, 0o755))
	sum := sha256.Sum256([]byte(good))
	require.NoError(t, os.WriteFile(allow, []byte(hex.EncodeToString(sum[:])+"  tool\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(plugins, "tool"), []byte(good), 0o755))
	opts := catalog.Options{PluginDir: plugins, SHA256File: allow, DataDir: filepath.Join(root, "data")}
	cat, err := catalog.Discover(opts, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	// The attacker swaps the checked file, by a rename as an installer
	// would, before the pod launches.
	tmp := filepath.Join(plugins, ".tool.new")
	require.NoError(t, os.WriteFile(tmp, []byte(evil), 0o755))
	require.NoError(t, os.Rename(tmp, filepath.Join(plugins, "tool")))
	cmd, err := cat.Command("tool")
	require.NoError(t, err)
	out, err := cmd.Output()
	require.NoError(t, err)
	require.Equal(t, "good\n", string(out), "bytes nobody listed ran")

	// A later discovery does not offer the swapped file at all.
	again, err := catalog.Discover(opts, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	_, err = again.Command("tool")
	require.Equal(t, ipa.EINVALID, ipa.ErrorCode(err))
}

// Attack 7: a body sent a byte at a time was never timed out, so a few
// slow clients held every connection. Now the body must arrive within the
// body read timeout, else 408 REQUEST_TIMEOUT and the connection closes.
func TestAttack7SlowBody(t *testing.T) {
	s := start(t, "sqlite", auth.ModeAuto, func(c *app.Config) {
		c.HTTP = httpserver.ServerOptions{ReadHeaderTimeout: time.Second, BodyReadTimeout: time.Second}
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	require.NoError(t, err)
	body := `{"query": "{ taskCount }"}`
	_, err = fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // one byte every half second, for as long as the server reads
		defer close(done)
		for i := range len(body) {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); _ = conn.Close(); <-done }()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	require.NoError(t, json.Unmarshal(raw, &r))
	refused(t, r, http.StatusRequestTimeout, httpserver.CodeRequestTimeout)
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	require.False(t, err != nil && errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open")
}

// Attack 8: /metrics answered anyone even with --auth required. Now it
// needs a token like /graphql.
func TestAttack8MetricsWithoutToken(t *testing.T) {
	s := start(t, "sqlite", auth.ModeRequired, nil)
	req, err := http.NewRequest(http.MethodGet, s.url+"/metrics", nil)
	require.NoError(t, err)
	refused(t, send(t, req), http.StatusUnauthorized, ipa.EUNAUTHENTICATED)

	_, viewer := s.mint(t, "prometheus", ipa.RoleViewer)
	req.Header.Set("Authorization", "Bearer "+viewer)
	r := send(t, req)
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Raw), "ipa_graphql_errors_total")
}

// Attack 9: some refusals came without a code (a mutation over GET, an
// unsupported content type, a wrong method), and 503s were not counted, so
// probing went unseen. Now each is JSON with extensions.code, and counted.
func TestAttack9UncodedErrors(t *testing.T) {
	s := start(t, "sqlite", auth.ModeRequired, nil)
	_, admin := s.mint(t, "ada", ipa.RoleAdmin)
	get, err := http.NewRequest(http.MethodGet, s.url+"/graphql?query="+
		strings.ReplaceAll(`mutation { createTask(input: {title: "over GET"}) { task { id } } }`, " ", "%20"), nil)
	require.NoError(t, err)
	get.Header.Set("Authorization", "Bearer "+admin)
	refused(t, send(t, get), http.StatusMethodNotAllowed, httpserver.CodeMethodNotAllowed)

	plain := s.request(t, admin, `{ taskCount }`, nil)
	plain.Header.Set("Content-Type", "text/plain")
	refused(t, send(t, plain), http.StatusUnsupportedMediaType, httpserver.CodeUnsupportedMediaType)

	put := s.request(t, admin, `{ taskCount }`, nil)
	put.Method = http.MethodPut
	refused(t, send(t, put), http.StatusMethodNotAllowed, httpserver.CodeMethodNotAllowed)
	require.Zero(t, s.taskCount(t, admin), "the mutation over GET ran")

	// The database goes away: 503 UNAVAILABLE, counted like every refusal.
	require.NoError(t, s.app.Store.Close())
	refused(t, s.post(t, admin, `{ taskCount }`, nil), http.StatusServiceUnavailable, ipa.EUNAVAILABLE)
	side := httptest.NewServer(httpserver.MetricsHandler(s.app.Registry))
	defer side.Close()
	req, err := http.NewRequest(http.MethodGet, side.URL+"/metrics", nil)
	require.NoError(t, err)
	text := string(send(t, req).Raw)
	for _, series := range []string{
		`ipa_graphql_errors_total{code="METHOD_NOT_ALLOWED"} 2`,
		`ipa_graphql_errors_total{code="UNSUPPORTED_MEDIA_TYPE"} 1`,
		`ipa_graphql_errors_total{code="UNAVAILABLE"} 1`,
	} {
		require.Contains(t, text, series+"\n")
	}
}
