package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/supervisor"
)

// While the server is built, the bound listener answers: alive, not ready,
// everything else refused with UNAVAILABLE; once open, the server's handler
// answers everything.
func TestGateBeforeAndAfterOpen(t *testing.T) {
	g := newGate(10 * time.Millisecond) // the wait for the build runs out
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	code, body := get("/graphql")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, `"code":"UNAVAILABLE"`)

	g.open(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "served") }))
	for _, p := range []string{"/healthz", "/readyz", "/graphql"} {
		code, body := get(p)
		require.Equal(t, http.StatusOK, code, p)
		require.Equal(t, "served", body, p)
	}
}

// A server that cannot be built (here: its store is unreachable) fails Run
// and lets go of the listener it was given.
func TestRunFailsAndReleasesTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	cfg := Config{
		// Nothing listens on port 1: the store cannot be opened.
		DatabaseURL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		Launcher:    supervisor.LauncherFunc(nil),
		Logger:      slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = Run(ctx, cfg, ln, func(*App) { t.Error("ready called for a server that was not built") })
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "open database"), "%v", err)
	// The port is free again.
	again, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	again.Close()
}
