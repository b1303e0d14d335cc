package httpserver

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Which requests are SSE streams, decided once (isSSE) for authentication,
// GET caching and the write deadline alike: a POST asking for
// text/event-stream, as gqlgen's SSE transport decides. A GET with the same
// Accept header is an ordinary query, answered once; it used to be exempt
// from the write deadline (a separate check looked at the header alone).
func TestIsSSE(t *testing.T) {
	for _, c := range []struct {
		method, accept string
		want           bool
	}{
		{http.MethodPost, "text/event-stream", true},
		{http.MethodPost, "application/json, text/event-stream", true},
		{http.MethodPost, "application/json", false},
		{http.MethodGet, "text/event-stream", false},
		{http.MethodGet, "", false},
	} {
		r, err := http.NewRequest(c.method, "/graphql", nil)
		require.NoError(t, err)
		r.Header.Set("Accept", c.accept)
		require.Equal(t, c.want, isSSE(r), "%s Accept: %s", c.method, c.accept)
	}
}

// The write deadline over a real socket: a handler that answers after the
// write timeout has passed reaches the client only when the request is an
// SSE stream (POST); a GET asking for text/event-stream is held to the
// deadline like any query.
func TestWriteDeadlineExemptsOnlySSEStreams(t *testing.T) {
	const timeout = 50 * time.Millisecond
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * timeout) // well past the deadline, however slow the machine
		_, _ = io.WriteString(w, "late answer")
	})
	srv := NewServer(handler, ServerOptions{WriteTimeout: timeout})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	url := "http://" + ln.Addr().String() + "/graphql"
	client := &http.Client{Timeout: time.Minute}

	do := func(method string) (string, error) {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"query":"subscription { events { id } }"}`)
		}
		req, err := http.NewRequest(method, url, body)
		require.NoError(t, err)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	got, err := do(http.MethodPost)
	require.NoError(t, err, "an SSE stream has no write deadline")
	require.Equal(t, "late answer", got)

	got, err = do(http.MethodGet)
	require.True(t, err != nil || got != "late answer",
		"a GET query asking for text/event-stream outlived the write deadline")
}
