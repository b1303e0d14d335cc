package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
)

// cliResult is one finished `ipa task …` process.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cliEnv is the environment of a CLI process: the test's without any IPA_*
// variable, plus env (KEY=VALUE).
func cliEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPA_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// cli runs the ipa binary with args and env and waits for it (a minute at
// most).
func cli(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipaBin, args...)
	cmd.Env = cliEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("ipa %v: %v", args, err)
	}
	return r
}

// on runs `ipa task args…` against s (IPA_SERVER) with token (IPA_TOKEN,
// none when "") and fails the test unless it exits with want.
func (s *server) on(t *testing.T, token string, want int, args ...string) cliResult {
	t.Helper()
	env := []string{"IPA_SERVER=" + s.url}
	if token != "" {
		env = append(env, "IPA_TOKEN="+token)
	}
	r := cli(t, env, append([]string{"task"}, args...)...)
	if r.code != want {
		t.Fatalf("ipa task %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// decode parses a -o json output.
func decode[T any](t *testing.T, r cliResult) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("-o json output is not one JSON document: %v\n%s", err, r.stdout)
	}
	return v
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// stream is a running CLI process whose stdout lines arrive on lines.
type stream struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *logBuf
	exited chan struct{}
	err    error
}

// startCLI starts `ipa task args…` against s; cleanup kills it if the test
// did not end it.
func (s *server) startCLI(t *testing.T, token string, args ...string) *stream {
	t.Helper()
	env := []string{"IPA_SERVER=" + s.url}
	if token != "" {
		env = append(env, "IPA_TOKEN="+token)
	}
	cmd := exec.Command(ipaBin, append([]string{"task"}, args...)...)
	cmd.Env = cliEnv(env...)
	st := &stream{cmd: cmd, lines: make(chan string, 1000), stderr: &logBuf{}, exited: make(chan struct{})}
	cmd.Stderr = st.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			st.lines <- sc.Text()
		}
		close(st.lines)
		st.err = cmd.Wait()
		close(st.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-st.exited
	})
	return st
}

// next waits for the next stdout line; "" and false when the process
// ended first or within passed.
func (st *stream) next(within time.Duration) (string, bool) {
	select {
	case l, ok := <-st.lines:
		return l, ok
	case <-time.After(within):
		return "", false
	}
}

// wait waits for the process to exit by itself and returns its exit code.
func (st *stream) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-st.exited:
	case <-time.After(within):
		t.Fatalf("%v did not exit within %s\nstderr: %s", st.cmd.Args, within, st.stderr.String())
	}
	var exit *exec.ExitError
	if errors.As(st.err, &exit) {
		return exit.ExitCode()
	}
	if st.err != nil {
		t.Fatalf("%v: %v", st.cmd.Args, st.err)
	}
	return 0
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type cliTask struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Status  string `json:"status"`
	Phase   string `json:"phase"`
	Version int    `json:"version"`
	Pod     struct {
		State string `json:"state"`
	} `json:"pod"`
	RuntimeConfig map[string]any `json:"runtimeConfig"`
	Metadata      map[string]any `json:"metadata"`
	RestartPolicy struct {
		AutoRestart bool `json:"autoRestart"`
		MaxAttempts int  `json:"maxAttempts"`
	} `json:"restartPolicy"`
}

