package store

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func withDeps(ids ...string) taskOpt {
	return func(r *ipa.CreateTaskRequest) { r.Created.DependsOn = ids }
}

// TestDependents: the dependents of a task come from task_dependencies, kept
// with every write of the task row (create, a new list, close, reproject),
// filled from the depends_on column by migration 00010, and found by an
// index lookup.
func TestDependents(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			ctx := context.Background()
			a := createTask(t, s, "a", t0)
			b := createTask(t, s, "b", t0.Add(time.Second), withDeps(a.ID))
			c := createTask(t, s, "c", t0.Add(2*time.Second), withDeps(a.ID, b.ID))
			dependents := func(id string) []string {
				t.Helper()
				ids, err := s.Dependents(ctx, id)
				require.NoError(t, err)
				return ids
			}
			assert.Equal(t, []string{b.ID, c.ID}, dependents(a.ID))
			assert.Equal(t, []string{c.ID}, dependents(b.ID))
			assert.Empty(t, dependents(c.ID))

			// A new list replaces the old one.
			update(t, s, c.ID, t0.Add(time.Hour), ipa.TaskUpdatedData{DependsOn: &[]string{b.ID}})
			assert.Equal(t, []string{b.ID}, dependents(a.ID))
			assert.Equal(t, []string{c.ID}, dependents(b.ID))
			// A closed dependent is no longer one.
			appendEvents(t, s, b.ID, t0.Add(2*time.Hour), ipa.EventTaskCancelled)
			assert.Empty(t, dependents(a.ID))

			// A reprojection rebuilds the rows with the task rows.
			require.NoError(t, s.read.Exec(`DELETE FROM task_dependencies`).Error)
			require.NoError(t, s.rewrite(ctx, c.ID))
			assert.Equal(t, []string{c.ID}, dependents(b.ID))

			// The migration fills the table from the column.
			dir, err := fs.Sub(migrations, "migrations/"+s.dialect)
			require.NoError(t, err)
			dialect := goose.DialectSQLite3
			if s.postgres() {
				dialect = goose.DialectPostgres
			}
			db, err := s.read.DB()
			require.NoError(t, err)
			p, err := goose.NewProvider(dialect, db, dir, goose.WithDisableGlobalRegistry(true))
			require.NoError(t, err)
			_, err = p.DownTo(ctx, 9)
			require.NoError(t, err)
			_, err = s.Migrate(ctx)
			require.NoError(t, err)
			var n int64
			require.NoError(t, s.read.Raw(`SELECT COUNT(*) FROM task_dependencies`).Scan(&n).Error)
			assert.EqualValues(t, 2, n, "b on a, c on b")
			assert.Equal(t, []string{c.ID}, dependents(b.ID))
			assert.Empty(t, dependents(a.ID), "b is closed")

			// An index lookup by the dependency, never a scan of the tasks.
			plan := dependentsPlan(t, s, a.ID)
			if s.postgres() {
				assert.Contains(t, plan, "task_dependencies_pkey", plan)
				assert.NotContains(t, plan, "Seq Scan on tasks", plan)
			} else {
				assert.Regexp(t, `SEARCH d USING (COVERING )?INDEX sqlite_autoindex_task_dependencies_1 \(depends_on=\?\)`, plan)
				assert.NotContains(t, plan, "SCAN t", plan)
			}
		})
	}
}

// dependentsPlan returns the plan of the dependents query. PostgreSQL plans
// by statistics, and a table of three rows is cheaper to read whole: the
// plan is asked with sequential scans priced out, which shows the index the
// query can use (the one a realistic table gets).
func dependentsPlan(t *testing.T, s *Store, id string) string {
	t.Helper()
	var plan []string
	err := s.write.Transaction(func(tx *gorm.DB) error {
		if s.postgres() {
			if err := tx.Exec(`SET LOCAL enable_seqscan = off`).Error; err != nil {
				return err
			}
			return tx.Raw(`EXPLAIN `+dependentsQuery, id, maxDispatchScan).Scan(&plan).Error
		}
		var rows []struct{ Detail string }
		if err := tx.Raw(`EXPLAIN QUERY PLAN `+dependentsQuery, id, maxDispatchScan).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			plan = append(plan, r.Detail)
		}
		return nil
	})
	require.NoError(t, err)
	return strings.Join(plan, "\n")
}
