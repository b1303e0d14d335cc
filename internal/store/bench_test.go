package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// seedTasks bulk-inserts n streams and task rows (no events: only the
// projection is read by the list benchmarks) with multi-row INSERTs in
// one transaction. Statuses cycle through all four; created_at increases;
// updated_at is created_at plus up to an hour, with ties.
func seedTasks(tb testing.TB, s *Store, n int) { seedTasksWith(tb, s, n, seedOptions{}) }

// seedRow is what seedOptions.row may change in a seeded task: status
// (closed ones get closed_at), parent id and deadline (nil: none, else
// nanoseconds).
type seedRow struct {
	status   ipa.TaskStatus
	parent   any
	deadline any
	closedAt any
}

// seedOptions adjusts seedTasks: row changes the k-th row after the
// defaults are set; events is how many events each stream gets (the first
// task_created, the others phase changes), with positions below the
// store's counter.
type seedOptions struct {
	row    func(k int, created int64, r *seedRow)
	events int
}

// seedTasksWith is seedTasks with per-row changes and events.
func seedTasksWith(tb testing.TB, s *Store, n int, opt seedOptions) {
	tb.Helper()
	db := s.rawDB()
	ctx := context.Background()
	// Build the indexes after the rows (a sort instead of a million random
	// b-tree inserts each), as a bulk load would.
	indexes := taskIndexes(tb, s)
	for name := range indexes {
		_, err := db.ExecContext(ctx, "DROP INDEX "+name)
		require.NoError(tb, err)
	}
	if !s.postgres() {
		_, err := db.ExecContext(ctx, "PRAGMA cache_size = -262144") // 256 MiB on the writer connection
		require.NoError(tb, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(tb, err)
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	policy, _ := json.Marshal(ipa.DefaultRestartPolicy())
	statuses := []ipa.TaskStatus{ipa.StatusActive, ipa.StatusInactive, ipa.StatusCompleted, ipa.StatusCancelled}
	rng := rand.New(rand.NewPCG(1, 2))
	// Rows per INSERT. The SQLite driver binds parameters in time quadratic
	// in their number per statement, so SQLite gets one prepared single-row
	// statement per table instead.
	batch := 1000
	var stmts [4]*sql.Stmt
	const eventCols = "position, id, stream_id, version, type, data, actor_id, occurred_at"
	var pos int64 // the last position taken
	require.NoError(tb, tx.QueryRowContext(ctx, "SELECT last FROM positions WHERE id = 1").Scan(&pos))
	if !s.postgres() {
		batch = 1
		qs := []string{
			"INSERT INTO streams (id, type, version, created_at, updated_at) VALUES " + s.placeholders(0, 5),
			"INSERT INTO tasks (" + taskColumns + ") VALUES " + s.placeholders(0, taskColumnCount),
			"INSERT INTO task_labels (" + labelColumns + ") VALUES " + s.placeholders(0, labelColumnCount) + "," + s.placeholders(labelColumnCount, labelColumnCount),
		}
		if opt.events > 0 {
			qs = append(qs, "INSERT INTO events ("+eventCols+") VALUES "+s.placeholders(0, 8))
		}
		for i, q := range qs {
			stmts[i], err = tx.PrepareContext(ctx, q)
			require.NoError(tb, err)
			defer stmts[i].Close()
		}
	}
	for start := 0; start < n; start += batch {
		m := min(batch, n-start)
		var streams, tasks, labels, events strings.Builder
		eargs := make([]any, 0, m*opt.events*8)
		sargs := make([]any, 0, m*5)
		targs := make([]any, 0, m*taskColumnCount)
		largs := make([]any, 0, m*2*labelColumnCount)
		for i := range m {
			k := start + i
			id := uuid.NewString()
			created := t0.Add(time.Duration(k) * time.Millisecond).UnixNano()
			updated := created + rng.Int64N(int64(time.Hour))/1000*1000
			title := fmt.Sprintf("task %d", rng.IntN(n))
			if i > 0 {
				streams.WriteString(",")
				tasks.WriteString(",")
			}
			version := max(1, opt.events)
			streams.WriteString(s.placeholders(len(sargs), 5))
			sargs = append(sargs, id, ipa.StreamTypeTask, version, created, updated)
			tasks.WriteString(s.placeholders(len(targs), taskColumnCount))
			// One task in three is a child of one of 200 parents, one in five
			// has a deadline, one in 50 a crashed pod; each has a team label
			// (one of 100) and a shard label (one of 1000) in labels and in
			// task_labels.
			r := seedRow{status: statuses[k%4]}
			if k%3 == 0 {
				r.parent = seedParents[k%len(seedParents)]
			}
			if k%5 == 0 {
				r.deadline = created + int64(time.Hour)
			}
			if opt.row != nil {
				opt.row(k, created, &r)
			}
			pod := ipa.PodStopped
			if k%50 == 0 {
				pod = ipa.PodCrashed
			}
			team, shard := fmt.Sprintf("t%d", k%100), fmt.Sprintf("s%d", k%1000)
			targs = append(targs, id, title, strings.ToLower(title), "", string(r.status), string(ipa.PhasePlanning),
				"demo", "{}", string(policy), "{}", string(pod), []string{"alice", "bob"}[k%2],
				created, updated, r.closedAt, version, false, `{"shard":"`+shard+`","team":"`+team+`"}`, r.parent, r.deadline, 0, "[]")
			for v := 1; v <= opt.events; v++ {
				pos++
				typ, data := ipa.EventTaskCreated, `{"title":"`+title+`","runtime":"demo"}`
				if v > 1 {
					typ, data = ipa.EventPhaseChanged, `{"from":"PLANNING","to":"PLANNING"}`
				}
				if events.Len() > 0 {
					events.WriteString(",")
				}
				events.WriteString(s.placeholders(len(eargs), 8))
				eargs = append(eargs, pos, uuid.NewString(), id, v, typ, data, "bench", created+int64(v))
			}
			if i > 0 {
				labels.WriteString(",")
			}
			labels.WriteString(s.placeholders(len(largs), labelColumnCount) + "," + s.placeholders(len(largs)+labelColumnCount, labelColumnCount))
			for _, kv := range [][2]string{{"team", team}, {"shard", shard}} {
				largs = append(largs, id, kv[0], kv[1], false, string(r.status), created, updated, title)
			}
		}
		if stmts[0] != nil {
			_, err = stmts[0].ExecContext(ctx, sargs...)
			require.NoError(tb, err)
			_, err = stmts[1].ExecContext(ctx, targs...)
			require.NoError(tb, err)
			_, err = stmts[2].ExecContext(ctx, largs...)
			require.NoError(tb, err)
			for e := 0; e < len(eargs); e += 8 {
				_, err = stmts[3].ExecContext(ctx, eargs[e:e+8]...)
				require.NoError(tb, err)
			}
			continue
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO streams (id, type, version, created_at, updated_at) VALUES "+streams.String(), sargs...)
		require.NoError(tb, err)
		_, err = tx.ExecContext(ctx, "INSERT INTO tasks ("+taskColumns+") VALUES "+tasks.String(), targs...)
		require.NoError(tb, err)
		_, err = tx.ExecContext(ctx, "INSERT INTO task_labels ("+labelColumns+") VALUES "+labels.String(), largs...)
		require.NoError(tb, err)
		if len(eargs) > 0 {
			_, err = tx.ExecContext(ctx, "INSERT INTO events ("+eventCols+") VALUES "+events.String(), eargs...)
			require.NoError(tb, err)
		}
	}
	_, err = tx.ExecContext(ctx, "UPDATE positions SET last = "+s.placeholders(0, 1)+" WHERE id = 1", pos)
	require.NoError(tb, err)
	require.NoError(tb, tx.Commit())
	for _, def := range indexes {
		_, err := db.ExecContext(ctx, def)
		require.NoError(tb, err)
	}
	// The rows went in behind the write path: bring the counters up to them.
	_, err = s.rebuildCounts(ctx, false)
	require.NoError(tb, err)
	analyze := "ANALYZE"
	if !s.postgres() {
		analyze = "PRAGMA optimize"
	}
	_, err = db.ExecContext(ctx, analyze)
	require.NoError(tb, err)
}

// taskColumnCount and labelColumnCount are how many columns taskColumns
// and labelColumns name.
var (
	taskColumnCount  = len(strings.Split(taskColumns, ","))
	labelColumnCount = len(strings.Split(labelColumns, ","))
)

// seedParents are the parent ids seeded children point to.
var seedParents = func() []string {
	out := make([]string, 200)
	for i := range out {
		out[i] = uuid.NewString()
	}
	return out
}()

// taskIndexes returns the CREATE INDEX statements of the secondary indexes
// of the tasks and task_labels tables, by name.
func taskIndexes(tb testing.TB, s *Store) map[string]string {
	q := `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('tasks', 'task_labels') AND sql IS NOT NULL`
	if s.postgres() {
		q = `SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('tasks', 'task_labels') AND indexname NOT IN ('tasks_pkey', 'task_labels_pkey')`
	}
	rows, err := s.rawDB().Query(q)
	require.NoError(tb, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		require.NoError(tb, rows.Scan(&name, &def))
		out[name] = def
	}
	require.NoError(tb, rows.Err())
	require.NotEmpty(tb, out)
	return out
}

// placeholders returns "(?, ?, …)" or "($k+1, $k+2, …)" for n values after k.
func (s *Store) placeholders(k, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = "?"
		if s.postgres() {
			p[i] = fmt.Sprintf("$%d", k+i+1)
		}
	}
	return "(" + strings.Join(p, ", ") + ")"
}

// explain returns the query plan of FindTasks for q.
func explain(t testing.TB, s *Store, q ipa.TaskQuery) string {
	t.Helper()
	query := s.read.ToSQL(func(tx *gorm.DB) *gorm.DB {
		db, err := s.findQuery(tx, q)
		require.NoError(t, err)
		var rows []taskRow
		return db.Scan(&rows)
	})
	return explainSQL(t, s, query)
}

// explainSQL returns the query plan of a query.
func explainSQL(t testing.TB, s *Store, query string) string {
	t.Helper()
	prefix := "EXPLAIN QUERY PLAN "
	if s.postgres() {
		prefix = "EXPLAIN "
	}
	rows, err := s.rawDB().Query(prefix + query)
	require.NoError(t, err)
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		plan = append(plan, fmt.Sprint(vals[len(vals)-1]))
	}
	return strings.Join(plan, "\n")
}

// TestFindTasksPlans checks that the list queries the API serves most are
// index range scans with no sort, on the first page and after a key.
func TestFindTasksPlans(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			n := 20_000 // PostgreSQL plans by statistics: give it a realistic table
			if !s.postgres() {
				n = 2_000 // SQLite's planner picks the index by shape (and -race makes seeding slow)
			}
			seedTasks(t, s, n)
			// Keys in the middle of the set, so a deep page has many rows after it.
			mid := t0.Add(time.Duration(n/2) * time.Millisecond)
			upd := &ipa.TaskKey{Time: mid.Add(30 * time.Minute), ID: uuid.NewString()}
			key := &ipa.TaskKey{Time: mid, Title: "task 5", ID: uuid.NewString()}
			active := ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive}}
			cases := map[string]ipa.TaskQuery{
				"updatedDesc":        {Order: ipa.DefaultTaskOrder, Limit: 100},
				"updatedDescAfter":   {Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"statusUpdated":      {Filter: active, Order: ipa.DefaultTaskOrder, Limit: 100},
				"statusUpdatedAfter": {Filter: active, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"createdAscAfter":    {Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: 100, After: key},
				"statusCreatedAfter": {Filter: active, Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt, Descending: true}, Limit: 100, After: key},
				"titleAfter":         {Order: ipa.TaskOrder{Field: ipa.OrderTitle}, Limit: 100, After: key},
				"phaseUpdated":       {Filter: ipa.TaskFilter{Phases: []ipa.Phase{ipa.PhasePlanning}}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"createdByUpdated":   {Filter: ipa.TaskFilter{CreatedBy: ptr("bob")}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"runtimeUpdated":     {Filter: ipa.TaskFilter{Runtime: ptr("demo")}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
			}
			cases["podStateUpdated"] = ipa.TaskQuery{Filter: ipa.TaskFilter{PodStates: []ipa.PodState{ipa.PodCrashed}}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd}
			for name, q := range cases {
				plan := explain(t, s, q)
				if s.postgres() {
					assert.Contains(t, plan, "Index Scan", name+"\n"+plan)
					assert.NotContains(t, plan, "Sort", name+"\n"+plan)
					assert.NotContains(t, plan, "Seq Scan", name+"\n"+plan)
				} else {
					assert.Contains(t, plan, "USING INDEX", name+"\n"+plan)
					assert.NotContains(t, plan, "TEMP B-TREE", name+"\n"+plan)
				}
				if name == "statusUpdatedAfter" {
					t.Logf("%s plan:\n%s", name, plan)
				}
			}
			// Children of a parent, a label selector and a deadline bound find
			// their rows from their own indexes (parent_id with the order;
			// task_labels by key and value; the deadline range). PostgreSQL
			// may then sort the few matches rather than walk the order.
			before := mid
			parent := seedParents[3]
			selective := map[string]ipa.TaskQuery{
				"parentUpdated":   {Filter: ipa.TaskFilter{ParentID: &parent}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"parentCreated":   {Filter: ipa.TaskFilter{ParentID: &parent}, Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: 100, After: key},
				"labels":          {Filter: ipa.TaskFilter{Labels: ipa.Labels{"shard": "s7"}}, Order: ipa.DefaultTaskOrder, Limit: 100},
				"labelsAndState":  {Filter: ipa.TaskFilter{Labels: ipa.Labels{"shard": "s7", "team": "t7"}, Statuses: []ipa.TaskStatus{ipa.StatusActive}}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"labelsAndParent": {Filter: ipa.TaskFilter{Labels: ipa.Labels{"team": "t7"}, ParentID: &parent}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd},
				"deadlineBefore":  {Filter: ipa.TaskFilter{DeadlineBefore: &before}, Order: ipa.DefaultTaskOrder, Limit: 100},
			}
			wantIndex := map[string]string{
				"parentUpdated": "tasks_parent_updated", "parentCreated": "tasks_parent_created",
				"labels": "task_labels_updated", "labelsAndState": "task_labels_status_updated", "deadlineBefore": "tasks_deadline",
				"labelsAndParent": "tasks_parent_updated",
			}
			for name, q := range selective {
				plan := explain(t, s, q)
				assert.Contains(t, plan, wantIndex[name], name+"\n"+plan)
				if s.postgres() {
					assert.NotContains(t, plan, "Seq Scan", name+"\n"+plan)
				} else {
					assert.NotRegexp(t, `SCAN (tasks|task_labels)\b(?: USING)?$`, plan, name+"\n"+plan)
				}
				t.Logf("%s plan:\n%s", name, plan)
			}
			testLabelPagePlans(t, s, mid)
			// The deadline timer's query (DueTasks) reads the partial index
			// of open deadlines. The seeded closed_at is never set, so mark
			// the closed statuses closed first.
			require.NoError(t, s.write.Exec(`UPDATE tasks SET closed_at = created_at WHERE status IN ('COMPLETED', 'CANCELLED')`).Error)
			if s.postgres() {
				require.NoError(t, s.write.Exec(`ANALYZE tasks`).Error)
			}
			query := s.read.ToSQL(func(tx *gorm.DB) *gorm.DB {
				var rows []taskRow
				return tx.Raw(s.dueTasksQuery(), nanos(mid), 100).Scan(&rows)
			})
			plan := explainSQL(t, s, query)
			assert.Contains(t, plan, "tasks_open_deadline", plan)
		})
	}
}

// testLabelPagePlans checks that a page of a label that many tasks have is
// a range scan of task_labels in the page's order that stops after the
// page, in every order and direction, first page and after or before a key
// (last), alone and with a status or a second label: no sort of the
// matches. It makes {team: common} and {shard: common} the labels of about
// half the tasks each first.
func testLabelPagePlans(t *testing.T, s *Store, mid time.Time) {
	require.NoError(t, s.write.Exec(`UPDATE task_labels SET value = 'common' WHERE key = 'team' AND value < 't5'`).Error)
	require.NoError(t, s.write.Exec(`UPDATE task_labels SET value = 'common' WHERE key = 'shard' AND value < 's5'`).Error)
	require.NoError(t, s.write.Exec(`ANALYZE`).Error) // statistics that say how common the pairs are
	common := ipa.Labels{"team": "common"}
	upd := &ipa.TaskKey{Time: mid.Add(30 * time.Minute), ID: uuid.NewString()}
	key := &ipa.TaskKey{Time: mid, Title: "task 5", ID: uuid.NewString()}
	index := map[ipa.TaskOrderField]string{
		ipa.OrderUpdatedAt: "task_labels_updated", ipa.OrderCreatedAt: "task_labels_created", ipa.OrderTitle: "task_labels_title",
	}
	keyFor := map[ipa.TaskOrderField]*ipa.TaskKey{ipa.OrderUpdatedAt: upd, ipa.OrderCreatedAt: key, ipa.OrderTitle: key}
	type labelCase struct {
		q     ipa.TaskQuery
		index string
	}
	cases := map[string]labelCase{}
	for field, idx := range index {
		for _, desc := range []bool{false, true} {
			order := ipa.TaskOrder{Field: field, Descending: desc}
			name := fmt.Sprintf("%s/desc=%v", field, desc)
			cases[name+"/first"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common}, Order: order, Limit: 100}, idx}
			cases[name+"/after"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common}, Order: order, Limit: 100, After: keyFor[field]}, idx}
			cases[name+"/lastBefore"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common}, Order: order, Limit: 100, Last: true, Before: keyFor[field]}, idx}
			cases[name+"/archived"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common, Archived: true}, Order: order, Limit: 100}, idx}
		}
	}
	active := []ipa.TaskStatus{ipa.StatusActive}
	cases["status/updated"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common, Statuses: active}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd}, "task_labels_status_updated"}
	cases["status/created"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common, Statuses: active}, Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: 100, After: key}, "task_labels_created"}
	cases["twoStatuses"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common, Statuses: []ipa.TaskStatus{ipa.StatusActive, ipa.StatusInactive}}, Order: ipa.DefaultTaskOrder, Limit: 100}, "task_labels_updated"}
	cases["twoLabels"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: ipa.Labels{"team": "common", "shard": "common"}}, Order: ipa.DefaultTaskOrder, Limit: 100, After: upd}, "task_labels_updated"}
	cases["podState"] = labelCase{ipa.TaskQuery{Filter: ipa.TaskFilter{Labels: common, PodStates: []ipa.PodState{ipa.PodStopped}}, Order: ipa.DefaultTaskOrder, Limit: 100}, "task_labels_updated"}
	for name, c := range cases {
		plan := explain(t, s, c.q)
		assert.Contains(t, plan, c.index, name+"\n"+plan)
		if s.postgres() {
			assert.Contains(t, plan, "Index", name+"\n"+plan)
			assert.NotContains(t, plan, "Sort", name+"\n"+plan)
			assert.NotContains(t, plan, "Bitmap", name+"\n"+plan)
			assert.NotContains(t, plan, "Seq Scan", name+"\n"+plan)
		} else {
			assert.NotContains(t, plan, "TEMP B-TREE", name+"\n"+plan)
			assert.NotRegexp(t, `SCAN (l|t|tasks|task_labels)\b`, plan, name+"\n"+plan)
			// A second pair is one primary-key probe per row, not a range.
			assert.NotRegexp(t, `SEARCH o .*\(key=\? AND value=\?`, plan, name+"\n"+plan)
		}
		if name == "UPDATED_AT/desc=true/after" || name == "twoLabels" {
			t.Logf("%s plan:\n%s", name, plan)
		}
	}
}