// TestTaskCLILifecycle drives one task through the CLI alone against a real
// server: create → list → get → move → start → events → watch → stop →
// cancel, with the error exits on the way.
func TestTaskCLILifecycle(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()

	// create: table output ends with the id alone; the server has the task.
	r := s.on(t, "", 0, "create", "cli lifecycle", "--config", `{"stepMs": 600000}`, "--metadata", `{"k": "v"}`,
		"--restart-auto", "--max-attempts", "7", "--description", "made by the CLI")
	id := lastLine(r.stdout)
	if tv := s.task(t, id); tv.Phase != "SPEC_CLARIFICATION" || tv.Runtime != "demo" {
		t.Fatalf("created task %+v", tv)
	}
	if !strings.Contains(r.stdout, "cli lifecycle") || !strings.Contains(r.stdout, "automatic, at most 7") {
		t.Fatalf("create output:\n%s", r.stdout)
	}
	// -o json is the data object; the same idempotency key creates nothing new.
	type created struct {
		CreateTask struct{ Task cliTask } `json:"createTask"`
	}
	a := decode[created](t, s.on(t, "", 0, "create", "--title", "second", "--idempotency-key", "k1", "-o", "json"))
	b := decode[created](t, s.on(t, "", 0, "create", "--title", "second", "--idempotency-key", "k1", "-o", "json"))
	if a.CreateTask.Task.ID == "" || a.CreateTask.Task.ID != b.CreateTask.Task.ID {
		t.Fatalf("idempotent create: %q then %q", a.CreateTask.Task.ID, b.CreateTask.Task.ID)
	}
	s.on(t, "", 0, "create", "third")

	// list: table, filters, paging.
	type list struct {
		Tasks struct {
			Edges []struct {
				Cursor string
				Node   cliTask
			}
			PageInfo struct {
				HasNextPage bool
				EndCursor   string
			}
			TotalCount int
		}
	}
	if r := s.on(t, "", 0, "list"); !strings.Contains(r.stdout, id) || !strings.HasPrefix(r.stdout, "ID ") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	l := decode[list](t, s.on(t, "", 0, "list", "--title-contains", "LIFECYCLE", "-o", "json"))
	if len(l.Tasks.Edges) != 1 || l.Tasks.Edges[0].Node.ID != id || l.Tasks.TotalCount != 1 {
		t.Fatalf("list --title-contains: %+v", l.Tasks)
	}
	page := decode[list](t, s.on(t, "", 0, "list", "--first", "1", "-o", "json"))
	if len(page.Tasks.Edges) != 1 || !page.Tasks.PageInfo.HasNextPage || page.Tasks.TotalCount != 3 {
		t.Fatalf("list --first 1: %+v", page.Tasks)
	}
	rest := decode[list](t, s.on(t, "", 0, "list", "--first", "1", "--after", page.Tasks.PageInfo.EndCursor, "-o", "json"))
	if len(rest.Tasks.Edges) != 1 || rest.Tasks.Edges[0].Node.ID == page.Tasks.Edges[0].Node.ID {
		t.Fatalf("list --after: %+v", rest.Tasks)
	}
	all := decode[list](t, s.on(t, "", 0, "list", "--first", "1", "--all", "-o", "json"))
	seen := map[string]bool{}
	for _, e := range all.Tasks.Edges {
		seen[e.Node.ID] = true
	}
	if len(seen) != 3 || all.Tasks.PageInfo.HasNextPage {
		t.Fatalf("list --all: %+v", all.Tasks)
	}
	if l := decode[list](t, s.on(t, "", 0, "list", "--status", "active,completed", "-o", "json")); len(l.Tasks.Edges) != 0 {
		t.Fatalf("list --status active,completed: %+v", l.Tasks)
	}

	// get.
	type got struct{ Task cliTask }
	g := decode[got](t, s.on(t, "", 0, "get", id, "-o", "json"))
	if g.Task.ID != id || g.Task.Metadata["k"] != "v" || g.Task.RuntimeConfig["stepMs"] != float64(600000) ||
		!g.Task.RestartPolicy.AutoRestart || g.Task.RestartPolicy.MaxAttempts != 7 {
		t.Fatalf("get: %+v", g.Task)
	}
	if r := s.on(t, "", 0, "get", id); !strings.Contains(r.stdout, "SPEC_CLARIFICATION") || !strings.Contains(r.stdout, `{"k":"v"}`) {
		t.Fatalf("get table:\n%s", r.stdout)
	}
	s.on(t, "", ipacli.ExitNotFound, "get", "0196f2a0-0000-7000-8000-000000000000")

	// move: one step forward; a jump is a CONFLICT; a stale version too.
	s.on(t, "", 0, "move", id, "planning", "--note", "from the CLI")
	if tv := s.task(t, id); tv.Phase != "PLANNING" {
		t.Fatalf("after move: %s", tv.Phase)
	}
	r = s.on(t, "", ipacli.ExitConflict, "move", id, "REVIEW")
	if !strings.Contains(r.stderr, "CONFLICT/INVALID_TRANSITION") {
		t.Fatalf("bad move stderr: %s", r.stderr)
	}
	s.on(t, "", ipacli.ExitConflict, "move", id, "DEVELOPMENT", "--expected-version", "1")
	s.on(t, "", ipacli.ExitNotFound, "move", "0196f2a0-0000-7000-8000-000000000000", "PLANNING")

	// start the demo pod (it steps only every 10 minutes: phases stay ours).
	if r := s.on(t, "", 0, "start", id); !strings.Contains(r.stdout, "pod started") {
		t.Fatalf("start: %s", r.stdout)
	}
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 15*time.Second)
	type started struct {
		StartPod struct{ Started bool } `json:"startPod"`
	}
	if st := decode[started](t, s.on(t, "", 0, "start", id, "-o", "json")); st.StartPod.Started {
		t.Fatal("second start started another pod")
	}

	// watch: a change made through the API arrives as one JSON line; SIGINT
	// ends the watch cleanly with exit 0.
	w := s.startCLI(t, "", "watch", id, "-o", "json")
	to := []string{"DEVELOPMENT", "PLANNING"}
	deadline := time.Now().Add(20 * time.Second)
	var line map[string]struct {
		TaskID string `json:"taskId"`
		Type   string `json:"type"`
		Data   struct{ To string }
	}
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no event line from watch\nstderr: %s", w.stderr.String())
		}
		// The subscription may not be live yet: change again until a line comes.
		s.must(t, `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { id } } }`,
			map[string]any{"id": id, "to": to[i%2]}, nil)
		l, ok := w.next(2 * time.Second)
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("watch line is not JSON: %v: %s", err, l)
		}
		ev := line["taskEvents"]
		if ev.TaskID != id || ev.Type != "phase_changed" || (ev.Data.To != "DEVELOPMENT" && ev.Data.To != "PLANNING") {
			t.Fatalf("watch line: %s", l)
		}
		break
	}
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("watch after SIGINT: exit %d\nstderr: %s", code, w.stderr.String())
	}

	// events: the stored stream, filtered.
	type evs struct {
		Task struct {
			Events struct {
				Edges []struct {
					Node struct {
						Version int
						Type    string
					}
				}
				TotalCount int
			}
		}
	}
	e := decode[evs](t, s.on(t, "", 0, "events", id, "--types", "phase_changed,pod_started", "-o", "json"))
	if len(e.Task.Events.Edges) < 3 {
		t.Fatalf("events --types: %+v", e.Task.Events)
	}
	for _, ed := range e.Task.Events.Edges {
		if ed.Node.Type != "phase_changed" && ed.Node.Type != "pod_started" {
			t.Fatalf("events --types let %s through", ed.Node.Type)
		}
	}
	if r := s.on(t, "", 0, "events", id, "--first", "2"); !strings.Contains(r.stdout, "task_created") || !strings.Contains(r.stderr, "--after") {
		t.Fatalf("events --first 2:\n%s\n%s", r.stdout, r.stderr)
	}
	s.on(t, "", ipacli.ExitNotFound, "events", "0196f2a0-0000-7000-8000-000000000000")

	// stop, then stop again: nothing runs.
	s.on(t, "", 0, "stop", id, "--reason", "enough")
	s.waitPod(t, id, "STOPPED", "INACTIVE", 0, 15*time.Second)
	if r := s.on(t, "", ipacli.ExitConflict, "stop", id); !strings.Contains(r.stderr, "CONFLICT/NOT_RUNNING") {
		t.Fatalf("second stop stderr: %s", r.stderr)
	}

	// cancel: the reason is required (a usage error before sending, a
	// BAD_USER_INPUT when empty); after it the task is closed.
	s.on(t, "", ipacli.ExitUsage, "cancel", id)
	if r := s.on(t, "", ipacli.ExitBadInput, "cancel", id, "--reason", ""); !strings.Contains(r.stderr, "BAD_USER_INPUT/MISSING_REASON") {
		t.Fatalf("empty reason stderr: %s", r.stderr)
	}
	s.on(t, "", 0, "cancel", id, "--reason", "no longer needed")
	if tv := s.task(t, id); tv.Status != "CANCELLED" {
		t.Fatalf("after cancel: %s", tv.Status)
	}
	s.on(t, "", ipacli.ExitConflict, "complete", id)
	s.on(t, "", ipacli.ExitConflict, "restart", id)

	// complete another task.
	s.on(t, "", 0, "complete", a.CreateTask.Task.ID)

	// No server there: 7, for requests and for subscriptions.
	down := closedPort(t)
	for _, args := range [][]string{{"task", "list"}, {"task", "watch"}, {"task", "--server", down, "get", id}} {
		r := cli(t, []string{"IPA_SERVER=http://" + down}, args...)
		if r.code != ipacli.ExitUnavailable || !strings.Contains(r.stderr, "UNAVAILABLE") {
			t.Fatalf("%v with no server: exit %d, stderr %s", args, r.code, r.stderr)
		}
	}
}

