// Package dbtest is the one place that decides which databases the tests run
// on: a fresh SQLite file always, and a fresh database in a throwaway
// PostgreSQL cluster (package pgtest) whenever one can be started. Test
// packages call Main from TestMain and URL or ForEach from their setup.
package dbtest

import (
	"path/filepath"
	"testing"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

// Backends are the databases every database test runs on.
var Backends = []string{"sqlite", "postgres"}

// Main runs the package's tests and stops the PostgreSQL cluster afterwards.
func Main(m *testing.M) { pgtest.Main(m) }

// URL returns the URL of a new, empty database of backend for tb, removed
// when tb ends. A PostgreSQL test is skipped when no cluster can be started
// (failed when IPA_REQUIRE_POSTGRES=1).
func URL(tb testing.TB, backend string) string {
	tb.Helper()
	switch backend {
	case "sqlite":
		return "sqlite://" + filepath.Join(tb.TempDir(), "db", "ipa.db")
	case "postgres":
		return pgtest.Start(tb)
	}
	tb.Fatalf("dbtest: unknown backend %q", backend)
	return ""
}

// ForEach runs fn as a parallel subtest per backend.
func ForEach(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}
