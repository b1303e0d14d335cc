package main

import (
	"strings"
	"testing"
	"time"
)

// TestPruneCommand: `ipa prune` on the real binary refuses a bad duration,
// leaves tasks closed more recently than the duration, counts with
// --dry-run without deleting, then deletes the whole streams of the closed
// tasks (open ones stay) and prints what it removed.
func TestPruneCommand(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	open := s.createTask(t, map[string]any{"title": "open"})
	var closed []string
	for _, title := range []string{"done", "dropped"} {
		closed = append(closed, s.createTask(t, map[string]any{"title": title}))
	}
	s.must(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": closed[0]}, nil)
	s.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "no") { task { id } } }`, map[string]any{"id": closed[1]}, nil)
	s.stop(t, 15*time.Second)

	if out, code := h.runIPA(t, "prune", "--closed-before", "soon"); code != 2 {
		t.Fatalf("bad duration: exit %d, %q", code, out)
	}
	if out, code := h.runIPA(t, "prune", "--closed-before", "30d"); code != 0 || !strings.Contains(out, "removed 0 tasks and 0 events") {
		t.Fatalf("nothing that old: exit %d, %q", code, out)
	}
	time.Sleep(5 * time.Millisecond) // the closes are now more than 1ms old
	// Each closed task has task_created and its closing event.
	out, code := h.runIPA(t, "prune", "--closed-before", "1ms", "--dry-run")
	if code != 0 || !strings.Contains(out, "would remove 2 tasks and 4 events") {
		t.Fatalf("dry run: exit %d, %q", code, out)
	}
	out, code = h.runIPA(t, "prune", "--closed-before", "1ms", "--batch", "1")
	if code != 0 || !strings.Contains(out, "removed 2 tasks and 4 events") {
		t.Fatalf("prune: exit %d, %q", code, out)
	}
	if out, code := h.runIPA(t, "reproject", "--check"); code != 0 {
		t.Fatalf("after prune the projection disagrees: exit %d, %q", code, out)
	}

	s = h.start()
	var got struct {
		Tasks struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID string } }
		}
		Events struct {
			Edges []struct{ Node struct{ TaskID string } }
		}
	}
	s.must(t, `{ tasks { totalCount edges { node { id } } } events(afterPosition: "0") { edges { node { taskId } } } }`, nil, &got)
	if got.Tasks.TotalCount != 1 || len(got.Tasks.Edges) != 1 || got.Tasks.Edges[0].Node.ID != open {
		t.Fatalf("after prune tasks are %+v", got.Tasks)
	}
	for _, e := range got.Events.Edges {
		if e.Node.TaskID != open {
			t.Fatalf("an event of a pruned task survived: %+v", got.Events)
		}
	}
}