// benchDialects is dialects() for benchmarks; PostgreSQL is skipped when
// it cannot be started.
func benchDialects() []dialect { return dialects() }

func createReq() ipa.CreateTaskRequest {
	return ipa.CreateTaskRequest{
		TaskID:  uuid.NewString(),
		Created: ipa.TaskCreatedData{Title: "bench", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()},
		Actor:   "bench", Now: time.Now(),
	}
}

// rawCreate is the baseline: the same three writes as CreateTask (stream,
// event, task row) in one database/sql transaction, with no GORM, no
// position counter and no fold.
func rawCreate(ctx context.Context, s *Store, pos int64) error {
	tx, err := s.rawDB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	id, now := uuid.NewString(), time.Now().UnixNano()
	q := func(sql string) string {
		if !s.postgres() {
			return sql
		}
		n := 0
		return replaceEach(sql, "?", func() string { n++; return fmt.Sprintf("$%d", n) })
	}
	if _, err := tx.ExecContext(ctx, q(`INSERT INTO streams (id, type, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)`),
		id, ipa.StreamTypeTask, now, now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q(`INSERT INTO events (position, id, stream_id, version, type, data, actor_id, occurred_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?)`),
		pos, uuid.Must(uuid.NewV7()).String(), id, ipa.EventTaskCreated, `{"title":"bench"}`, "bench", now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q(`INSERT INTO tasks (`+taskColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		id, "bench", "bench", "", "INACTIVE", "SPEC_CLARIFICATION", "demo", "{}", "{}", "{}", "STOPPED", "bench", now, now, nil, 1, false, "{}", nil, nil, 0, "[]"); err != nil {
		return err
	}
	return tx.Commit()
}

func replaceEach(s, old string, next func() string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(next())
		s = s[i+len(old):]
	}
}

