package main

// Runtimes written outside this repository: the Go example built from a copy
// of examples/runtime-go outside the checkout, the Python example copied out
// too, and a plugin of protocol version 1, each run by a real server from its
// --plugin-dir and checked by `ipa plugin check`.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// repoRoot is the checkout this test runs in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyTree copies the regular files under src to dst, keeping their modes.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

var replaceRE = regexp.MustCompile(`(?m)^replace github\.com/ipa-dev/ipa => \.\./\.\.$`)

// buildGoExample copies examples/runtime-go out of the checkout, changes
// only its replace directive to point at this checkout, and builds it into
// pluginDir/hello.
func buildGoExample(t testing.TB, pluginDir string) string {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "runtime-go")
	copyTree(t, filepath.Join(root, "examples", "runtime-go"), dir)
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !replaceRE.Match(mod) {
		t.Fatalf("examples/runtime-go/go.mod has no `replace github.com/ipa-dev/ipa => ../..` line:\n%s", mod)
	}
	mod = replaceRE.ReplaceAll(mod, []byte("replace github.com/ipa-dev/ipa => "+root))
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	// A plain `go build`, as an author would type it, names the binary
	// hello: the runtime's name once it is in the plugin directory.
	build := exec.Command("go", "build")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the copied example: %v\n%s", err, b)
	}
	out := filepath.Join(pluginDir, "hello")
	if err := os.Rename(filepath.Join(dir, "hello"), out); err != nil {
		t.Fatalf("go build of the copied example made no binary named hello: %v", err)
	}
	// The author's own go test runs the conformance kit (sdk/pod/podtest).
	test := exec.Command("go", "test", "-count=1", ".")
	test.Dir = dir
	test.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	if b, err := test.CombinedOutput(); err != nil {
		t.Fatalf("go test of the copied example: %v\n%s", err, b)
	}
	return out
}

// copyPythonExample copies examples/runtime-python/hello-py (one file) into
// pluginDir: a copy outside the checkout.
func copyPythonExample(t testing.TB, pluginDir string) string {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import grpc").Run(); err != nil {
		if os.Getenv("IPA_REQUIRE_PYTHON_GRPC") == "1" {
			t.Fatal("Debian's python3-grpcio is required (IPA_REQUIRE_PYTHON_GRPC=1): apt-get install python3-grpcio")
		}
		t.Skip("Debian's python3-grpcio is not installed (apt-get install python3-grpcio)")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "runtime-python", "hello-py"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(pluginDir, "hello-py")
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

func buildV1Plugin(t testing.TB, pluginDir string) string {
	t.Helper()
	out := filepath.Join(pluginDir, "old")
	build := exec.Command("go", "build", "-o", out, "./internal/podapi/testdata/v1plugin")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build v1plugin: %v\n%s", err, b)
	}
	return out
}

func newPluginDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type runtimeView struct {
	Name            string          `json:"name"`
	Description     string          `json:"description"`
	ProtocolVersion int             `json:"protocolVersion"`
	ConfigSchema    json.RawMessage `json:"configSchema"`
	ExampleConfig   json.RawMessage `json:"exampleConfig"`
}

func (s *server) runtimes(t testing.TB) map[string]runtimeView {
	t.Helper()
	var out struct{ Runtimes []runtimeView }
	s.must(t, `{ runtimes { name description protocolVersion configSchema exampleConfig } }`, nil, &out)
	m := map[string]runtimeView{}
	for _, r := range out.Runtimes {
		m[r.Name] = r
	}
	return m
}

