package exec

import (
	"strings"
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestValidateConfig(t *testing.T) {
	for _, ok := range []string{`{"command": ["true"]}`, `{"command": ["sh", "-c", "echo hi"], "env": {"A": "b"}, "timeoutMs": 1000, "maxOutputLines": 5}`} {
		if err := ValidateConfig([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	long := `{"command": ["x", "` + strings.Repeat("a", MaxCommandBytes) + `"]}`
	for _, bad := range []string{``, `{}`, `{"command": []}`, `{"command": [""]}`, `{"command": "ls"}`, `{"command": ["ls"], "env": {"A=B": "c"}}`,
		`{"command": ["ls"], "timeoutMs": -1}`, `{"command": ["ls"], "maxOutputLines": 2000000}`, `{"command": ["ls"], "cwd": "/"}`, long} {
		if err := ValidateConfig([]byte(bad)); ipa.ErrorCode(err) != ipa.EINVALID {
			t.Errorf("%.60s: want EINVALID, got %v", bad, err)
		}
	}
	if c, _ := ParseConfig([]byte(`{"command": ["ls"]}`)); c.MaxOutputLines != DefaultOutputLines {
		t.Errorf("default cap %d", c.MaxOutputLines)
	}
}
