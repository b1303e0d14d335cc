// Package apptest builds servers for tests and benchmarks through the same
// assembly as ipa serve (package app).
package apptest

import (
	"context"
	"log/slog"
	"os/exec"
	"testing"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/catalog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// NoLauncher refuses every pod start with UNAVAILABLE/RUNTIME_FAILED: for
// servers assembled in a test binary, which cannot re-execute itself as a
// plugin.
var NoLauncher = supervisor.LauncherFunc(func(runtime string) (*exec.Cmd, error) {
	return nil, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "This server cannot launch runtime %q.", runtime)
})

// TestSecretKey seals webhook secrets in every server New builds: one key,
// as servers sharing a database must have.
var TestSecretKey = []byte("ipa test key: 32 bytes, not rnd!")

// New builds a server on databaseURL for a test or benchmark: the
// built-in runtimes, pods refused (NoLauncher) unless cfg says otherwise,
// loopback, quiet logs. Adjust sets any other field before it is built. The
// server is closed when tb ends.
func New(tb testing.TB, databaseURL string, mode auth.Mode, adjust func(*app.Config)) *app.App {
	tb.Helper()
	cfg := app.Config{
		DatabaseURL: databaseURL,
		Runtimes:    builtinRuntimes(tb),
		Launcher:    NoLauncher,
		DataDir:     tb.TempDir(),
		InstanceID:  tb.Name(),
		AuthMode:    mode,
		Loopback:    true,
		Logger:      slog.New(slog.DiscardHandler),
		SecretKey:   func() ([]byte, error) { return TestSecretKey, nil },
	}
	if adjust != nil {
		adjust(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("assemble server: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// builtinRuntimes are the built-in runtimes, as ipa serve offers them.
func builtinRuntimes(tb testing.TB) []ipa.Runtime {
	cat, err := catalog.Discover(catalog.Options{EnableExec: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("runtime catalog: %v", err)
	}
	return cat.Runtimes()
}
