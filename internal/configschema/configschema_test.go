package configschema

import (
	"errors"
	"strings"
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
)

const helloSchema = `{
  "type": "object",
  "properties": {
    "fail": {"type": "boolean", "description": "exit with status 3"},
    "greeting": {"type": "object", "properties": {"words": {"type": "array", "items": {"type": "string"}}}}
  },
  "additionalProperties": false
}`

func TestValidate(t *testing.T) {
	s, err := Compile([]byte(helloSchema))
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{``, `{}`, `{"fail": true}`, `{"greeting": {"words": ["a"]}}`} {
		if err := s.Validate([]byte(ok)); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", ok, err)
		}
	}
	for _, c := range []struct{ in, path, msg string }{
		{`{"fail": "yes"}`, "/fail", "runtimeConfig/fail:"},
		{`{"greeting": {"words": ["a", 7]}}`, "/greeting/words/1", "runtimeConfig/greeting/words/1:"},
		{`{"other": 1}`, "", "runtimeConfig:"},
		{`[1]`, "", "runtimeConfig:"},
	} {
		err := s.Validate([]byte(c.in))
		var e *ipa.Error
		if !errors.As(err, &e) {
			t.Fatalf("Validate(%s) = %v, want *ipa.Error", c.in, err)
		}
		if e.Code != ipa.EINVALID || e.Reason != ipa.ReasonInvalidRuntimeConfig || e.Extensions["path"] != c.path || !strings.HasPrefix(e.Message, c.msg) {
			t.Errorf("Validate(%s) = %s/%s %q path %v; want path %q, message %q…", c.in, e.Code, e.Reason, e.Message, e.Extensions["path"], c.path, c.msg)
		}
	}
}

func TestCompileRefusesOutsideReferences(t *testing.T) {
	for _, bad := range []string{
		`not json`,
		`{"type": 7}`,
		`{"$ref": "http://example.com/x.json"}`,
		`{"$ref": "file:///etc/passwd"}`,
	} {
		if _, err := Compile([]byte(bad)); err == nil {
			t.Errorf("Compile(%s) succeeded, want an error", bad)
		}
	}
}