// TestTaskCLILogs: the pod's output through `logs` (stdout and stderr kept
// apart), `logs -f` following it live and ending by itself when the task
// completes, and -o json.
func TestTaskCLILogs(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	config, _ := json.Marshal(map[string]any{
		"command": []string{"sh", "-c", "for i in 1 2 3; do echo out $i; echo err $i >&2; sleep 0.2; done"},
		"env":     tagEnv(h),
	})
	id := lastLine(s.on(t, "", 0, "create", "logs", "--runtime", "exec", "--config", string(config)).stdout)

	f := s.startCLI(t, "", "logs", id, "-f")
	s.on(t, "", 0, "start", id)
	var got []string
	for len(got) < 3 {
		l, ok := f.next(20 * time.Second)
		if !ok {
			t.Fatalf("logs -f gave %q, then nothing\nstderr: %s", got, f.stderr.String())
		}
		got = append(got, l)
	}
	if strings.Join(got, "|") != "out 1|out 2|out 3" {
		t.Fatalf("logs -f stdout: %q", got)
	}
	eventually(t, 10*time.Second, func() string {
		if n := strings.Count(f.stderr.String(), "err "); n != 3 {
			return "logs -f stderr: " + f.stderr.String()
		}
		return ""
	})
	s.waitPod(t, id, "STOPPED", "INACTIVE", 0, 15*time.Second)
	s.on(t, "", 0, "complete", id)
	if code := f.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("logs -f after complete: exit %d\n%s", code, f.stderr.String())
	}

	r := s.on(t, "", 0, "logs", id)
	if r.stdout != "out 1\nout 2\nout 3\n" || r.stderr != "err 1\nerr 2\nerr 3\n" {
		t.Fatalf("logs: stdout %q stderr %q", r.stdout, r.stderr)
	}
	type doc struct {
		Task struct {
			Status string
			Events struct {
				Edges []struct {
					Node struct {
						Type string
						Data struct {
							Lines []struct{ Stream, Text string }
						}
					}
				}
			}
		}
	}
	d := decode[doc](t, s.on(t, "", 0, "logs", id, "-o", "json"))
	n := 0
	for _, e := range d.Task.Events.Edges {
		if e.Node.Type != "pod_output" {
			t.Fatalf("logs -o json has a %s event", e.Node.Type)
		}
		n += len(e.Node.Data.Lines)
	}
	if n != 6 || d.Task.Status != "COMPLETED" {
		t.Fatalf("logs -o json: %d lines, status %s", n, d.Task.Status)
	}
	// A closed task's logs -f prints what there is and ends: JSON lines.
	r = s.on(t, "", 0, "logs", id, "-f", "-o", "json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["taskEvents"] == nil {
			t.Fatalf("logs -f -o json line %q: %v", l, err)
		}
	}
	if len(lines) != len(d.Task.Events.Edges) {
		t.Fatalf("logs -f -o json: %d lines for %d events", len(lines), len(d.Task.Events.Edges))
	}
}

