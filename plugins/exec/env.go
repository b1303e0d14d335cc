package exec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The command's environment is built from nothing. The plugin's own is
// whatever its host gave it: ipa serve hands plugins a minimal one (see
// internal/supervisor/env.go), but even that (go-plugin's handshake, OTEL_*
// with a collector's credentials, --plugin-env variables) is not for a
// command that a task's creator chose, and another host may pass its whole
// environment (database URL with its password, tokens, cloud credentials). The command gets exactly PATH, HOME and LANG below, then
// runtimeConfig.env on top (which may override all three).
const (
	// DefaultPath is the command's PATH. A fixed list rather than the
	// server's PATH: the server's may point into its user's private
	// directories (~/bin, ~/go/bin, a secrets helper's install dir) and
	// differs between a shell and a service manager, so a task would run
	// differently depending on how the server was launched. A task that
	// needs more sets PATH in runtimeConfig.env.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// DefaultLang is the command's LANG: fixed, not the server's, for the
	// same reproducibility; C.UTF-8 ships with every current libc and keeps
	// UTF-8 output intact.
	DefaultLang = "C.UTF-8"
	// MaxEnvNameLen bounds one variable name in runtimeConfig.env.
	MaxEnvNameLen = 255
)

// envNameRE is the portable shell variable name (POSIX "Name"): anything
// else cannot be read back with $NAME and some tools mangle it.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envTypes checks the shape of runtimeConfig.env before the strict decode,
// so that a value of the wrong type gets a message naming the variable
// instead of a decoder error. raw is the whole config object.
func envTypes(raw []byte) error {
	var top struct {
		Env json.RawMessage `json:"env"`
	}
	if json.Unmarshal(raw, &top) != nil {
		return nil // not an object: the strict decode reports it
	}
	t := bytes.TrimSpace(top.Env)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	var vars map[string]json.RawMessage
	if t[0] != '{' || json.Unmarshal(t, &vars) != nil {
		return invalid(`exec runtime config: env must be an object of strings, like {"GREETING": "hello"}`)
	}
	for _, k := range sortedKeys(vars) {
		if v := bytes.TrimSpace(vars[k]); len(v) == 0 || v[0] != '"' {
			return invalid("exec runtime config: env variable %q must be a string, got %s", k, jsonKind(v))
		}
	}
	return nil
}

// checkEnv checks the decoded runtimeConfig.env. It runs on the decoded map,
// not on envTypes' view: with a repeated "env" key the decoder merges both
// objects, and every variable that reaches the command must pass.
func checkEnv(env map[string]string) error {
	if len(env) > MaxEnvVars {
		return invalid("exec runtime config: env has %d variables; the limit is %d", len(env), MaxEnvVars)
	}
	size := 0
	for _, k := range sortedKeys(env) {
		switch {
		case len(k) > MaxEnvNameLen:
			return invalid("exec runtime config: env variable name %.40q... is %d bytes; the limit is %d", k, len(k), MaxEnvNameLen)
		case !envNameRE.MatchString(k):
			return invalid("exec runtime config: env variable name %q is invalid: use letters, digits and '_', not starting with a digit", k)
		case strings.IndexByte(env[k], 0) >= 0:
			return invalid("exec runtime config: env variable %q contains a NUL byte", k)
		}
		size += len(k) + 1 + len(env[k]) // NAME=value as the command receives it
	}
	if size > MaxEnvBytes {
		return invalid("exec runtime config: env is %d bytes; the limit is %d", size, MaxEnvBytes)
	}
	return nil
}

// sortedKeys makes the first offender reported the same on every call.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jsonKind(v []byte) string {
	switch {
	case len(v) == 0:
		return "nothing"
	case v[0] == '{':
		return "an object"
	case v[0] == '[':
		return "an array"
	case v[0] == 't' || v[0] == 'f':
		return "a boolean"
	case v[0] == 'n':
		return "null"
	default:
		return "a number"
	}
}

// commandEnv is the whole environment of the command run in dir: the
// defaults, overridden by env. Sorted, one entry per name.
func commandEnv(env map[string]string, dir string) []string {
	m := map[string]string{"PATH": DefaultPath, "HOME": dir, "LANG": DefaultLang}
	for k, v := range env {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// commandPath is the PATH the command gets.
func commandPath(env map[string]string) string {
	if p, ok := env["PATH"]; ok {
		return p
	}
	return DefaultPath
}

// lookPath finds program the way the command's own shell would: in the
// command's PATH, not the plugin's (which is the server's). A name with a
// '/' is used as given (relative ones against the working directory).
// Relative PATH entries are skipped, as os/exec refuses them too: what they
// find depends on the directory.
func lookPath(program, path string) (string, error) {
	if strings.Contains(program, "/") {
		return program, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, program)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is not an executable in the command's PATH (%s)", program, path)
}
