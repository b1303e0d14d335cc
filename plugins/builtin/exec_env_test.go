package builtin_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/plugins/exec"
)

const secretURL = "postgres://u:secret@x/db"

// serverEnv gives this process (and so the plugins it launches, which
// inherit it as the server's do) variables the commands must never see.
func serverEnv(t *testing.T) {
	t.Setenv("IPA_DATABASE_URL", secretURL)
	t.Setenv("IPA_ADMIN_TOKEN", "ipa_secret_token")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-key")
	t.Setenv("LANG", "xx_SERVER.UTF-8")
}

// runEnv runs `env` with cfgEnv (a JSON object) as a real exec pod in a
// fresh working directory and returns its variables, its raw output lines
// and the working directory. It checks that the plugin process itself did
// inherit the secret, so that its absence below means something.
func runEnv(t *testing.T, cfgEnv string) (vars map[string]string, lines []string, dir string) {
	t.Helper()
	p := launch(t, "exec")
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "IPA_DATABASE_URL="+secretURL) {
		t.Fatal("the plugin process did not inherit IPA_DATABASE_URL: the test proves nothing")
	}
	dir = t.TempDir()
	h := &host{}
	cfg := `{"command": ["env"], "env": ` + cfgEnv + `}`
	if _, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(cfg), WorkDir: dir, Host: h}); err != nil {
		t.Fatal(err)
	}
	if d := exited(t, h); d.ExitCode == nil || *d.ExitCode != 0 {
		t.Fatalf("env exited %+v", d)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	vars = map[string]string{}
	for _, l := range h.lines {
		lines = append(lines, l.Stream+":"+l.Text)
		if k, v, ok := strings.Cut(l.Text, "="); ok && l.Stream == podapi.StreamStdout {
			vars[k] = v
		}
	}
	return vars, lines, dir
}

func TestExecCleanEnvironment(t *testing.T) {
	serverEnv(t)

	t.Run("Defaults", func(t *testing.T) {
		vars, lines, dir := runEnv(t, `{"GREETING": "hello world", "MULTI": "a=b"}`)
		for _, l := range lines {
			// The conversation socket, the ipa binary and the artifacts
			// directory are the only IPA_ variables a command gets (they
			// name no secret).
			if strings.HasPrefix(l, "stdout:IPA_POD_SOCKET=") || strings.HasPrefix(l, "stdout:IPA_BIN=") || strings.HasPrefix(l, "stdout:"+exec.EnvArtifacts+"=") {
				continue
			}
			if strings.Contains(l, "secret") || strings.Contains(l, "IPA_") || strings.Contains(l, "PLUGIN") ||
				strings.Contains(l, podapi.Handshake.MagicCookieKey) {
				t.Errorf("the command saw %q", l)
			}
		}
		if !strings.HasSuffix(vars["IPA_POD_SOCKET"], "/pod.sock") || vars["IPA_BIN"] == "" {
			t.Errorf("IPA_POD_SOCKET=%q IPA_BIN=%q", vars["IPA_POD_SOCKET"], vars["IPA_BIN"])
		}
		delete(vars, "IPA_POD_SOCKET")
		delete(vars, "IPA_BIN")
		want := map[string]string{
			"HOME":     dir,
			"PATH":     exec.DefaultPath,
			"LANG":     exec.DefaultLang,
			"GREETING": "hello world",
			"MULTI":    "a=b",
			// The command's artifacts directory, in its workspace.
			exec.EnvArtifacts: filepath.Join(dir, exec.ArtifactsDir),
		}
		if len(vars) != len(want) {
			t.Errorf("the command got %d variables, want exactly %d: %q", len(vars), len(want), lines)
		}
		for k, v := range want {
			if vars[k] != v {
				t.Errorf("%s=%q, want %q", k, vars[k], v)
			}
		}
	})

	t.Run("Overrides", func(t *testing.T) {
		vars, lines, _ := runEnv(t, `{"PATH": "/usr/bin:/bin", "LANG": "en_US.UTF-8", "HOME": "/nonexistent"}`)
		if vars["PATH"] != "/usr/bin:/bin" || vars["LANG"] != "en_US.UTF-8" || vars["HOME"] != "/nonexistent" || len(vars) != 6 {
			t.Fatalf("overridden defaults: %q", lines)
		}
	})

	// The program is looked up in the command's PATH, not the server's.
	t.Run("ProgramLookup", func(t *testing.T) {
		bin := t.TempDir()
		tool := filepath.Join(bin, "ipa-test-only-tool")
		if err := os.WriteFile(tool, []byte("#!/bin/sh\necho found \"$HOME\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", bin+string(filepath.ListSeparator)+os.Getenv("PATH"))
		cfg := `{"command": ["ipa-test-only-tool"]}`
		_, err := launch(t, "exec").rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(cfg), WorkDir: t.TempDir(), Host: &host{}})
		if ipa.ErrorCode(err) != ipa.EUNAVAILABLE || ipa.ErrorReason(err) != ipa.ReasonRuntimeFailed {
			t.Fatalf("a program only in the server's PATH: want UNAVAILABLE/RUNTIME_FAILED, got %v", err)
		}
		_, h := startExec(t, `{"command": ["ipa-test-only-tool"], "env": {"PATH": "`+bin+`"}}`)
		if d := exited(t, h); d.ExitCode == nil || *d.ExitCode != 0 {
			t.Fatalf("exited %+v", d)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.lines) != 1 || !strings.HasPrefix(h.lines[0].Text, "found /") {
			t.Fatalf("lines %+v", h.lines)
		}
	})

	t.Run("BadEnvRefused", func(t *testing.T) {
		p := launch(t, "exec")
		for _, cfg := range []string{
			`{"command": ["env"], "env": {"A=B": "c"}}`,
			`{"command": ["env"], "env": {"A": 1}}`,
			`{"command": ["env"], "env": {"A": "x\u0000y"}}`,
		} {
			_, err := p.rt.Start(context.Background(), podapi.StartRequest{TaskID: "t1", RuntimeConfig: []byte(cfg), WorkDir: t.TempDir(), Host: &host{}})
			if ipa.ErrorCode(err) != ipa.EINVALID || ipa.ErrorReason(err) != ipa.ReasonInvalidArgument || !strings.Contains(err.Error(), "env") {
				t.Errorf("%s: want BAD_USER_INPUT/INVALID_ARGUMENT about env, got %v", cfg, err)
			}
		}
	})
}

// The shell adds its own variables (PWD, SHLVL, ...) but still none of the
// server's.
func TestExecShellSeesNoServerVariables(t *testing.T) {
	serverEnv(t)
	_, h := startExec(t, `{"command": ["sh", "-c", "env"], "env": {"K": "v"}}`)
	exited(t, h)
	h.mu.Lock()
	defer h.mu.Unlock()
	var texts []string
	for _, l := range h.lines {
		texts = append(texts, l.Text)
	}
	if slices.ContainsFunc(texts, func(s string) bool {
		return strings.Contains(s, "secret") || strings.HasPrefix(s, "IPA_") && !strings.HasPrefix(s, "IPA_POD_SOCKET=") && !strings.HasPrefix(s, "IPA_BIN=") && !strings.HasPrefix(s, exec.EnvArtifacts+"=")
	}) ||
		!slices.Contains(texts, "K=v") || !slices.Contains(texts, "LANG="+exec.DefaultLang) {
		t.Fatalf("sh -c env printed %q", texts)
	}
}