// run calls fn b.N times, sequentially or from par goroutines.
func run(b *testing.B, par int, fn func() error) {
	b.ResetTimer()
	if par <= 1 {
		for range b.N {
			if err := fn(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := fn(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkFindTasks reads the first page and a page ~90% deep (by key) of
// UPDATED_AT DESC lists, with and without a status filter, and counts.
// 1M rows only with IPA_BENCH_LARGE=1.
func BenchmarkFindTasks(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"1k", 1_000}, {"100k", 100_000}}
	if os.Getenv("IPA_BENCH_LARGE") == "1" {
		sizes = append(sizes, struct {
			name string
			n    int
		}{"1M", 1_000_000})
	}
	for _, d := range benchDialects() {
		b.Run(d.name, func(b *testing.B) {
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					s := d.open(b)
					start := time.Now()
					seedTasks(b, s, size.n)
					b.Logf("seeded %d tasks in %v", size.n, time.Since(start))
					benchLists(b, s, size.n)
				})
			}
		})
	}
}

func benchLists(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	active := ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive}}
	for _, c := range []struct {
		name   string
		filter ipa.TaskFilter
		total  int
	}{{"all", ipa.TaskFilter{}, n}, {"status", active, n / 4}} {
		deep := deepKey(b, s, c.filter, c.total*9/10)
		for _, p := range []struct {
			name  string
			after *ipa.TaskKey
		}{{"first", nil}, {"deep", deep}} {
			b.Run(c.name+"/"+p.name, func(b *testing.B) {
				q := ipa.TaskQuery{Filter: c.filter, Order: ipa.DefaultTaskOrder, Limit: 100, After: p.after}
				run(b, 1, func() error {
					page, err := s.FindTasks(ctx, q)
					if err == nil && len(page.Tasks) == 0 {
						err = fmt.Errorf("got %d tasks", len(page.Tasks))
					}
					return err
				})
			})
		}
		b.Run(c.name+"/count", func(b *testing.B) {
			run(b, 1, func() error { _, err := s.CountTasks(ctx, c.filter); return err })
		})
	}
}

// deepKey returns the key of the row at offset k in the UPDATED_AT DESC
// order under f (setup only: it uses OFFSET, which FindTasks never does).
func deepKey(tb testing.TB, s *Store, f ipa.TaskFilter, k int) *ipa.TaskKey {
	var r taskRow
	db := s.filter(s.read.Table("tasks"), f).Select(taskColumns).Order("updated_at DESC, id DESC").Offset(k).Limit(1)
	require.NoError(tb, db.Scan(&r).Error)
	require.NotEmpty(tb, r.ID)
	return &ipa.TaskKey{Time: fromNanos(r.UpdatedAt), ID: r.ID}
}
