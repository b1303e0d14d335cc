package securitytest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/pgtest"
)

// TestMain runs the tests, then removes the ipa binary if one was built
// and stops PostgreSQL if a test started it.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBinary()
	pgtest.Stop()
	os.Exit(code)
}

// closeWithin is the generous bound for "closed within 1 second".
const closeWithin = 4 * time.Second

// server is a full ipa server (package app, as ipa serve assembles it)
// serving on a loopback listener.
type server struct {
	app   *app.App
	url   string // http://127.0.0.1:port
	dbURL string
	stop  func()
}

// start serves a fresh database of backend.
func start(t *testing.T, backend string, mode auth.Mode, adjust func(*app.Config)) *server {
	t.Helper()
	return startOn(t, dbtest.URL(t, backend), mode, adjust)
}

// startOn serves the database at dbURL (a restart when another server
// served it before).
func startOn(t *testing.T, dbURL string, mode auth.Mode, adjust func(*app.Config)) *server {
	t.Helper()
	a := apptest.New(t, dbURL, mode, adjust)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	s := &server{app: a, url: "http://" + ln.Addr().String(), dbURL: dbURL}
	s.stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(s.stop)
	return s
}

// mint creates a token in the server's database and returns it and its secret.
func (s *server) mint(t *testing.T, actor string, role ipa.Role) (ipa.Token, string) {
	t.Helper()
	tok, secret, err := auth.Mint(context.Background(), s.app.Store, actor, role, time.Now())
	require.NoError(t, err)
	return tok, secret
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { c, _ := e.Extensions["code"].(string); return c }

// reply is an HTTP response to a GraphQL request.
type reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// send sends req and decodes the JSON body, if any.
func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		require.NoErrorf(t, json.Unmarshal(raw, &r), "body: %s", raw)
	}
	return r
}

// request builds a POST of query and vars to /graphql with token ("" for none).
func (s *server) request(t *testing.T, token, query string, vars map[string]any) *http.Request {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// post sends query as token and returns the reply, whatever it is.
func (s *server) post(t *testing.T, token, query string, vars map[string]any) reply {
	t.Helper()
	return send(t, s.request(t, token, query, vars))
}

// must sends query as token, requires success and decodes data into out.
func (s *server) must(t *testing.T, token, query string, vars map[string]any, out any) {
	t.Helper()
	r := s.post(t, token, query, vars)
	require.Equalf(t, http.StatusOK, r.Status, "%s", r.Raw)
	require.Emptyf(t, r.Errors, "%s", r.Raw)
	if out != nil {
		require.NoError(t, json.Unmarshal(r.Data, out))
	}
}

// refused requires r to be refused with status and, for every error, code.
func refused(t *testing.T, r reply, status int, code string) {
	t.Helper()
	require.Equalf(t, status, r.Status, "%s", r.Raw)
	require.Containsf(t, r.Header.Get("Content-Type"), "application/json", "%s", r.Raw)
	require.NotEmptyf(t, r.Errors, "%s", r.Raw)
	for _, e := range r.Errors {
		require.Equalf(t, code, e.code(), "%s", r.Raw)
	}
}

// taskCount is how many tasks the server holds, read with token.
func (s *server) taskCount(t *testing.T, token string) int {
	t.Helper()
	var out struct{ TaskCount int }
	s.must(t, token, `{ taskCount }`, nil, &out)
	return out.TaskCount
}

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialWS opens a graphql-transport-ws connection with token ("" for none)
// and waits for its connection_ack.
func (s *server) dialWS(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	init := map[string]any{}
	if token != "" {
		init["Authorization"] = "Bearer " + token
	}
	payload, err := json.Marshal(init)
	require.NoError(t, err)
	require.NoError(t, wsjson.Write(ctx, conn, wsMsg{Type: "connection_init", Payload: payload}))
	var ack wsMsg
	require.NoError(t, wsjson.Read(ctx, conn, &ack))
	require.Equal(t, "connection_ack", ack.Type)
	return conn
}

// subscribe starts operation id on conn.
func subscribe(conn *websocket.Conn, id, query string, vars map[string]any) error {
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return wsjson.Write(ctx, conn, wsMsg{ID: id, Type: "subscribe", Payload: payload})
}

// wsResult is the payload of a "next" message.
type wsResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// next reads conn until the first "next" message of operation id.
func next(t *testing.T, conn *websocket.Conn, id string) wsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var m wsMsg
		require.NoError(t, wsjson.Read(ctx, conn, &m))
		if m.ID == id && m.Type == "next" {
			var r wsResult
			require.NoError(t, json.Unmarshal(m.Payload, &r))
			return r
		}
	}
}

// closeCode reads conn until the server closes it and returns the close
// code; every result it delivers on the way must be an error.
func closeCode(t *testing.T, conn *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
	defer cancel()
	for {
		var m wsMsg
		err := wsjson.Read(ctx, conn, &m)
		if err != nil {
			require.Falsef(t, errors.Is(err, context.DeadlineExceeded), "the socket was not closed within %s", closeWithin)
			return websocket.CloseStatus(err)
		}
		if m.Type == "next" {
			var r wsResult
			require.NoError(t, json.Unmarshal(m.Payload, &r))
			require.NotEmptyf(t, r.Errors, "a result after the credential ended: %s", m.Payload)
		}
	}
}

// openSSE starts query as a Server-Sent Events stream with token and returns
// a channel closed when the server ends the stream.
func (s *server) openSSE(t *testing.T, token, query string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := s.request(t, token, query, nil).WithContext(ctx)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	t.Cleanup(func() { cancel(); <-ended })
	return ended
}

// requireEnded requires the stream to end within closeWithin.
func requireEnded(t *testing.T, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(closeWithin):
		t.Fatalf("the stream did not end within %s", closeWithin)
	}
}

// The ipa binary, built on first use: the attacks that need real plugin
// processes launch it as ipa serve does.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func ipaBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "ipa-security-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "ipa")
		build := exec.Command("go", "build", "-o", binPath, "github.com/ipa-dev/ipa/cmd/ipa")
		build.Env = append(os.Environ(), "GOFLAGS=") // no -race: plugins start fast
		if out, err := build.CombinedOutput(); err != nil {
			binErr = errors.Join(err, errors.New(string(out)))
		}
	})
	require.NoError(t, binErr, "go build ./cmd/ipa")
	return binPath
}

func removeBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}
