package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// message is the client-facing message of err ("" when it is no *ipa.Error).
func message(err error) string {
	var e *ipa.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return ""
}

// envConfig is a valid config with env set to the JSON text envJSON.
func envConfig(envJSON string) string { return `{"command": ["env"], "env": ` + envJSON + `}` }

// bigEnv is an env object of n variables of valueLen bytes each.
func bigEnv(n, valueLen int) string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("V%d", i)] = strings.Repeat("x", valueLen)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestValidateEnv(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		wantErr   string // substring of the message; "" = valid
	}{
		{"Absent", `null`, ""},
		{"Empty", `{}`, ""},
		{"Simple", `{"GREETING": "hello", "_x9": "", "PATH": "/opt/bin"}`, ""},
		{"ValueWithNewlineAndEquals", `{"A": "b=c\nd"}`, ""},
		{"NameAtLimit", `{"` + strings.Repeat("N", MaxEnvNameLen) + `": "v"}`, ""},
		{"CountAtLimit", bigEnv(MaxEnvVars, 1), ""},
		{"SizeAtLimit", `{"A": "` + strings.Repeat("x", MaxEnvBytes-2) + `"}`, ""},

		{"NotAnObject", `["A=b"]`, "env must be an object of strings"},
		{"StringNotObject", `"A=b"`, "env must be an object of strings"},
		{"NumberValue", `{"A": 1}`, `"A" must be a string, got a number`},
		{"BoolValue", `{"A": true}`, `"A" must be a string, got a boolean`},
		{"NullValue", `{"A": null}`, `"A" must be a string, got null`},
		{"ObjectValue", `{"A": {"b": "c"}}`, `"A" must be a string, got an object`},
		{"ArrayValue", `{"A": ["b"]}`, `"A" must be a string, got an array`},
		{"EmptyName", `{"": "v"}`, `name "" is invalid`},
		{"EqualsInName", `{"A=B": "v"}`, `name "A=B" is invalid`},
		{"NulInName", `{"A\u0000B": "v"}`, `is invalid`},
		{"LeadingDigit", `{"1A": "v"}`, `name "1A" is invalid`},
		{"Dash", `{"MY-VAR": "v"}`, `name "MY-VAR" is invalid`},
		{"Space", `{"MY VAR": "v"}`, `is invalid`},
		{"NonASCII", `{"ÄB": "v"}`, `is invalid`},
		{"NameTooLong", `{"` + strings.Repeat("N", MaxEnvNameLen+1) + `": "v"}`, "the limit is 255"},
		{"NulInValue", `{"A": "x\u0000y"}`, `"A" contains a NUL byte`},
		{"TooMany", bigEnv(MaxEnvVars+1, 1), "env has 129 variables; the limit is 128"},
		{"TooBig", `{"A": "` + strings.Repeat("x", MaxEnvBytes-1) + `"}`, "env is 32769 bytes; the limit is 32768"},
		{"TooBigInAll", bigEnv(64, 600), "the limit is 32768"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateConfig([]byte(envConfig(tc.env)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if ipa.ErrorCode(err) != ipa.EINVALID || ipa.ErrorReason(err) != ipa.ReasonInvalidArgument {
				t.Fatalf("want EINVALID/INVALID_ARGUMENT, got %v", err)
			}
			if msg := message(err); !strings.Contains(msg, tc.wantErr) || !strings.HasPrefix(msg, "exec runtime config: env") {
				t.Fatalf("message %q, want it to contain %q", msg, tc.wantErr)
			}
		})
	}
}

// A repeated "env" key is merged by the decoder: a variable hidden in the
// first object must still be checked.
func TestValidateEnvRepeatedKey(t *testing.T) {
	err := ValidateConfig([]byte(`{"command": ["env"], "env": {"A=B": "x"}, "env": {"C": "d"}}`))
	if ipa.ErrorCode(err) != ipa.EINVALID || !strings.Contains(message(err), `"A=B"`) {
		t.Fatalf("want EINVALID naming A=B, got %v", err)
	}
}

func TestCommandEnv(t *testing.T) {
	got := commandEnv(nil, "/w")
	if want := []string{"HOME=/w", "LANG=" + DefaultLang, "PATH=" + DefaultPath}; !slices.Equal(got, want) {
		t.Fatalf("defaults %q, want %q", got, want)
	}
	got = commandEnv(map[string]string{"LANG": "de_DE.UTF-8", "HOME": "/h", "X": "1"}, "/w")
	if want := []string{"HOME=/h", "LANG=de_DE.UTF-8", "PATH=" + DefaultPath, "X=1"}; !slices.Equal(got, want) {
		t.Fatalf("overridden %q, want %q", got, want)
	}
	if commandPath(nil) != DefaultPath || commandPath(map[string]string{"PATH": "/p"}) != "/p" {
		t.Fatal("commandPath ignores the override")
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "tool")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := lookPath("tool", "/nonexistent:"+dir); err != nil || p != prog {
		t.Fatalf("lookPath(tool) = %q, %v", p, err)
	}
	if _, err := lookPath("plain", dir); err == nil {
		t.Fatal("found a file that is not executable")
	}
	// The plugin's own PATH does not count: only the one given.
	t.Setenv("PATH", dir)
	if _, err := lookPath("tool", DefaultPath); err == nil {
		t.Fatal("found tool through the plugin's PATH")
	}
	// Relative PATH entries are skipped.
	t.Chdir(dir)
	if _, err := lookPath("tool", ".:"); err == nil {
		t.Fatal("found tool through a relative PATH entry")
	}
	if p, err := lookPath("./x/y", ""); err != nil || p != "./x/y" {
		t.Fatalf("a name with a slash: %q, %v", p, err)
	}
}
