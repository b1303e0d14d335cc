package httpserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/httpserver"
)

// shortTimeouts make a slow client visible within seconds. The database
// plays no part in these tests, so they run on SQLite only.
var shortTimeouts = httpserver.ServerOptions{
	ReadHeaderTimeout: time.Second,
	BodyReadTimeout:   time.Second,
	WriteTimeout:      time.Second,
}

// trickle opens a raw connection to b, sends head at once, then tail one
// byte every two seconds until the test ends or the server stops reading.
// It returns the connection and its reader.
func trickle(t *testing.T, b *bundle, head, tail string) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(b.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = io.WriteString(conn, strings.ReplaceAll(head, "HOST", addr))
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := range len(tail) {
			if _, err := conn.Write([]byte{tail[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = conn.Close()
		<-done
	})
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	return conn, bufio.NewReader(conn)
}

// requireClosed requires the server to have closed the connection: a read
// ends, and not because the client's own deadline passed.
func requireClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	require.Falsef(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open: %v", err)
}

func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", apptest.WithServerOptions(shortTimeouts))
	body := `{"query": "{ taskCount }"}`
	for _, tc := range []struct {
		name, head, tail string
	}{
		{"ContentLength", fmt.Sprintf("POST /graphql HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)), body},
		{"Chunked", "POST /graphql HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)},
		{"SSE", fmt.Sprintf("POST /graphql HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: %d\r\n\r\n", len(body)), body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := range 3 { // several at once, as a slow-loris client would
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					_, br := trickle(t, b, tc.head, tc.tail)
					resp, err := http.ReadResponse(br, nil)
					require.NoError(t, err)
					raw, err := io.ReadAll(resp.Body)
					require.NoError(t, err)
					require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, "%s", raw)
					requireCoded(t, resp.Header, raw, httpserver.CodeRequestTimeout)
					requireClosed(t, br)
				})
			}
		})
	}

	t.Run("Headers", func(t *testing.T) {
		t.Parallel()
		_, br := trickle(t, b, "POST /graphql HTTP/1.1\r\n", "Host: localhost\r\nContent-Type: application/json\r\n\r\n")
		requireClosed(t, br)
	})
}

// requireCoded requires a JSON error body whose every error has code.
func requireCoded(t *testing.T, h http.Header, raw []byte, code string) []gqlError {
	t.Helper()
	require.Contains(t, h.Get("Content-Type"), "application/json")
	var out struct{ Errors []gqlError }
	require.NoErrorf(t, json.Unmarshal(raw, &out), "body: %s", raw)
	require.NotEmptyf(t, out.Errors, "body: %s", raw)
	for _, e := range out.Errors {
		require.Equalf(t, code, e.Code(), "body: %s", raw)
		require.NotEmpty(t, e.Message)
		require.NotEmpty(t, e.Extensions["correlationId"], "body: %s", raw)
	}
	return out.Errors
}

// An ordinary response that the client does not read is abandoned at the
// write deadline; subscriptions over WebSocket and SSE outlive it.
func TestWriteDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", apptest.WithServerOptions(shortTimeouts))
	c := b.anon()

	t.Run("OrdinaryResponse", func(t *testing.T) {
		// Far more than the loopback socket buffers hold (12 MB, under the
		// response budget): the server's write blocks until the client
		// reads, which it does only after the deadline.
		desc := strings.Repeat("d", 60_000)
		for i := range 100 {
			c.Create(t, map[string]any{"title": fmt.Sprintf("big %d", i), "description": desc})
		}
		list := `tasks(first: 100) { edges { node { id description } } }`
		query := fmt.Sprintf(`{ a: %s b: %s }`, list, list)
		reqBody, err := json.Marshal(map[string]any{"query": query})
		require.NoError(t, err)
		_, br := trickle(t, b, fmt.Sprintf("POST /graphql HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			len(reqBody), reqBody), "")
		time.Sleep(3 * time.Second)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			n, rerr := io.Copy(io.Discard, resp.Body)
			err = rerr
			require.Errorf(t, err, "the whole response (%d bytes) arrived after the write deadline", n)
		}
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the client timed out, the server did not: %v", err)
	})

	// net/http also clears a connection's deadlines when it hands it over
	// to the WebSocket; this holds the whole path to its promise.
	t.Run("WebSocket", func(t *testing.T) {
		tk := c.CreateTitled(t, "watched over WebSocket")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql",
			&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		require.NoError(t, err)
		defer conn.CloseNow()
		send := func(v any) {
			raw, err := json.Marshal(v)
			require.NoError(t, err)
			require.NoError(t, conn.Write(ctx, websocket.MessageText, raw))
		}
		next := func() string {
			for {
				_, raw, err := conn.Read(ctx)
				require.NoError(t, err)
				switch {
				case bytes.Contains(raw, []byte(`"type":"ping"`)):
					send(map[string]any{"type": "pong"})
				case bytes.Contains(raw, []byte(`"type":"next"`)), bytes.Contains(raw, []byte(`"type":"connection_ack"`)):
					return string(raw)
				default:
					t.Fatalf("unexpected message: %s", raw)
				}
			}
		}
		send(map[string]any{"type": "connection_init", "payload": map[string]any{}})
		require.Contains(t, next(), "connection_ack")
		send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
			"query":     `subscription($id: ID!) { taskEvents(taskId: $id, afterVersion: 0) { type version } }`,
			"variables": map[string]any{"id": tk.ID}}})
		require.Contains(t, next(), `"version":1`)

		time.Sleep(3 * time.Second) // three write timeouts
		c.Must(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}, nil)
		require.Contains(t, next(), `"version":2`)
	})

	t.Run("SSE", func(t *testing.T) {
		tk := c.CreateTitled(t, "watched over SSE")
		reqBody, err := json.Marshal(map[string]any{
			"query":     `subscription($id: ID!) { taskEvents(taskId: $id, afterVersion: 0) { type version } }`,
			"variables": map[string]any{"id": tk.ID}})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/graphql", bytes.NewReader(reqBody))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		resp, err := b.Srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		sc := bufio.NewScanner(resp.Body)
		next := func() string {
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
					return data
				}
			}
			require.NoError(t, sc.Err())
			t.Fatal("the stream ended")
			return ""
		}
		require.Contains(t, next(), `"version":1`)

		time.Sleep(3 * time.Second) // three write timeouts, and past the body deadline
		c.Must(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}, nil)
		require.Contains(t, next(), `"version":2`)
	})
}
