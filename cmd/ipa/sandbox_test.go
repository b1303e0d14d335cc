package main

// The exec sandbox (bubblewrap) with real bwrap processes: what a command
// tries against the server (write outside its workspace, read the store,
// read the server's /proc/<pid>/environ, connect to its port, fork past its
// limit) is refused, and the same script under --sandbox off shows each
// attempt would succeed there, so the refusals mean something.

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outsideHome makes a home whose store and data directory sit outside /tmp
// (the sandbox's /tmp is private anyway, so a store under /tmp would be
// hidden for that reason alone), owned by cred's user when cred is set.
func outsideHome(t *testing.T, cred *syscall.Credential, args ...string) (*home, string) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "ipa-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	h := newHome(t, args...)
	h.db = "sqlite://" + filepath.Join(dir, "ipa.db")
	h.dataDir = filepath.Join(dir, "data")
	h.cred = cred
	if cred != nil {
		// The run's key file is root's: this server makes its own beside its store.
		h.env = append(h.env, "IPA_SECRET_KEY_FILE=")
	}
	return h, dir
}

// nobodyCred is the user nobody when the test runs as root, else nil.
func nobodyCred(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the test runs as root and needs the user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// execRun runs an exec pod of s with cfg (command and env set by the
// caller or here) and returns its output lines and its exited event.
func execRun(t *testing.T, h *home, s *server, script string, cfg map[string]any) ([]string, event) {
	t.Helper()
	if cfg == nil {
		cfg = map[string]any{}
	}
	cfg["command"] = []string{"sh", "-c", script}
	if _, ok := cfg["env"]; !ok {
		cfg["env"] = tagEnv(h)
	}
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": cfg})
	s.startPod(t, id)
	var exited []event
	eventually(t, 60*time.Second, func() string {
		if exited = s.events(t, id, "runtime.exec.exited"); len(exited) == 0 {
			return "the command has not ended"
		}
		return ""
	})
	type line struct{ Stream, Text string }
	var out []string
	for _, e := range s.events(t, id, "pod_output") {
		for _, l := range dataField[[]line](t, e, "lines") {
			out = append(out, l.Text)
		}
	}
	return out, exited[0]
}

// escapeScript tries each escape and prints "<what>: allowed" or
// "<what>: refused".
func escapeScript(dir, db string, serverPID int, port string) string {
	return `
		try() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "$what: allowed"; else echo "$what: refused"; fi; }
		try workspace sh -c 'echo x > ./inside && [ -s ./inside ]'
		try write-outside sh -c 'echo x > ` + dir + `/outside-` + strconv.Itoa(serverPID) + `'
		try read-db sh -c 'head -c 15 ` + db + ` | grep -q "SQLite format"'
		try server-environ sh -c 'tr "\0" "\n" < /proc/` + strconv.Itoa(serverPID) + `/environ | grep -q ` + podDBPassword + `'
		try connect bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + `'
		echo end`
}

func verdicts(out []string) map[string]string {
	v := map[string]string{}
	for _, l := range out {
		if what, res, ok := strings.Cut(l, ": "); ok && (res == "allowed" || res == "refused") {
			v[what] = res
		}
	}
	return v
}

func TestSandboxRefusesEscapes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"auto", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h, dir := outsideHome(t, nil, "--sandbox", mode)
			h.env = append(h.env, secretEnv()...)
			s := h.start()
			_, port, _ := strings.Cut(s.addr, ":")
			out, _ := execRun(t, h, s, escapeScript(dir, filepath.Join(dir, "ipa.db"), s.pid(), port), nil)
			v := verdicts(out)
			if v["workspace"] != "allowed" {
				t.Fatalf("the command cannot even write its workspace: %q", out)
			}
			for _, what := range []string{"write-outside", "read-db", "connect"} {
				want := "refused"
				if mode == "off" {
					want = "allowed" // the check can fail: without the sandbox it succeeds
				}
				if v[what] != want {
					t.Errorf("--sandbox %s: %s %s, want %s (output %q)", mode, what, v[what], want, out)
				}
			}
			// The server is not dumpable, which stops a same-user reader
			// but not root: as root, only the sandbox stops this read.
			want := "refused"
			if mode == "off" && os.Geteuid() == 0 {
				want = "allowed"
			}
			if v["server-environ"] != want {
				t.Errorf("--sandbox %s: server-environ %s, want %s (output %q)", mode, v["server-environ"], want, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "outside-"+strconv.Itoa(s.pid()))); (err == nil) != (mode == "off") {
				t.Errorf("--sandbox %s: file written outside the workspace exists: %v", mode, err == nil)
			}
		})
	}
}

// The process limit holds inside the sandbox. The kernel never applies
// RLIMIT_NPROC to root, so as root the server runs as nobody.
func TestSandboxProcessLimit(t *testing.T) {
	t.Parallel()
	h, _ := outsideHome(t, nobodyCred(t))
	s := h.start()
	// A shell that cannot fork dies at once, so the forks run in a child
	// shell and the parent, with builtins only, says how it ended. The
	// sleeps die with the sandbox's PID namespace.
	out, exited := execRun(t, h, s, `
		sh -c 'for i in $(seq 40); do sleep 30 & done; echo "fork: allowed"'
		if [ $? != 0 ]; then echo "fork: refused"; fi
		exit 0`, map[string]any{"limits": map[string]any{"processes": 12}})
	if v := verdicts(out); v["fork"] != "refused" {
		t.Fatalf("the command forked past its process limit: %q (%s)", out, exited.Data)
	}
	if code := dataField[*int](t, exited, "exitCode"); code == nil {
		t.Fatalf("the command did not end on its own: %s", exited.Data)
	}
	// And the sandbox was on for this user: the store is hidden.
	out, _ = execRun(t, h, s, `if [ -d "`+h.dataDir+`/tasks" ] && [ "$(ls "`+h.dataDir+`/tasks" | wc -l)" -le 1 ]; then echo "hidden: yes"; else echo "hidden: no"; fi; ls -la `+h.dataDir+`/tasks`, nil)
	joined := strings.Join(out, "\n")
	if !strings.Contains(joined, "hidden: yes") {
		t.Fatalf("a sandboxed command of nobody sees other tasks' workspaces: %q", out)
	}
}

// --sandbox required without a working bwrap refuses exec pods with
// FAILED_PRECONDITION; auto runs them unsandboxed.
func TestSandboxRequiredWithoutBwrap(t *testing.T) {
	t.Parallel()
	h := newHome(t, "--sandbox", "required", "--bwrap", "/bin/false")
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}}})
	e := s.mustFail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": id}, "FAILED_PRECONDITION", "")
	if strings.Contains(e.Message, "/bin/false") {
		t.Fatalf("the refusal names a path: %q", e.Message)
	}
	// createTask with autoStart is refused the same way, before the task exists.
	var before struct{ Tasks struct{ TotalCount int } }
	s.must(t, `{ tasks { totalCount } }`, nil, &before)
	s.mustFail(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
		map[string]any{"in": map[string]any{"title": "auto", "runtime": "exec", "autoStart": true, "runtimeConfig": map[string]any{"command": []string{"true"}}}},
		"FAILED_PRECONDITION", "")
	var after struct{ Tasks struct{ TotalCount int } }
	s.must(t, `{ tasks { totalCount } }`, nil, &after)
	if after.Tasks.TotalCount != before.Tasks.TotalCount {
		t.Fatalf("a refused autoStart created a task: %d tasks, then %d", before.Tasks.TotalCount, after.Tasks.TotalCount)
	}

	// --exec-role operator implies required.
	h3 := newHome(t, "--exec-role", "operator", "--bwrap", "/bin/false")
	s3 := h3.start()
	id3 := s3.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}}})
	s3.mustFail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": id3}, "FAILED_PRECONDITION", "")

	// ... and refuses --sandbox off outright, before it creates anything.
	dir := t.TempDir()
	refusal, err := serveOnce(t, h3, "--addr", "127.0.0.1:0", "--database", "sqlite://"+filepath.Join(dir, "ipa.db"),
		"--data-dir", filepath.Join(dir, "data"), "--exec-role", "operator", "--sandbox", "off")
	if err == nil || !strings.Contains(refusal, "--exec-role operator needs the sandbox") {
		t.Fatalf("--exec-role operator --sandbox off: %v\n%s", err, refusal)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the refused server left %v behind", ents)
	}

	// No bwrap in PATH is a missing bwrap, though the machine has one
	// elsewhere (/usr/bin/bwrap).
	h4 := newHome(t, "--sandbox", "required")
	h4.env = []string{"PATH=" + t.TempDir()}
	s4 := h4.start()
	id4 := s4.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}}})
	s4.mustFail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": id4}, "FAILED_PRECONDITION", "")

	h2 := newHome(t, "--sandbox", "auto", "--bwrap", "/bin/false")
	s2 := h2.start()
	out, _ := execRun(t, h2, s2, `echo "ran: allowed"`, nil)
	if v := verdicts(out); v["ran"] != "allowed" {
		t.Fatalf("under --sandbox auto with a broken bwrap the command did not run: %q", out)
	}
}

// A pod the server resumes after a clean restart, when bwrap is gone
// meanwhile and the sandbox is required, is not started, and its crash says
// why (not that the runtime is unknown).
func TestSandboxRequiredResumeSaysWhy(t *testing.T) {
	t.Parallel()
	h := newHome(t, "--sandbox", "required")
	s := h.start()
	id := s.createTask(t, map[string]any{"runtime": "exec", "autoStart": true, "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", "while true; do sleep 1; done"}, "env": tagEnv(h)}})
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second)
	s.stop(t, 60*time.Second) // SIGTERM: stopped, to be resumed by the next start

	h.env = []string{"PATH=" + t.TempDir()}
	s = h.start()
	var crashed []event
	eventually(t, 60*time.Second, func() string {
		if crashed = s.events(t, id, "pod_crashed"); len(crashed) == 0 {
			return "the resume has not failed yet"
		}
		return ""
	})
	if r := dataField[string](t, crashed[0], "reason"); r != "start_failed" {
		t.Fatalf("pod_crashed reason %q, want start_failed", r)
	}
	if m := dataField[string](t, crashed[0], "message"); !strings.Contains(m, "sandbox") || !strings.Contains(m, "bwrap") {
		t.Fatalf("pod_crashed message %q does not say the sandbox is missing", m)
	}
	if n := len(s.events(t, id, "pod_started")); n != 1 {
		t.Fatalf("%d pod_started events, want only the first", n)
	}
}
