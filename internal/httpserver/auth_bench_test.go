package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// What authenticating costs a writer on an open socket. Run with
//
//	go test -run '^$' -bench 'CreateTaskAuth' -benchtime 2s -count 3 ./internal/httpserver/

const benchCreate = `mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }`

// BenchmarkCreateTaskAuth creates tasks as an operator token (--auth
// required): over HTTP, where every request authenticates, and over
// graphql-transport-ws, mutations on an open socket, with the credential
// check before each operation on and off. One client, or 16 at once (16
// sockets, or 16 HTTP clients), on one server per database.
func BenchmarkCreateTaskAuth(b *testing.B) {
	for _, backend := range dbtest.Backends {
		b.Run(backend, func(b *testing.B) {
			s := setup(b, backend, apptest.WithAuthMode(auth.ModeRequired))
			_, secret, err := auth.Mint(context.Background(), s.Store, "bench", ipa.RoleOperator, time.Now())
			require.NoError(b, err)
			tr := s.Srv.Client().Transport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 64
			hc := &http.Client{Transport: tr}

			for _, clients := range []int{1, 16} {
				b.Run(fmt.Sprintf("http/clients=%d", clients), func(b *testing.B) {
					runClients(b, clients, func() (func(context.Context) error, func()) {
						return func(ctx context.Context) error { return postAs(ctx, hc, s.URL, secret) }, func() {}
					})
				})
			}
			for _, recheck := range []string{"on", "off"} {
				for _, clients := range []int{1, 16} {
					b.Run(fmt.Sprintf("ws/recheck=%s/sockets=%d", recheck, clients), func(b *testing.B) {
						defer httpserver.SkipSocketRecheck(recheck == "off")()
						runClients(b, clients, func() (func(context.Context) error, func()) {
							ws, err := dialOps(context.Background(), s.URL, secret)
							require.NoError(b, err)
							return ws.createTask, ws.close
						})
					})
				}
			}
		})
	}
}

// runClients runs b.N operations spread over n clients, each made by newClient
// before the timer starts and closed after it stops.
func runClients(b *testing.B, n int, newClient func() (op func(context.Context) error, closeClient func())) {
	ops := make([]func(context.Context) error, n)
	for i := range ops {
		op, closeClient := newClient()
		defer closeClient()
		ops[i] = op
	}
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	b.ResetTimer()
	for _, op := range ops {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := op(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	require.NoError(b, <-errs)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// postAs creates one task over HTTP with token.
func postAs(ctx context.Context, hc *http.Client, url, token string) error {
	body, _ := json.Marshal(map[string]any{"query": benchCreate, "variables": map[string]any{"t": "over http"}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(raw, []byte(`"errors"`)) {
		return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	return nil
}

// wsOps is one authenticated graphql-transport-ws socket sending mutations
// one after another.
type wsOps struct {
	conn *websocket.Conn
	n    int
}

// dialOps opens a socket authenticated with token in connection_init.
func dialOps(ctx context.Context, url, token string) (*wsOps, error) {
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	if err := conn.Write(ctx, websocket.MessageText, init); err != nil {
		conn.CloseNow()
		return nil, err
	}
	if _, raw, err := conn.Read(ctx); err != nil || !bytes.Contains(raw, []byte(`"connection_ack"`)) {
		conn.CloseNow()
		return nil, fmt.Errorf("no connection_ack: %s %v", raw, err)
	}
	return &wsOps{conn: conn}, nil
}

// createTask sends one createTask and waits for its result and completion.
func (w *wsOps) createTask(ctx context.Context) error {
	w.n++
	id := strconv.Itoa(w.n)
	msg, _ := json.Marshal(map[string]any{"id": id, "type": "subscribe",
		"payload": map[string]any{"query": benchCreate, "variables": map[string]any{"t": "over ws"}}})
	if err := w.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	for {
		_, raw, err := w.conn.Read(ctx)
		if err != nil {
			return err
		}
		var m struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		switch {
		case m.Type == "ping":
			if err := w.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`)); err != nil {
				return err
			}
		case m.ID != id:
		case m.Type == "next" && bytes.Contains(m.Payload, []byte(`"errors"`)), m.Type == "error":
			return fmt.Errorf("createTask over the socket: %s", raw)
		case m.Type == "complete":
			return nil
		}
	}
}

func (w *wsOps) close() { _ = w.conn.Close(websocket.StatusNormalClosure, "") }