// rawErrors posts an operation and returns its errors with all extensions.
func (s *server) rawErrors(t testing.TB, query string, vars map[string]any) []struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
} {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := s.client.Post(s.url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Errors []struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK && len(out.Errors) == 0 {
		t.Fatalf("HTTP %d: %v", resp.StatusCode, err)
	}
	return out.Errors
}

// checkHello runs a task on a hello runtime (the Go or the Python example)
// and checks everything the examples promise.
func checkHello(t *testing.T, h *home, s *server, name string) {
	rt, ok := s.runtimes(t)[name]
	if !ok {
		t.Fatalf("runtime %s is not offered", name)
	}
	// The Go example is built with this checkout's SDK (the newest
	// version); the Python one implements version 2 of the protocol.
	want := pod.ProtocolVersion
	if name == "hello-py" {
		want = 2
	}
	if rt.ProtocolVersion != want || rt.Description == "" || strings.HasPrefix(rt.Description, "External runtime plugin") {
		t.Errorf("runtime %s: protocolVersion %d, description %q", name, rt.ProtocolVersion, rt.Description)
	}
	var schema struct {
		Properties map[string]struct {
			Type        string `json:"type"`
			Description string `json:"description"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(rt.ConfigSchema, &schema); err != nil || schema.Properties["fail"].Type != "boolean" {
		t.Errorf("runtime %s: configSchema %s", name, rt.ConfigSchema)
	}
	var example map[string]any
	if err := json.Unmarshal(rt.ExampleConfig, &example); err != nil || example["fail"] != false {
		t.Errorf("runtime %s: exampleConfig %s", name, rt.ExampleConfig)
	}

	// The schema is checked before a task exists, naming the failing path.
	errs := s.rawErrors(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
		map[string]any{"in": map[string]any{"title": "bad", "runtime": name, "runtimeConfig": map[string]any{"fail": "yes"}}})
	if len(errs) != 1 || errs[0].Extensions["code"] != "BAD_USER_INPUT" || errs[0].Extensions["reason"] != "INVALID_RUNTIME_CONFIG" ||
		errs[0].Extensions["path"] != "/fail" || !strings.Contains(errs[0].Message, "runtimeConfig/fail") {
		t.Fatalf("createTask with a config against the schema: %+v", errs)
	}

	title := "Ada " + name
	id := s.createTask(t, map[string]any{"title": title, "runtime": name, "runtimeConfig": map[string]any{"fail": false}, "autoStart": true})
	eventually(t, 60*time.Second, func() string {
		tv := s.task(t, id)
		if tv.Phase != "PLANNING" || tv.Pod.State != "RUNNING" || !jsonEqual(tv.Pod.Live, `{"greeted": true}`) {
			return fmt.Sprintf("phase %s, pod %s, live %s", tv.Phase, tv.Pod.State, tv.Pod.Live)
		}
		return ""
	})
	var lines []string
	for _, e := range s.events(t, id, "pod_output") {
		for _, l := range dataField[[]struct{ Stream, Text string }](t, e, "lines") {
			lines = append(lines, l.Text)
		}
	}
	if !slices.Contains(lines, "hello, "+title) {
		t.Errorf("output %q, want the line %q", lines, "hello, "+title)
	}
	if n := len(s.events(t, id, "runtime.hello.greeted")); n != 1 {
		t.Errorf("%d runtime.hello.greeted events, want 1", n)
	}

	// The server dies (kill -9) and comes back: it reattaches to the running
	// plugin, which answers Attach and goes on; the stop then goes through
	// the new server.
	pid := s.task(t, id).Pod.PID
	s.crash(t)
	s = h.start()
	eventually(t, 60*time.Second, func() string {
		evs := s.events(t, id, "pod_reattached", "pod_lost")
		if len(evs) == 0 {
			return "no pod_reattached yet"
		}
		if evs[0].Type != "pod_reattached" || dataField[int](t, evs[0], "pid") != pid {
			t.Fatalf("after the server's restart: %s %s, want pod_reattached of pid %d", evs[0].Type, evs[0].Data, pid)
		}
		return ""
	})
	eventually(t, 30*time.Second, func() string {
		if tv := s.task(t, id); tv.Pod.State != "RUNNING" || !jsonEqual(tv.Pod.Live, `{"greeted": true}`) {
			return fmt.Sprintf("after reattach: pod %s, live %s", tv.Pod.State, tv.Pod.Live)
		}
		return ""
	})
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	tv := s.waitPod(t, id, "STOPPED", "", 0, 60*time.Second)
	if len(tv.Pod.Crashes) != 0 {
		t.Errorf("a stop asked for recorded crashes: %+v", tv.Pod.Crashes)
	}

	// kill -9 of the plugin is a crash with its signal.
	id = s.createTask(t, map[string]any{"title": "kill " + name, "runtime": name, "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": false}})
	tv = s.waitPod(t, id, "RUNNING", "", 0, 60*time.Second)
	if err := syscall.Kill(tv.Pod.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		tv := s.task(t, id)
		if len(tv.Pod.Crashes) == 0 || tv.Pod.Crashes[0].Signal != "SIGKILL" {
			return fmt.Sprintf("pod %s, crashes %+v", tv.Pod.State, tv.Pod.Crashes)
		}
		return ""
	})

	// {"fail": true}: the process exits with status 3, recorded as a crash.
	id = s.createTask(t, map[string]any{"title": "fail " + name, "runtime": name, "runtimeConfig": map[string]any{"fail": true}, "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": false}})
	eventually(t, 60*time.Second, func() string {
		tv := s.task(t, id)
		for _, c := range tv.Pod.Crashes {
			if c.ExitCode != nil && *c.ExitCode == 3 {
				return ""
			}
		}
		return fmt.Sprintf("pod %s, crashes %+v", tv.Pod.State, tv.Pod.Crashes)
	})
}

func jsonEqual(raw json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(raw, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// pluginCheck runs `ipa plugin check` and returns its output and exit code.
func pluginCheck(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(ipaBin, append([]string{"plugin", "check", "--timeout", "60s"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestGoExampleRuntime(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	bin := buildGoExample(t, dir)
	if out, code := pluginCheck(t, bin); code != 0 || !strings.Contains(out, "ok: the runtime passed every check") {
		t.Fatalf("ipa plugin check %s: exit %d\n%s", bin, code, out)
	}
	h := newHome(t, "--plugin-dir", dir)
	checkHello(t, h, h.start(), "hello")
}

func TestPythonExampleRuntime(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	bin := copyPythonExample(t, dir)
	if out, code := pluginCheck(t, bin); code != 0 || !strings.Contains(out, "ok: the runtime passed every check") {
		t.Fatalf("ipa plugin check %s: exit %d\n%s", bin, code, out)
	}
	h := newHome(t, "--plugin-dir", dir)
	checkHello(t, h, h.start(), "hello-py")
}

// A plugin built for protocol version 1 runs on this server: it is offered
// (with a generic description and no schema), its pod runs and stops, and
// it is never asked what version 1 does not have.
func TestProtocolVersion1PluginRuns(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	bin := buildV1Plugin(t, dir)
	if out, code := pluginCheck(t, bin); code != 0 || !strings.Contains(out, "SKIP  describe") {
		t.Fatalf("ipa plugin check %s: exit %d\n%s", bin, code, out)
	}
	s := newHome(t).start("--plugin-dir", dir)
	rt := s.runtimes(t)["old"]
	if rt.ProtocolVersion != 1 || rt.Description != "External runtime plugin old." || rt.ConfigSchema != nil && string(rt.ConfigSchema) != "null" {
		t.Fatalf("runtime old: %+v", rt)
	}
	if strings.Contains(s.log.String(), "describe itself") {
		t.Fatalf("the server asked a version 1 plugin to describe itself:\n%s", s.logTail(40))
	}
	id := s.createTask(t, map[string]any{"runtime": "old", "autoStart": true})
	eventually(t, 60*time.Second, func() string {
		if tv := s.task(t, id); tv.Phase != "PLANNING" || !jsonEqual(tv.Pod.Live, `{"planned": true}`) {
			return fmt.Sprintf("phase %s, live %s", tv.Phase, tv.Pod.Live)
		}
		return ""
	})
	s.must(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	if tv := s.waitPod(t, id, "STOPPED", "", 0, 60*time.Second); len(tv.Pod.Crashes) != 0 {
		t.Errorf("crashes: %+v", tv.Pod.Crashes)
	}
}

// A broken plugin fails `ipa plugin check` with exit status 1, naming the step.
func TestPluginCheckFailsABrokenPlugin(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'not a plugin'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, code := pluginCheck(t, script)
	if code != 1 || !strings.Contains(out, "FAIL  launch") || !strings.Contains(out, "FAILED: launch") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// A path that is not there fails the same way, saying why (no panic).
	out, code = pluginCheck(t, filepath.Join(t.TempDir(), "missing"))
	if code != 1 || !strings.Contains(out, "FAIL  launch") || !strings.Contains(out, "no such file or directory") || strings.Contains(out, "panic") {
		t.Fatalf("missing plugin: exit %d\n%s", code, out)
	}
}