// TestTaskCLIAuth: tokens from IPA_TOKEN or --token; none, a bad one, or a
// role that may not do it exit 6, over HTTP and over WebSocket.
func TestTaskCLIAuth(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	_, operator := h.mintCLI(t, "ops", "operator")
	_, viewer := h.mintCLI(t, "eve", "viewer")

	id := lastLine(s.on(t, operator, 0, "create", "with a token").stdout)
	r := cli(t, []string{"IPA_SERVER=" + s.url}, "task", "get", id, "--token", viewer, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Fatalf("get --token: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct {
		token string
		args  []string
		code  string
	}{
		{"", []string{"list"}, "UNAUTHENTICATED"},
		{"not-a-token", []string{"list"}, "UNAUTHENTICATED"},
		{"not-a-token", []string{"watch"}, "UNAUTHENTICATED"},
		{"", []string{"watch"}, "UNAUTHENTICATED"}, // refused in connection_init
		{viewer, []string{"create", "nope"}, "FORBIDDEN"},
		{viewer, []string{"start", id}, "FORBIDDEN"},
	} {
		r := s.on(t, c.token, ipacli.ExitAuth, c.args...)
		if !strings.Contains(r.stderr, c.code) {
			t.Fatalf("%v: stderr %q, want %s", c.args, r.stderr, c.code)
		}
	}

	// A viewer may watch: taskChanged shows the operator's change.
	w := s.startCLI(t, viewer, "watch", "--title-contains", "token", "-o", "json")
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no taskChanged line\nstderr: %s", w.stderr.String())
		}
		s.on(t, operator, 0, "move", id, []string{"PLANNING", "SPEC_CLARIFICATION"}[i%2])
		l, ok := w.next(2 * time.Second)
		if !ok {
			continue
		}
		var m struct{ TaskChanged cliTask }
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.TaskChanged.ID != id {
			t.Fatalf("taskChanged line %q: %v", l, err)
		}
		break
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("watch after SIGTERM: exit %d\n%s", code, w.stderr.String())
	}
}

