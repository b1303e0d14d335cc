package store

import (
	"context"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Exported for the benchmarks in package store_test, which compare the
// store with the layers above it in one run.

// BenchDialect opens a fresh store of one dialect.
type BenchDialect = dialect

// Name and Open give the external package access to a dialect.
func (d dialect) Name() string                                 { return d.name }
func (d dialect) Open(tb testing.TB) *Store                    { return d.open(tb) }
func Dialects() []BenchDialect                                 { return dialects() }
func RunBench(b *testing.B, par int, fn func() error)          { run(b, par, fn) }
func RawCreate(ctx context.Context, s *Store, pos int64) error { return rawCreate(ctx, s, pos) }
func NewCreateRequest() ipa.CreateTaskRequest                  { return createReq() }

// SeedDue seeds n open tasks whose deadlines have passed; RawSweep is the
// floor the deadline sweep is measured against.
func SeedDue(tb testing.TB, s *Store, n int) { seedDue(tb, s, n) }
func RawSweep(ctx context.Context, s *Store, now time.Time) (int, error) {
	return rawSweep(ctx, s, now)
}
func BenchLarge() bool { return benchLarge() }
