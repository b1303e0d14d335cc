package main

// End-to-end harness: the real ipa binary, real plugin processes, real
// signals. TestMain builds the binary once (without -race, so plugins start
// fast); each test runs its own `ipa serve` on a fresh SQLite database and
// data dir, in its own process group, with a unique IPA_E2E_TAG in its
// environment. Plugins inherit only a minimal environment, so the server
// passes the tag on by name (--plugin-env, as IPA_PLUGIN_ENV), and every
// process a test caused (server, plugins) can be found by that tag in
// /proc/<pid>/environ, even after the server died and its plugins were
// reparented. An exec runtime's commands get a clean environment instead, so
// tests hand them the tag in runtimeConfig.env (tagEnv). Cleanup kills them
// all, whatever the test did.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

const tagVar = "IPA_E2E_TAG"

var (
	ipaBin string // the built binary
	runID  = fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	tagSeq atomic.Int64
)

// secretKeyFile seals webhook secrets in every server of the run, as
// servers sharing a database share one key (IPA_SECRET_KEY_FILE).
var secretKeyFile string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ipa-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	ipaBin = filepath.Join(dir, "ipa")
	_ = os.Chmod(dir, 0o755) // a server run as another user (home.cred) must reach the binary
	secretKeyFile = filepath.Join(dir, "secret.key")
	if err := os.WriteFile(secretKeyFile, []byte(strings.Repeat("5e", 32)+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	build := exec.Command("go", "build", "-o", ipaBin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=") // no -race for the binary under test
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/ipa: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	pgtest.Stop()
	// Last line of defence: nothing this run started survives it.
	for _, pid := range taggedPids(runID) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------- processes

// procState returns the state letter of /proc/<pid>/stat ("" when gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// alive reports whether pid names a live process: kill(pid, 0) succeeds and
// it is not a zombie waiting to be reaped.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	return procState(pid) != "Z"
}

// environHas reports whether pid's environment contains tag in tagVar (a
// prefix match, so the run id finds every test's processes).
func environHas(pid int, tag string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), tagVar+"="); ok && strings.HasPrefix(v, tag) {
			return true
		}
	}
	return false
}

// tagEnv is an exec runtimeConfig.env that tags the command as h's.
func tagEnv(h *home) map[string]string { return map[string]string{tagVar: h.tag} }

