package main

// A pod sees nothing of the server: not its environment (directly, through
// its plugin's /proc/$PPID/environ, or through the server's own
// /proc/<pid>/environ when they run as the same non-root user), and not the
// descriptors the server inherited. Real server, real plugin, real command.

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

const (
	podDBPassword = "hunter2-db-password-7d1e"
	podTestSecret = "pod-test-secret-5f1c90"
)

// secretEnv is a server environment holding secrets, as a service manager
// would pass them: the database URL with its password (--database on the
// command line wins, so the server does not use it) and another variable.
func secretEnv() []string {
	return []string{
		"IPA_DATABASE_URL=postgres://ipa:" + podDBPassword + "@db.invalid:5432/ipa",
		"IPA_TEST_SECRET=" + podTestSecret,
	}
}

// execOutput runs script with sh -c in an exec pod of s and returns the
// lines it wrote (stdout and stderr) once the command has ended.
func execOutput(t *testing.T, h *home, s *server, script string) []string {
	t.Helper()
	id := s.createTask(t, map[string]any{"runtime": "exec",
		"runtimeConfig": map[string]any{"command": []string{"sh", "-c", script}, "env": tagEnv(h)}})
	s.startPod(t, id)
	eventually(t, 20*time.Second, func() string {
		if len(s.events(t, id, "runtime.exec.exited")) == 0 {
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
	return out
}

// section returns the lines after the line "name:" up to the next line
// ending in ':' alone.
func section(lines []string, name string) []string {
	var out []string
	in := false
	for _, l := range lines {
		switch {
		case l == name+":":
			in = true
		case in && strings.HasSuffix(l, ":") && !strings.Contains(l, " "):
			return out
		case in:
			out = append(out, l)
		}
	}
	return out
}

func TestExecPodSeesNoServerEnvironmentOrDescriptors(t *testing.T) {
	t.Parallel()
	// The layers under the sandbox, alone: the sandbox_test.go tests cover it.
	h := newHome(t, "--sandbox", "off")
	h.env = secretEnv()
	// A stray /dev/null and pipe, not close-on-exec, as a shell or a
	// service manager may leave them: the server inherits both.
	devNull, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pipe [2]int
	if err := syscall.Pipe(pipe[:]); err != nil {
		t.Fatal(err)
	}
	s := h.start()
	for _, fd := range []int{devNull, pipe[0], pipe[1]} {
		_ = syscall.Close(fd)
	}
	if fds, err := os.ReadDir("/proc/" + strconv.Itoa(s.pid()) + "/fd"); err == nil {
		found := false
		for _, f := range fds {
			if target, _ := os.Readlink("/proc/" + strconv.Itoa(s.pid()) + "/fd/" + f.Name()); target == "/dev/null" && f.Name() != "0" {
				found = true
			}
		}
		if !found {
			t.Fatal("the server did not inherit the stray /dev/null: the test proves nothing")
		}
	}
	if raw, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid()) + "/environ"); err == nil && !strings.Contains(string(raw), podTestSecret) {
		t.Fatal("the server's environment lacks the secret: the test proves nothing")
	}

	out := execOutput(t, h, s, `echo "plugin-environ:"; tr '\0' '\n' < /proc/$PPID/environ; echo "fds:"; ls -l /proc/self/fd; echo "end:"`)
	env := section(out, "plugin-environ")
	if !containsPrefix(env, "PATH=") {
		t.Fatalf("the command could not read its plugin's environment: %q", out)
	}
	for _, kv := range env {
		if strings.Contains(kv, podDBPassword) || strings.Contains(kv, podTestSecret) ||
			strings.HasPrefix(kv, "IPA_DATABASE_URL=") || strings.HasPrefix(kv, "IPA_TEST_SECRET=") {
			t.Errorf("the plugin's environment holds the server's %q", kv)
		}
	}
	// --plugin-env passes a named variable on (the harness names its tag).
	if !containsPrefix(env, tagVar+"="+h.tag) {
		t.Errorf("the plugin's environment lacks %s named by --plugin-env: %q", tagVar, env)
	}

	// ls -l /proc/self/fd: the command's 0, 1 and 2, and the directory ls
	// itself opened to list them.
	fds := section(out, "fds")
	var extra []string
	for _, l := range fds {
		f := strings.Fields(l)
		i := indexOf(f, "->")
		if i < 1 {
			continue // "total 0"
		}
		n, _ := strconv.Atoi(f[i-1])
		if n > 2 && !(strings.HasPrefix(f[i+1], "/proc/") && strings.HasSuffix(f[i+1], "/fd")) {
			extra = append(extra, l)
		}
	}
	if len(fds) < 4 || len(extra) > 0 {
		t.Fatalf("the command has descriptors besides 0-2: %q (all: %q)", extra, fds)
	}
}

// The server is not dumpable: a process of its own user, an exec pod's
// command above all, cannot read its /proc/<pid>/environ (nor its memory),
// while it can read an ordinary process of that user, its plugin. When the
// tests run as root, whom no such rule stops, the server runs as nobody, so
// the command is a same-user, non-root reader and the check means what it
// says.
func TestServerEnvironUnreadableBySameUser(t *testing.T) {
	t.Parallel()
	// The layers under the sandbox, alone: the sandbox_test.go tests cover it.
	h := newHome(t, "--sandbox", "off")
	h.env = secretEnv()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("the test runs as root and needs the user nobody to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		dir, err := os.MkdirTemp("", "ipa-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		h.db = "sqlite://" + filepath.Join(dir, "ipa.db")
		h.dataDir = filepath.Join(dir, "data")
		h.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The run's key file is root's: this server makes its own beside its store.
		h.env = append(h.env, "IPA_SECRET_KEY_FILE=")
	}
	s := h.start()
	server := strconv.Itoa(s.pid())
	out := execOutput(t, h, s, `
		id -u
		if tr '\0' '\n' < /proc/$PPID/environ > /dev/null; then echo "plugin: readable"; else echo "plugin: refused"; fi
		if tr '\0' '\n' < /proc/`+server+`/environ; then echo "server: readable"; else echo "server: refused"; fi
		if [ -r /proc/$PPID/mem ]; then echo "plugin mem: readable"; else echo "plugin mem: refused"; fi
		if [ -r /proc/`+server+`/mem ]; then echo "server mem: readable"; else echo "server mem: refused"; fi`)
	if len(out) == 0 || out[0] == "0" {
		t.Fatalf("the command ran as root (%q): the check would prove nothing", out)
	}
	joined := strings.Join(out, "\n")
	if !strings.Contains(joined, "plugin: readable") || !strings.Contains(joined, "plugin mem: readable") {
		t.Fatalf("the command cannot read its plugin's environment either, so its refusal below proves nothing: %q", out)
	}
	if !strings.Contains(joined, "server: refused") || strings.Contains(joined, podTestSecret) || strings.Contains(joined, podDBPassword) {
		t.Fatalf("a process of the server's user read its environment: %q", out)
	}
	if !strings.Contains(joined, "server mem: refused") {
		t.Fatalf("a process of the server's user read its memory: %q", out)
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
