package graph_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// listFixture creates n tasks through the API with varied titles, creators,
// runtimes, phases and statuses, and returns them as the API last returned
// each one: the truth lists are checked against.
func listFixture(t *testing.T, b *bundle, n int) (map[string]task, []*client) {
	t.Helper()
	_, aliceSecret := b.Mint(t, "alice", ipa.RoleOperator)
	_, bobSecret := b.Mint(t, "bob", ipa.RoleAdmin)
	creators := []*client{b.as(aliceSecret), b.as(bobSecret)}
	prefixes := []string{"alpha", "Beta", "100% sure", "snake_case", "Ünïcode", "plain", "ALPHA beta", "under_%mix", `back\slash`}

	var mu sync.Mutex
	truth := make(map[string]task, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for i := range jobs {
				c := creators[i%len(creators)]
				in := map[string]any{"title": fmt.Sprintf("%s %03d", prefixes[i%len(prefixes)], i)}
				if i%10 == 9 {
					in["title"] = "same title" // ties broken by id
				}
				if i%5 == 4 {
					c = creators[1] // exec needs an admin
					in["runtime"] = "exec"
					in["runtimeConfig"] = map[string]any{"command": []string{"true"}}
				}
				tk := c.Create(t, in)
				switch {
				case i%11 == 3:
					tk = c.complete(t, tk.ID)
				case i%13 == 4:
					tk = c.cancel(t, tk.ID, "fixture")
				case i%7 == 1:
					tk = c.transition(t, tk.ID, "PLANNING")
				case i%7 == 2:
					c.transition(t, tk.ID, "PLANNING")
					tk = c.transition(t, tk.ID, "DEVELOPMENT")
				}
				mu.Lock()
				truth[tk.ID] = tk
				mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	require.Len(t, truth, n)
	return truth, creators
}

type orderSpec struct{ field, direction string }

// sortTruth orders tasks as the API promises: by the field, ties by id, both
// in the direction.
func sortTruth(tasks []task, o orderSpec) {
	slices.SortFunc(tasks, func(a, b task) int {
		var c int
		switch o.field {
		case "CREATED_AT":
			c = a.CreatedAt.Compare(b.CreatedAt)
		case "UPDATED_AT":
			c = a.UpdatedAt.Compare(b.UpdatedAt)
		case "TITLE":
			c = strings.Compare(a.Title, b.Title)
		}
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		if o.direction == "DESC" {
			c = -c
		}
		return c
	})
}

// walkTasks reads a whole list page by page, checking every page's
// pageInfo, and returns the tasks in the order served.
func walkTasks(t *testing.T, c *client, filter map[string]any, order map[string]any, first int) []task {
	t.Helper()
	var out []task
	var after any
	total := -1
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		var p taskPage
		c.Must(t, apptest.TasksQuery, map[string]any{"f": filter, "o": order, "first": first, "after": after}, &p)
		tp := p.Tasks
		if total >= 0 {
			require.Equal(t, total, tp.TotalCount, "totalCount is the same on every page")
		}
		total = tp.TotalCount
		require.LessOrEqual(t, len(tp.Edges), first)
		require.Equal(t, after != nil, tp.PageInfo.HasPreviousPage)
		if len(tp.Edges) == 0 {
			require.False(t, tp.PageInfo.HasNextPage)
		} else {
			require.Equal(t, tp.Edges[0].Cursor, *tp.PageInfo.StartCursor)
			require.Equal(t, tp.Edges[len(tp.Edges)-1].Cursor, *tp.PageInfo.EndCursor)
		}
		for _, e := range tp.Edges {
			require.NotEmpty(t, e.Cursor)
			out = append(out, e.Node)
		}
		if !tp.PageInfo.HasNextPage {
			require.Equal(t, total, len(out), "totalCount agrees with what the pages hold")
			return out
		}
		require.Len(t, tp.Edges, first, "only the last page is short")
		after = *tp.PageInfo.EndCursor
	}
}

func ids(tasks []task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

func TestTaskLists(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		const n = 250
		truth, creators := listFixture(t, b, n)
		c := creators[0]
		all := make([]task, 0, n)
		for _, tk := range truth {
			all = append(all, tk)
		}

		t.Run("EveryOrder", func(t *testing.T) {
			for _, field := range []string{"CREATED_AT", "UPDATED_AT", "TITLE"} {
				for _, dir := range []string{"ASC", "DESC"} {
					o := orderSpec{field, dir}
					want := slices.Clone(all)
					sortTruth(want, o)
					got := walkTasks(t, c, nil, map[string]any{"field": field, "direction": dir}, 7)
					require.Len(t, got, n, "%s %s: every task exactly once", field, dir)
					require.Equal(t, ids(want), ids(got), "%s %s: in order, no gaps", field, dir)
					require.Equal(t, want, got, "%s %s: the list shows what the mutations returned", field, dir)
				}
			}
		})

		t.Run("DefaultOrderIsUpdatedAtDesc", func(t *testing.T) {
			want := slices.Clone(all)
			sortTruth(want, orderSpec{"UPDATED_AT", "DESC"})
			var p taskPage
			c.Must(t, `{ tasks { edges { node { id } } pageInfo { hasNextPage } totalCount } }`, nil, &p)
			require.Len(t, p.Tasks.Edges, 100, "first defaults to 100")
			require.True(t, p.Tasks.PageInfo.HasNextPage)
			require.Equal(t, n, p.Tasks.TotalCount)
			for i, e := range p.Tasks.Edges {
				require.Equal(t, want[i].ID, e.Node.ID)
			}
			var big taskPage
			c.Must(t, `{ tasks(first: 1000) { edges { node { id } } pageInfo { hasNextPage } } }`, nil, &big)
			require.Len(t, big.Tasks.Edges, n)
			require.False(t, big.Tasks.PageInfo.HasNextPage)
		})

		byCreated := slices.Clone(all)
		sortTruth(byCreated, orderSpec{"CREATED_AT", "ASC"})
		lo, hi := byCreated[80].CreatedAt, byCreated[160].CreatedAt
		str := func(s string) *string { return &s }
		ts := func(tm time.Time) string { return tm.Format(time.RFC3339Nano) }

		filters := []struct {
			name   string
			filter map[string]any
			match  ipa.TaskFilter
		}{
			{"None", map[string]any{}, ipa.TaskFilter{}},
			{"StatusCompleted", map[string]any{"status": []string{"COMPLETED"}}, ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusCompleted}}},
			{"StatusOpen", map[string]any{"status": []string{"INACTIVE", "ACTIVE"}}, ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusInactive, ipa.StatusActive}}},
			{"StatusClosed", map[string]any{"status": []string{"COMPLETED", "CANCELLED"}}, ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusCompleted, ipa.StatusCancelled}}},
			{"PhasePlanning", map[string]any{"phase": []string{"PLANNING"}}, ipa.TaskFilter{Phases: []ipa.Phase{ipa.PhasePlanning}}},
			{"PhaseWork", map[string]any{"phase": []string{"DEVELOPMENT", "SPEC_CLARIFICATION"}}, ipa.TaskFilter{Phases: []ipa.Phase{ipa.PhaseDevelopment, ipa.PhaseSpecClarification}}},
			{"PhaseCancelled", map[string]any{"phase": []string{"CANCELLED"}}, ipa.TaskFilter{Phases: []ipa.Phase{ipa.PhaseCancelled}}},
			{"CreatedAfter", map[string]any{"createdAfter": ts(lo)}, ipa.TaskFilter{CreatedAfter: &lo}},
			{"CreatedBefore", map[string]any{"createdBefore": ts(hi)}, ipa.TaskFilter{CreatedBefore: &hi}},
			{"CreatedBetween", map[string]any{"createdAfter": ts(lo), "createdBefore": ts(hi)}, ipa.TaskFilter{CreatedAfter: &lo, CreatedBefore: &hi}},
			{"CreatedByAlice", map[string]any{"createdBy": "alice"}, ipa.TaskFilter{CreatedBy: str("alice")}},
			{"CreatedByNobody", map[string]any{"createdBy": "nobody"}, ipa.TaskFilter{CreatedBy: str("nobody")}},
			{"RuntimeExec", map[string]any{"runtime": "exec"}, ipa.TaskFilter{Runtime: str("exec")}},
			{"RuntimeDemo", map[string]any{"runtime": "demo"}, ipa.TaskFilter{Runtime: str("demo")}},
			{"TitlePercent", map[string]any{"titleContains": "%"}, ipa.TaskFilter{TitleContains: str("%")}},
			{"TitleUnderscore", map[string]any{"titleContains": "_"}, ipa.TaskFilter{TitleContains: str("_")}},
			{"TitlePercentUnderscore", map[string]any{"titleContains": "_%"}, ipa.TaskFilter{TitleContains: str("_%")}},
			{"TitleCaseInsensitive", map[string]any{"titleContains": "aLpHa"}, ipa.TaskFilter{TitleContains: str("aLpHa")}},
			{"TitleDigits", map[string]any{"titleContains": "a 0"}, ipa.TaskFilter{TitleContains: str("a 0")}},
			{"TitleBackslash", map[string]any{"titleContains": `\`}, ipa.TaskFilter{TitleContains: str(`\`)}},
			{"Combined", map[string]any{"status": []string{"INACTIVE", "COMPLETED"}, "runtime": "demo", "createdBy": "bob", "titleContains": "a", "createdAfter": ts(lo)},
				ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusInactive, ipa.StatusCompleted}, Runtime: str("demo"), CreatedBy: str("bob"), TitleContains: str("a"), CreatedAfter: &lo}},
		}
		for _, f := range filters {
			t.Run("Filter"+f.name, func(t *testing.T) {
				var want []task
				for _, tk := range byCreated {
					it := &ipa.Task{ID: tk.ID, Title: tk.Title, Status: ipa.TaskStatus(tk.Status), Phase: ipa.Phase(tk.Phase),
						Runtime: tk.Runtime, CreatedBy: tk.CreatedBy, CreatedAt: tk.CreatedAt}
					if f.match.Matches(it) {
						want = append(want, tk)
					}
				}
				require.Equal(t, len(want), c.Count(t, f.filter), "taskCount")
				var p taskPage
				c.Must(t, apptest.TasksQuery, map[string]any{"f": f.filter, "o": map[string]any{"field": "CREATED_AT", "direction": "ASC"}, "first": 1000}, &p)
				require.Equal(t, len(want), p.Tasks.TotalCount, "totalCount")
				got := p.Tasks.Nodes()
				require.Equal(t, ids(want), ids(got))
				require.False(t, p.Tasks.PageInfo.HasNextPage)
			})
		}

		t.Run("FixtureCoversEveryFilter", func(t *testing.T) {
			// The filters above mean something only when each matches some
			// tasks and misses others.
			for _, f := range filters {
				if f.name == "None" || f.name == "CreatedByNobody" {
					continue
				}
				got := c.Count(t, f.filter)
				require.Greater(t, got, 0, f.name)
				require.Less(t, got, n, f.name)
			}
		})

		t.Run("FilteredPagination", func(t *testing.T) {
			for _, filter := range []map[string]any{
				{"status": []string{"INACTIVE"}},
				{"titleContains": "_"},
				{"createdBy": "bob", "runtime": "demo"},
			} {
				for _, order := range []orderSpec{{"TITLE", "DESC"}, {"UPDATED_AT", "ASC"}} {
					full := walkTasks(t, c, filter, map[string]any{"field": order.field, "direction": order.direction}, 1000)
					paged := walkTasks(t, c, filter, map[string]any{"field": order.field, "direction": order.direction}, 7)
					require.Equal(t, ids(full), ids(paged))
					require.Equal(t, c.Count(t, filter), len(paged))
					want := slices.Clone(full)
					sortTruth(want, order)
					require.Equal(t, ids(want), ids(paged))
				}
			}
		})

		t.Run("ListSeesNewTasksAfterCursor", func(t *testing.T) {
			// Keyset pagination: a task created between pages appears in a
			// later page of a CREATED_AT ASC walk, nothing repeats.
			var p taskPage
			order := map[string]any{"field": "CREATED_AT", "direction": "ASC"}
			c.Must(t, apptest.TasksQuery, map[string]any{"o": order, "first": 7}, &p)
			fresh := c.CreateTitled(t, "late arrival")
			seen := ids(p.Tasks.Nodes())
			after := *p.Tasks.PageInfo.EndCursor
			for {
				var next taskPage
				c.Must(t, apptest.TasksQuery, map[string]any{"o": order, "first": 100, "after": after}, &next)
				seen = append(seen, ids(next.Tasks.Nodes())...)
				if !next.Tasks.PageInfo.HasNextPage {
					break
				}
				after = *next.Tasks.PageInfo.EndCursor
			}
			require.Len(t, seen, n+1)
			require.Equal(t, fresh.ID, seen[len(seen)-1])
			require.Len(t, uniq(seen), n+1)
		})
	})
}

func uniq(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}