// taggedPids lists the live processes whose tag starts with tag.
func taggedPids(tag string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if environHas(pid, tag) && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// ourAlive reports whether pid is alive and still one of the test's
// processes (not a recycled pid).
func ourAlive(pid int, tag string) bool { return alive(pid) && environHas(pid, tag) }

// waitGone waits until none of pids is one of tag's live processes.
func waitGone(pids []int, tag string, within time.Duration) []int {
	deadline := time.Now().Add(within)
	for {
		var left []int
		for _, p := range pids {
			if ourAlive(p, tag) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmRSSKiB reads VmRSS of pid in KiB.
func vmRSSKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// ---------------------------------------------------------------- server

// home is what outlives one server process: database, data dir, tag, flags.
type home struct {
	t       testing.TB
	tag     string
	db      string
	dataDir string
	args    []string
	env     []string // extra server environment (plugins inherit only what --plugin-env names)
	// cred, when set, runs the server as another OS user (the test runs as
	// root); its database and data dir must be that user's.
	cred *syscall.Credential
	// token, when set, is sent as the Bearer credential of every request
	// the harness makes. A home with cred gets an admin token minted as
	// that user before its first start: the anonymous local door admits
	// only connections of the server's own OS user, and the test's client
	// is root.
	token string

	mu      sync.Mutex
	servers []*server
}

// newHome makes a fresh database and data dir and registers the cleanup
// that kills every process of the home (and prints server logs on failure).
func newHome(t testing.TB, args ...string) *home {
	t.Helper()
	dir := t.TempDir()
	h := &home{
		t:       t,
		tag:     fmt.Sprintf("%s-%d", runID, tagSeq.Add(1)),
		db:      "sqlite://" + filepath.Join(dir, "ipa.db"),
		dataDir: filepath.Join(dir, "data"),
		args:    args,
	}
	t.Cleanup(h.cleanup)
	return h
}

func (h *home) cleanup() {
	h.mu.Lock()
	servers := slices.Clone(h.servers)
	h.mu.Unlock()
	for _, s := range servers {
		s.kill(syscall.SIGKILL)
		_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
	}
	for _, pid := range taggedPids(h.tag) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, s := range servers {
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
		}
	}
	if h.t.Failed() {
		for i, s := range servers {
			h.t.Logf("---- server #%d (%s) log tail ----\n%s", i+1, s.addr, s.logTail(80))
		}
	}
	if left := waitGone(taggedPids(h.tag), h.tag, 3*time.Second); len(left) > 0 {
		h.t.Errorf("processes survived cleanup: %v", left)
	}
}

// mintAs creates a token with `ipa token create`, run as the home's OS user
// (so a new store is that user's), and returns its secret.
func (h *home) mintAs(t testing.TB, actor, role string) string {
	t.Helper()
	cmd := exec.Command(ipaBin, "token", "create", "--actor", actor, "--role", role, "--database", h.db)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: h.cred}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ipa token create as uid %d: %v\n%s", h.cred.Uid, err, out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return lines[len(lines)-1]
}

// logBuf is a goroutine-safe log capture.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is one running `ipa serve`.
type server struct {
	h      *home
	cmd    *exec.Cmd
	log    *logBuf
	addr   string
	url    string
	client *http.Client

	exited  chan struct{}
	waitErr error
}

var servingRE = regexp.MustCompile(`msg="ipa serving" addr=(\S+)`)

// start runs `ipa serve` on the home with extra flags and waits for /healthz.
func (h *home) start(extra ...string) *server {
	t := h.t
	t.Helper()
	if h.cred != nil && h.token == "" && h.db != "" {
		h.token = h.mintAs(t, "harness", "admin")
	}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", h.dataDir,
		"--shutdown-timeout", "10s", "--log-level", "info"}
	if h.db != "" { // "": the test names the database its own way (--database-url-file)
		args = append(args, "--database", h.db)
	}
	args = append(append(args, h.args...), extra...)
	cmd := exec.Command(ipaBin, args...)
	env := append([]string{tagVar + "=" + h.tag, "IPA_PLUGIN_ENV=" + tagVar, "IPA_SECRET_KEY_FILE=" + secretKeyFile}, h.env...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPA_") {
			env = append(env, kv)
		}
	}
	// The home's own variables last: the later of two values wins, so
	// h.env can also replace one of the test's environment (PATH).
	cmd.Env = append(env, h.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: h.cred}
	s := &server{h: h, cmd: cmd, log: &logBuf{}, exited: make(chan struct{}),
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ipa serve: %v", err)
	}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	h.mu.Lock()
	h.servers = append(h.servers, s)
	h.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for s.addr == "" {
		if m := servingRE.FindStringSubmatch(s.log.String()); m != nil {
			s.addr = m[1]
			break
		}
		select {
		case <-s.exited:
			t.Fatalf("ipa serve exited before serving: %v\n%s", s.waitErr, s.logTail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipa serve did not report its address in time\n%s", s.logTail(40))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.url = "http://" + s.addr
	for {
		resp, err := s.client.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipa serve not healthy in time: %v\n%s", err, s.logTail(40))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) kill(sig syscall.Signal) {
	select {
	case <-s.exited:
	default:
		_ = syscall.Kill(s.pid(), sig)
	}
}

// stop sends SIGTERM and waits for the exit; it fails the test unless the
// server exits 0 within limit.
func (s *server) stop(t testing.TB, limit time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	s.kill(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(limit):
		t.Fatalf("server did not exit within %s of SIGTERM", limit)
	}
	if s.waitErr != nil {
		t.Fatalf("server exit after SIGTERM: %v (want status 0)", s.waitErr)
	}
	return time.Since(began)
}

// crash SIGKILLs the server alone (its plugins live in their own groups)
// and waits until it is gone.
func (s *server) crash(t testing.TB) {
	t.Helper()
	s.kill(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not die of SIGKILL")
	}
}

func (s *server) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(s.log.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------- GraphQL

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
	} `json:"extensions"`
}

func (e gqlError) String() string {
	return fmt.Sprintf("%s/%s: %s", e.Extensions.Code, e.Extensions.Reason, e.Message)
}

// do posts one GraphQL operation; it fails the test only on transport or
// malformed-response errors.
func (s *server) do(t testing.TB, query string, vars map[string]any) (json.RawMessage, []gqlError) {
	t.Helper()
	data, errs, err := s.post(context.Background(), query, vars)
	if err != nil {
		t.Fatalf("graphql: %v", err)
	}
	return data, errs
}

func (s *server) post(ctx context.Context, query string, vars map[string]any) (json.RawMessage, []gqlError, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.h.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.h.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("HTTP %d: decode: %w", resp.StatusCode, err)
	}
	return out.Data, out.Errors, nil
}

// must runs an operation that must succeed and decodes data into out.
func (s *server) must(t testing.TB, query string, vars map[string]any, out any) {
	t.Helper()
	data, errs := s.do(t, query, vars)
	if len(errs) > 0 {
		t.Fatalf("graphql errors: %v\nquery: %s", errs, query)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
	}
}

// mustFail runs an operation that must fail with code (and reason, if set).
func (s *server) mustFail(t testing.TB, query string, vars map[string]any, code, reason string) gqlError {
	t.Helper()
	_, errs := s.do(t, query, vars)
	if len(errs) == 0 {
		t.Fatalf("want error %s/%s, got success\nquery: %s", code, reason, query)
	}
	e := errs[0]
	if e.Extensions.Code != code || (reason != "" && e.Extensions.Reason != reason) {
		t.Fatalf("want error %s/%s, got %v", code, reason, errs)
	}
	return e
}

// ---------------------------------------------------------------- API types

type crash struct {
	At       string `json:"at"`
	ExitCode *int   `json:"exitCode"`
	Signal   string `json:"signal"`
	Reason   string `json:"reason"`
	UptimeMs int    `json:"uptimeMs"`
}

type podView struct {
	State    string          `json:"state"`
	PID      int             `json:"pid"`
	Restarts int             `json:"restarts"`
	Crashes  []crash         `json:"crashes"`
	Live     json.RawMessage `json:"live"`
}

type taskView struct {
	ID      string  `json:"id"`
	Status  string  `json:"status"`
	Phase   string  `json:"phase"`
	Runtime string  `json:"runtime"`
	Version int     `json:"version"`
	Pod     podView `json:"pod"`
}

type event struct {
	ID            string          `json:"id"`
	Version       int             `json:"version"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       string          `json:"actorId"`
	CorrelationID string          `json:"correlationId"`
	CausationID   string          `json:"causationId"`
	OccurredAt    string          `json:"occurredAt"`
}

const taskFields = `id status phase runtime version pod { state pid restarts crashes(last: 5) { at exitCode signal reason uptimeMs } live }`

// createTask creates a task from input (CreateTaskInput fields) and returns its id.
func (s *server) createTask(t testing.TB, input map[string]any) string {
	t.Helper()
	if _, ok := input["title"]; !ok {
		input["title"] = t.Name()
	}
	var out struct {
		CreateTask struct{ Task taskView } `json:"createTask"`
	}
	s.must(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`, map[string]any{"in": input}, &out)
	return out.CreateTask.Task.ID
}

func (s *server) task(t testing.TB, id string) taskView {
	t.Helper()
	var out struct{ Task *taskView }
	s.must(t, `query($id: ID!) { task(id: $id) { `+taskFields+` } }`, map[string]any{"id": id}, &out)
	if out.Task == nil {
		t.Fatalf("task %s not found", id)
	}
	return *out.Task
}

// startPod calls startPod and returns (started, task).
func (s *server) startPod(t testing.TB, id string) (bool, taskView) {
	t.Helper()
	var out struct {
		StartPod struct {
			Started bool
			Task    taskView
		} `json:"startPod"`
	}
	s.must(t, `mutation($id: ID!) { startPod(taskId: $id) { started task { `+taskFields+` } } }`, map[string]any{"id": id}, &out)
	return out.StartPod.Started, out.StartPod.Task
}

// events returns the task's events of the given types (all when none), oldest first.
func (s *server) events(t testing.TB, id string, types ...string) []event {
	t.Helper()
	var all []event
	after := any(nil)
	for {
		var out struct {
			Task struct {
				Events struct {
					Edges []struct {
						Node event
					}
					PageInfo struct {
						HasNextPage bool
						EndCursor   string
					}
				}
			}
		}
		vars := map[string]any{"id": id, "after": after}
		if len(types) > 0 {
			vars["types"] = types
		}
		s.must(t, `query($id: ID!, $after: String, $types: [String!]) { task(id: $id) { events(first: 500, after: $after, types: $types) {
			edges { node { id version type data actorId correlationId causationId occurredAt } } pageInfo { hasNextPage endCursor } } } }`, vars, &out)
		for _, e := range out.Task.Events.Edges {
			all = append(all, e.Node)
		}
		if !out.Task.Events.PageInfo.HasNextPage {
			return all
		}
		after = out.Task.Events.PageInfo.EndCursor
	}
}

// eventually polls cond every 25ms until it returns "" (done) or within
// passes; then it fails with cond's last complaint.
func eventually(t testing.TB, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, msg)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitPod waits until the task's pod is in state (and, for RUNNING, has a
// live pid other than notPID) and the task's status is status (any when
// ""), and returns the task. (pod.state comes from the supervisor's memory,
// status from the projection, which follows a few ms later.)
func (s *server) waitPod(t testing.TB, id, state, status string, notPID int, within time.Duration) taskView {
	t.Helper()
	var tv taskView
	eventually(t, within, func() string {
		tv = s.task(t, id)
		if tv.Pod.State != state || (status != "" && tv.Status != status) {
			return fmt.Sprintf("pod state %s status %s, want %s %s", tv.Pod.State, tv.Status, state, status)
		}
		if state == "RUNNING" && (tv.Pod.PID <= 0 || tv.Pod.PID == notPID) {
			return fmt.Sprintf("pod pid %d (not wanted: %d)", tv.Pod.PID, notPID)
		}
		return ""
	})
	return tv
}

// dataField decodes one field of an event's data.
func dataField[T any](t testing.TB, e event, field string) T {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("event %s data %s: %v", e.Type, e.Data, err)
	}
	var v T
	if raw, ok := m[field]; ok {
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("event %s data.%s = %s: %v", e.Type, field, raw, err)
		}
	}
	return v
}

// ofType filters events by type.
func ofType(evs []event, typ string) []event {
	var out []event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// demoConfig is the demo runtime config with the given step.
func demoConfig(stepMs int) map[string]any { return map[string]any{"stepMs": stepMs} }
