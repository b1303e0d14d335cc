package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
)

// TestVersion: `ipa version` and `ipa --version` print the same line with
// the version, commit, build time and Go version.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, stderr, code := ipaCmd(t, "version")
	if code != 0 {
		t.Fatalf("ipa version: exit %d, %q", code, stderr)
	}
	re := regexp.MustCompile(`^ipa \S+ \(commit \S+, built \S+, go1\.\S+ \S+/\S+\)\n$`)
	if !re.MatchString(out) {
		t.Fatalf("ipa version printed %q, want it to match %s", out, re)
	}
	flag, _, code := ipaCmd(t, "--version")
	if code != 0 || flag != out {
		t.Fatalf("ipa --version: exit %d, %q; want %q", code, flag, out)
	}
}

// TestDatabaseURLSafety: a --database value that would start on the wrong
// store is refused with a message saying what to do, and nothing is created.
func TestDatabaseURLSafety(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo", "dir", "ipa.db")

	_, stderr, code := ipaCmd(t, "migrate", "--database", "sqlite://"+typo)
	if code != 2 || !strings.Contains(stderr, "does not exist") || !strings.Contains(stderr, "--create-dirs") {
		t.Fatalf("missing directory: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !os.IsNotExist(err) {
		t.Fatalf("a refused --database created its directory: %v", err)
	}
	// serve refuses it too, before it listens or writes anything.
	_, stderr, code = ipaCmd(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--database", "sqlite://"+typo)
	if code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("serve on a missing directory: exit %d, %q", code, stderr)
	}

	out, stderr, code := ipaCmd(t, "migrate", "--create-dirs", "--database", "sqlite://"+typo)
	if code != 0 {
		t.Fatalf("--create-dirs: exit %d, %q %q", code, out, stderr)
	}
	if _, err := os.Stat(typo); err != nil {
		t.Fatalf("--create-dirs did not create the store: %v", err)
	}

	bare := filepath.Join(dir, "ipa.db")
	_, stderr, code = ipaCmd(t, "migrate", "--database", bare)
	if code != 2 || !strings.Contains(stderr, "did you mean sqlite://"+bare+"?") {
		t.Fatalf("path without scheme: exit %d, %q", code, stderr)
	}
	_, stderr, code = ipaCmd(t, "migrate", "--database", "mysql://u:hunter2@db/x")
	if code != 2 || !strings.Contains(stderr, `unsupported scheme "mysql"`) || strings.Contains(stderr, "hunter2") {
		t.Fatalf("unknown scheme: exit %d, %q", code, stderr)
	}

	// Port 1 on loopback refuses connections.
	_, stderr, code = ipaCmd(t, "migrate", "--database", "postgres://ipa:hunter2@127.0.0.1:1/tasks")
	if code == 0 || strings.Contains(stderr, "hunter2") ||
		!strings.Contains(stderr, "cannot reach PostgreSQL at 127.0.0.1:1") || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("unreachable PostgreSQL: exit %d, %q", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("refused commands left files: %v", entries)
	}
}

// TestTaskCLIIDPrefixAndLabels: every command taking a task id takes any
// unique start of it; a start shared by several tasks is refused with their
// list; labels show in get and filter list.
func TestTaskCLIIDPrefixAndLabels(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	var ids []string
	for _, title := range []string{"alpha", "beta", "gamma"} {
		ids = append(ids, lastLine(s.on(t, "", 0, "create", title, "--label", "team="+title, "--label", "env=test").stdout))
	}
	// The shortest start of ids[0] that no other id shares, and the
	// longest start all three share (UUIDv7s made in a row share their
	// time bits).
	unique := ""
	for n := 1; n <= len(ids[0]); n++ {
		p := ids[0][:n]
		if !strings.HasPrefix(ids[1], p) && !strings.HasPrefix(ids[2], p) {
			unique = p
			break
		}
	}
	common := ids[0]
	for _, id := range ids[1:] {
		for !strings.HasPrefix(id, common) {
			common = common[:len(common)-1]
		}
	}
	if common == "" {
		t.Skip("the three ids share no first character; nothing ambiguous to try") // never with UUIDv7
	}

	r := s.on(t, "", 0, "get", unique)
	if !strings.Contains(r.stdout, ids[0]) || !strings.Contains(r.stdout, "LABELS") || !strings.Contains(r.stdout, "env=test,team=alpha") {
		t.Fatalf("get %s:\n%s", unique, r.stdout)
	}
	// Upper case works too: ids are hexadecimal.
	s.on(t, "", 0, "get", strings.ToUpper(unique))
	r = s.on(t, "", 0, "move", unique, "PLANNING")
	if !strings.Contains(r.stdout, "PLANNING") {
		t.Fatalf("move by prefix:\n%s", r.stdout)
	}
	s.on(t, "", 0, "events", unique)

	r = s.on(t, "", ipacli.ExitUsage, "get", common)
	for _, id := range ids {
		if !strings.Contains(r.stderr, id) {
			t.Fatalf("an ambiguous prefix's error does not list %s:\n%s", id, r.stderr)
		}
	}
	s.on(t, "", ipacli.ExitNotFound, "get", "zz")
	// The API refuses a prefix no id can start with, and finds by one.
	for _, bad := range []string{"xyz", ids[0][:8] + "x", ids[0] + "0", ids[0][:9] + "-"} {
		s.mustFail(t, `query($p: String) { tasks(filter: {idPrefix: $p}) { totalCount } }`, map[string]any{"p": bad}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	}
	var found struct{ Tasks struct{ TotalCount int } }
	s.must(t, `query($p: String) { tasks(filter: {idPrefix: $p}) { totalCount } }`, map[string]any{"p": ids[1]}, &found)
	if found.Tasks.TotalCount != 1 {
		t.Fatalf("idPrefix of a whole id: %d tasks", found.Tasks.TotalCount)
	}
	s.on(t, "", ipacli.ExitNotFound, "cancel", "ffff", "--reason", "x")

	type list struct {
		Tasks struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	l := decode[list](t, s.on(t, "", 0, "list", "--label", "team=beta", "--label", "env=test", "-o", "json"))
	if len(l.Tasks.Edges) != 1 || l.Tasks.Edges[0].Node.ID != ids[1] {
		t.Fatalf("list --label team=beta: %+v", l)
	}
	s.on(t, "", ipacli.ExitUsage, "list", "--label", "novalue")
}

// TestTaskCLILogsFollowEndsWithPod: logs -f ends by itself once the pod has
// ended — stopped, or crashed with no automatic restart — with the task
// still open.
func TestTaskCLILogsFollowEndsWithPod(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	create := func(title, script string) string {
		config, _ := json.Marshal(map[string]any{"command": []string{"sh", "-c", script}, "env": tagEnv(h)})
		return lastLine(s.on(t, "", 0, "create", title, "--runtime", "exec", "--restart-auto=false", "--config", string(config)).stdout)
	}

	long := create("long", "echo started; sleep 120")
	f := s.startCLI(t, "", "logs", "-f", long)
	s.on(t, "", 0, "start", long)
	if l, ok := f.next(30 * time.Second); !ok || l != "started" {
		t.Fatalf("logs -f: %q, %v\nstderr: %s", l, ok, f.stderr.String())
	}
	s.on(t, "", 0, "stop", long)
	if code := f.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("logs -f after stop: exit %d\n%s", code, f.stderr.String())
	}
	// Started on a pod that has ended: prints and returns.
	if r := s.on(t, "", 0, "logs", "-f", long); r.stdout != "started\n" {
		t.Fatalf("logs -f of a stopped pod: %q", r.stdout)
	}

	crash := create("crash", "echo dying; exit 3")
	f = s.startCLI(t, "", "logs", "-f", crash)
	s.on(t, "", 0, "start", crash)
	if code := f.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("logs -f after a crash: exit %d\n%s", code, f.stderr.String())
	}
	if l, ok := f.next(time.Second); l != "dying" {
		t.Fatalf("logs -f of the crashing pod: %q, %v", l, ok)
	}
	r := s.on(t, "", 0, "get", crash, "-o", "json")
	if !strings.Contains(r.stdout, `"ACTIVE"`) && !strings.Contains(r.stdout, `"INACTIVE"`) {
		t.Fatalf("the task closed: %s", r.stdout)
	}
}

// TestContexts: ipa context add/use/list/remove keep servers and tokens in
// a 0600 file, and ipa task uses the current one when no server is given;
// a server given on the command line never gets a context's token.
func TestContexts(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	cfg := filepath.Join(t.TempDir(), "conf", "ipa", "config")
	env := []string{"IPA_CONFIG=" + cfg}

	if r := cli(t, env, "task", "list"); r.code == 0 {
		t.Fatalf("with no context the default server answered: %+v", r)
	}
	if r := cli(t, env, "context", "add", "dead", "--server", "http://"+closedPort(t)); r.code != 0 {
		t.Fatalf("context add: %+v", r)
	}
	add := exec.Command(ipaBin, "context", "add", "here", "--server", s.url, "--token-stdin")
	add.Env = cliEnv(env...)
	add.Stdin = strings.NewReader("sekret-token\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("context add --token-stdin: %v\n%s", err, out)
	}
	fi, err := os.Stat(cfg)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v", err, fi.Mode())
	}
	r := cli(t, env, "context", "list")
	if r.code != 0 || strings.Contains(r.stdout, "sekret") || !regexp.MustCompile(`(?m)^\*\s+dead\s`).MatchString(r.stdout) {
		t.Fatalf("context list (the first added is current):\n%s", r.stdout)
	}
	if r := cli(t, env, "task", "list"); r.code != ipacli.ExitUnavailable {
		t.Fatalf("task list on the dead context: exit %d, %s", r.code, r.stderr)
	}
	// The server runs with the local door open (no token yet), so any
	// token is refused: the context's token is what makes it fail.
	if r := cli(t, env, "task", "list", "--context", "here"); r.code != ipacli.ExitAuth {
		t.Fatalf("task list --context here (its token sent): exit %d, %s", r.code, r.stderr)
	}
	if r := cli(t, env, "context", "use", "nowhere"); r.code != ipacli.ExitUsage || !strings.Contains(r.stderr, "dead, here") {
		t.Fatalf("context use of an unknown name: %+v", r)
	}
	if r := cli(t, env, "context", "use", "here"); r.code != 0 {
		t.Fatalf("context use: %+v", r)
	}
	if r := cli(t, env, "task", "list"); r.code != ipacli.ExitAuth {
		t.Fatalf("task list on the current context: exit %d, %s", r.code, r.stderr)
	}
	// --server given: the context's token stays home.
	if r := cli(t, env, "task", "list", "--server", s.url); r.code != 0 {
		t.Fatalf("task list --server: exit %d, %s", r.code, r.stderr)
	}
	if r := cli(t, append(env, "IPA_SERVER="+s.url), "task", "list"); r.code != 0 {
		t.Fatalf("IPA_SERVER: exit %d, %s", r.code, r.stderr)
	}
	if r := cli(t, env, "context", "remove", "here"); r.code != 0 {
		t.Fatalf("context remove: %+v", r)
	}
	if r := cli(t, env, "context", "list"); strings.Contains(r.stdout, "here") {
		t.Fatalf("removed context still listed:\n%s", r.stdout)
	}
}

// TestCLIHelp: "did you mean", the exit codes in ipa task --help only, and
// no server-only flag in the help of a client command.
func TestCLIHelp(t *testing.T) {
	t.Parallel()
	r := cli(t, nil, "tsak")
	if r.code == 0 || !strings.Contains(r.stderr, "Did you mean this?") || !strings.Contains(r.stderr, "task") {
		t.Fatalf("ipa tsak: %+v", r)
	}
	r = cli(t, nil, "task", "lsit")
	if r.code != ipacli.ExitUsage || !strings.Contains(r.stderr, "list") {
		t.Fatalf("ipa task lsit: %+v", r)
	}
	r = cli(t, nil, "task", "logs", "--help")
	for _, bad := range []string{"--database", "--log-level", "NOT_FOUND"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("ipa task logs --help shows %s:\n%s", bad, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--server") {
		t.Errorf("ipa task logs --help:\n%s", r.stdout)
	}
	if r := cli(t, nil, "serve", "--help"); !strings.Contains(r.stdout, "--database") || !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("ipa serve --help lacks --database or its examples:\n%s", r.stdout)
	}
}
