package httpserver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// fromAddr returns a client whose connections come from the loopback
// address local (Linux answers on all of 127.0.0.0/8).
func fromAddr(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

func postFrom(t *testing.T, hc *http.Client, url, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader([]byte(`{"query":"{ viewer { id } }"}`)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, readAll(t, resp)
}

// TestBadTokensAreRateLimited: made-up tokens, a new one for each request,
// do not each get a fresh budget: every failed authentication costs the
// remote address five requests, so a burst of them is answered 429
// RATE_LIMITED with Retry-After before long, without a token lookup. A token
// that has authenticated keeps its own budget, even from that address, and
// a client from another address is not affected. The limiter keeps no state
// in the database: SQLite only.
func TestBadTokensAreRateLimited(t *testing.T) {
	b := setup(t, "sqlite", apptest.WithAuthMode(auth.ModeRequired), apptest.WithRateLimit(0.2, 10))
	_, alice := b.Mint(t, "alice", ipa.RoleViewer)
	_, bob := b.Mint(t, "bob", ipa.RoleViewer)
	attacker, other := fromAddr("127.0.0.1"), fromAddr("127.0.0.2")

	status, _, raw := postFrom(t, attacker, b.URL, alice)
	require.Equal(t, http.StatusOK, status, raw)

	var unauthorized, limited, firstLimited int
	for i := range 20 {
		status, header, raw := postFrom(t, attacker, b.URL, fmt.Sprintf("ipa_made-up-%d", i))
		switch status {
		case http.StatusUnauthorized:
			require.Zero(t, limited, "a 401 after a 429: the guessing went on")
			unauthorized++
		case http.StatusTooManyRequests:
			if limited == 0 {
				firstLimited = i + 1
			}
			limited++
			require.Contains(t, raw, "RATE_LIMITED")
			require.NotEmpty(t, header.Get("Retry-After"))
		default:
			t.Fatalf("made-up token %d: status %d: %s", i, status, raw)
		}
	}
	// A burst of 10 and 5 a failure: the third guess is refused.
	require.Equal(t, 2, unauthorized)
	require.Equal(t, 3, firstLimited)
	require.Equal(t, 18, limited)

	// The token that authenticated before still spends only its own budget.
	status, _, raw = postFrom(t, attacker, b.URL, alice)
	require.Equal(t, http.StatusOK, status, raw)
	// A client from another address, with a token new to the server, is
	// not affected.
	status, _, raw = postFrom(t, other, b.URL, bob)
	require.Equal(t, http.StatusOK, status, raw)
}

// TestFailedAuthLogIsLimited: a flood of bad tokens writes a bounded number
// of audit lines; the next line after a pause says how many were left out.
func TestFailedAuthLogIsLimited(t *testing.T) {
	logs := &syncBuffer{}
	b := setup(t, "sqlite", apptest.WithAuthMode(auth.ModeRequired), apptest.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	hc := fromAddr("127.0.0.1")
	const flood = 60
	for i := range flood {
		status, _, raw := postFrom(t, hc, b.URL, fmt.Sprintf("ipa_made-up-%d", i))
		require.Equal(t, http.StatusUnauthorized, status, raw)
	}
	logged := len(logs.records(t, "authentication failed"))
	require.Less(t, logged, flood, "every failure was logged")
	require.GreaterOrEqual(t, logged, 20, "the first failures are logged")

	// After a pause a line is written again, with the count left out.
	require.Eventually(t, func() bool {
		status, _, _ := postFrom(t, hc, b.URL, "ipa_after-the-pause")
		require.Equal(t, http.StatusUnauthorized, status)
		recs := logs.records(t, "authentication failed")
		last := recs[len(recs)-1]
		n, _ := last["suppressed"].(float64)
		return len(recs) > logged && n > 0 && strings.HasPrefix(last["remote_addr"].(string), "127.0.0.1:")
	}, 10*time.Second, 300*time.Millisecond)
}

// TestBadSocketInitsAreRateLimited: a bad token in a WebSocket's
// connection_init costs the upgrade's address as a failed HTTP
// authentication does, so the next upgrades are refused with 429.
func TestBadSocketInitsAreRateLimited(t *testing.T) {
	b := setup(t, "sqlite", apptest.WithAuthMode(auth.ModeRequired), apptest.WithRateLimit(0.2, 10))
	var refused *http.Response
	for i := 0; i < 5 && refused == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql",
			&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err != nil {
			cancel()
			require.NotNil(t, resp, "dial: %v", err)
			refused = resp
			break
		}
		require.NoError(t, wsjson.Write(ctx, conn, wsMsg{Type: "connection_init",
			Payload: []byte(fmt.Sprintf(`{"Authorization": "Bearer ipa_made-up-%d"}`, i))}))
		for err == nil {
			var m wsMsg
			err = wsjson.Read(ctx, conn, &m)
		}
		require.Equal(t, websocket.StatusCode(4401), websocket.CloseStatus(err))
		_ = conn.CloseNow()
		cancel()
	}
	require.NotNil(t, refused, "bad connection_inits never cost the address anything")
	require.Equal(t, http.StatusTooManyRequests, refused.StatusCode)
	require.NotEmpty(t, refused.Header.Get("Retry-After"))
}