// TestTaskCLIUsage: bad flags and arguments exit 2 before anything is
// sent (no server runs here), the help documents the exit codes, and
// completion offers the phases.
func TestTaskCLIUsage(t *testing.T) {
	t.Parallel()
	env := []string{"IPA_SERVER=http://" + closedPort(t)}
	for _, args := range [][]string{
		{"task", "frob"},
		{"task", "list", "--bogus"},
		{"task", "list", "--status", "RUNNING"},
		{"task", "list", "-o", "yaml"},
		{"task", "get"},
		{"task", "move", "some-id", "NOWHERE"},
		{"task", "create"},
		{"task", "create", "t", "--config", "{not json"},
		{"task", "create", "t", "--label", "novalue"},
		{"task", "cancel", "some-id"},
		{"task", "start", "a", "b"},
		{"task", "watch", "--after-version", "3"},
		{"task", "list", "--server", "ftp://x"},
	} {
		if r := cli(t, env, args...); r.code != ipacli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %s)", args, r.code, ipacli.ExitUsage, r.stderr)
		}
	}
	r := cli(t, env, "task", "--help")
	for _, want := range []string{"Exit codes:", "NOT_FOUND", "IPA_SERVER", "IPA_TOKEN"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ipa task --help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, env, "__complete", "task", "move", "some-id", "")
	if !strings.Contains(r.stdout, "REVIEW\n") {
		t.Errorf("completion of move's phase: %q", r.stdout)
	}
	r = cli(t, env, "__complete", "task", "list", "--status", "")
	if !strings.Contains(r.stdout, "ACTIVE\n") {
		t.Errorf("completion of --status: %q", r.stdout)
	}
	if r := cli(t, env, "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "__start_ipa") {
		t.Errorf("completion bash: exit %d", r.code)
	}
}
