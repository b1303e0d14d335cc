package main

import (
	"database/sql"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // database/sql driver "sqlite", to corrupt a row behind the store's back
)

// runIPA runs the ipa binary with args on the home's database and returns
// its stdout and exit code.
func (h *home) runIPA(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(ipaBin, append(args, "--database", h.db)...)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("ipa %v: %v", args, err)
	}
	return string(out), 0
}

// TestReprojectCommand: `ipa reproject --check` agrees with a clean database,
// finds a row that differs from its events (exit 1), and `ipa reproject`
// repairs it.
func TestReprojectCommand(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"title": "original"})
	s.createTask(t, map[string]any{"title": "other"})
	s.must(t, `mutation($id: ID!) { transitionPhase(taskId: $id, to: PLANNING) { task { id } } }`, map[string]any{"id": id}, nil)
	// Labels, a parent, a deadline and an edit are all rebuilt from events.
	parent := s.createTask(t, map[string]any{"title": "parent", "labels": map[string]any{"team": "core"}, "deadline": "2999-01-01T00:00:00.000000001Z"})
	child := s.createTask(t, map[string]any{"title": "child", "parentId": parent, "labels": map[string]any{"team": "core"}})
	s.must(t, `mutation($id: ID!) { updateTask(taskId: $id, input: {labels: {team: "edge", tier: "gold"}, title: "child 2"}) { task { id } } }`, map[string]any{"id": child}, nil)
	s.stop(t, 15*time.Second)

	out, code := h.runIPA(t, "reproject", "--check")
	if code != 0 || !strings.Contains(out, "0 rows differ") {
		t.Fatalf("clean database: exit %d, %q", code, out)
	}

	db, err := sql.Open("sqlite", strings.TrimPrefix(h.db, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE tasks SET title = 'tampered', phase = 'REVIEW' WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM task_labels WHERE task_id = ? AND key = 'tier'`, child); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, code = h.runIPA(t, "reproject", "--check")
	if code != 1 || !strings.Contains(out, "2 rows differ") {
		t.Fatalf("tampered rows: exit %d, %q; want exit 1 and 2 rows", code, out)
	}
	out, code = h.runIPA(t, "reproject")
	if code != 0 || !strings.Contains(out, "2 rows changed") {
		t.Fatalf("reproject: exit %d, %q", code, out)
	}
	out, code = h.runIPA(t, "reproject", "--check")
	if code != 0 || !strings.Contains(out, "0 rows differ") {
		t.Fatalf("after reproject: exit %d, %q", code, out)
	}
	s = h.start()
	var got struct{ Task struct{ Title, Phase string } }
	s.must(t, `query($id: ID!) { task(id: $id) { title phase } }`, map[string]any{"id": id}, &got)
	if got.Task.Title != "original" || got.Task.Phase != "PLANNING" {
		t.Fatalf("after reproject the task is %+v", got.Task)
	}
	var n struct{ TaskCount int }
	s.must(t, `query($p: ID!) { taskCount(filter: {labels: {tier: "gold"}, parentId: $p}) }`, map[string]any{"p": parent}, &n)
	if n.TaskCount != 1 {
		t.Fatalf("after reproject the label selector finds %d tasks, want 1", n.TaskCount)
	}
}

// TestAdminCommands: migrate is harmless to repeat, token create works on a
// brand-new database and prints the secret alone on the last line, the
// secret authenticates, list never shows it, revoke makes it useless.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	if out, code := h.runIPA(t, "migrate"); code != 0 || !strings.Contains(out, "up to date") || strings.Contains(out, "(0 migrations") {
		t.Fatalf("migrate: exit %d, %q", code, out)
	}
	if out, code := h.runIPA(t, "migrate"); code != 0 || !strings.Contains(out, "0 migrations applied") {
		t.Fatalf("second migrate: exit %d, %q", code, out)
	}
	out, code := h.runIPA(t, "token", "create", "--actor", "ci-bot", "--role", "operator")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	secret := lines[len(lines)-1]
	if code != 0 || !strings.HasPrefix(secret, "ipa_") || strings.Contains(secret, " ") {
		t.Fatalf("token create: exit %d, %q", code, out)
	}
	if out, _ := h.runIPA(t, "token", "list"); !strings.Contains(out, "ci-bot") || strings.Contains(out, secret) {
		t.Fatalf("token list must show the actor and never the secret: %q", out)
	}
	if _, code := h.runIPA(t, "token", "create", "--actor", "x", "--role", "root"); code == 0 {
		t.Fatal("an unknown role must be refused")
	}

	s := h.start("--auth", "required")
	req := func() int {
		r, err := http.NewRequest(http.MethodPost, s.url+"/graphql", strings.NewReader(`{"query":"{ viewer { id } }"}`))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+secret)
		resp, err := s.client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := req(); got != http.StatusOK {
		t.Fatalf("the minted token got HTTP %d", got)
	}
	list, _ := h.runIPA(t, "token", "list")
	var id string
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, "ci-bot") {
			id = strings.Fields(l)[0]
		}
	}
	if out, code := h.runIPA(t, "token", "revoke", id); code != 0 {
		t.Fatalf("revoke: exit %d, %q", code, out)
	}
	if got := req(); got != http.StatusUnauthorized {
		t.Fatalf("a revoked token got HTTP %d, want 401", got)
	}
	if out, code := h.runIPA(t, "version"); code != 0 || !strings.HasPrefix(out, "ipa ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// TestServeRefusesOpenNonLoopback: a server that would listen beyond
// loopback with no token refuses to start, and says how to fix it.
func TestServeRefusesOpenNonLoopback(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	cmd := exec.Command(ipaBin, "serve", "--addr", "0.0.0.0:0", "--database", h.db, "--data-dir", h.dataDir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("serve on 0.0.0.0 with no token: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "token create") {
		t.Fatalf("the refusal should say how to create a token:\n%s", out)
	}
}

// TestServeStopsOnSIGINT: Ctrl-C stops the server cleanly (exit 0) and its
// pod with it.
func TestServeStopsOnSIGINT(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	id := s.createTask(t, map[string]any{"title": "interrupted", "runtimeConfig": demoConfig(200)})
	_, view := s.startPod(t, id)
	if view.Pod.PID <= 0 || !ourAlive(view.Pod.PID, h.tag) {
		t.Fatalf("no live pod before SIGINT: %+v", view.Pod)
	}
	s.kill(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop on SIGINT")
	}
	if s.waitErr != nil {
		t.Fatalf("server exit after SIGINT: %v\n%s", s.waitErr, s.logTail(20))
	}
	if left := waitGone([]int{view.Pod.PID}, h.tag, 5*time.Second); len(left) > 0 {
		t.Fatalf("pod %v survived the server's SIGINT", left)
	}
}
