package configschema

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

func TestCompileRefusesInvalidSchemas(t *testing.T) {
	for _, bad := range []string{
		`{"type": "strnig"}`,
		`{"minLength": -1}`,
		`{"properties": 5}`,
		`{"required": "a"}`,
		`{"pattern": "("}`,
		`{"$ref": "#/$defs/nope"}`,
		`{"$id": "http://example.com/root.json", "$ref": "other.json"}`,
		`{"$schema": "https://example.com/my-meta-schema", "type": "object"}`,
		`{"$schema": "http://json-schema.org/draft-07/schema#", "type": "strnig"}`,
		`{"$schema": "https://json-schema.org/draft/2019-09/schema", "minItems": "one"}`,
	} {
		if _, err := Compile([]byte(bad)); err == nil {
			t.Errorf("Compile(%s) succeeded, want an error", bad)
		}
	}
}

// A schema naming a remote $ref or $schema is refused without the server
// fetching anything.
func TestCompileNeverFetches(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type": "string"}`))
	}))
	defer srv.Close()
	for _, bad := range []string{
		`{"$ref": "` + srv.URL + `/x.json"}`,
		`{"properties": {"a": {"$ref": "` + srv.URL + `/x.json#/y"}}}`,
		`{"$schema": "` + srv.URL + `/meta.json"}`,
		`{"$id": "` + srv.URL + `/root.json", "$ref": "x.json"}`,
	} {
		if _, err := Compile([]byte(bad)); err == nil {
			t.Errorf("Compile(%s) succeeded, want an error", bad)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the schema server got %d requests, want none", n)
	}
}

func TestValidateDetails(t *testing.T) {
	const schema = `{
  "type": "object",
  "required": ["name"],
  "properties": {
    "name": {"type": "string", "minLength": 1},
    "a/b~c": {"type": "integer"},
    "r": {"$ref": "#/$defs/small"},
    "list": {"type": "array", "prefixItems": [{"type": "string"}], "items": false},
    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "meta": {"$ref": "https://json-schema.org/draft/2020-12/schema"}
  },
  "$defs": {"small": {"type": "integer", "maximum": 3}}
}`
	s, err := Compile([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{`{"name": "x"}`, `{"name": "x", "r": 2, "list": ["a"], "either": 4, "meta": {"type": "string"}}`} {
		if err := s.Validate([]byte(ok)); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", ok, err)
		}
	}
	for _, c := range []struct{ in, path, msg string }{
		{`{"name": 1}`, "/name", "runtimeConfig/name: value is integer but should be string."},
		{`{}`, "", "runtimeConfig: required property 'name' is missing."},
		{`{"name": "x", "a/b~c": "1"}`, "/a~1b~0c", "runtimeConfig/a~1b~0c:"},
		{`{"name": "x", "r": 9}`, "/r", "runtimeConfig/r:"},
		{`{"name": "x", "list": ["a", "b"]}`, "/list", "runtimeConfig/list:"},
		{`{"name": "x", "either": true}`, "/either", "runtimeConfig/either:"},
		{`{"name": "x", "meta": {"type": "strnig"}}`, "/meta/type", "runtimeConfig/meta/type:"},
		// The shallowest failure wins over a deeper one.
		{`{"r": 9}`, "", "runtimeConfig: required property"},
		{`not json`, "", "runtimeConfig is not JSON."},
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

// Two runtimes may declare schemas with the same $id; each keeps its own.
func TestSameIDStaysApart(t *testing.T) {
	a, err := Compile([]byte(`{"$id": "https://example.com/config", "type": "object", "properties": {"n": {"type": "integer"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile([]byte(`{"$id": "https://example.com/config", "type": "object", "properties": {"n": {"type": "string"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Validate([]byte(`{"n": 1}`)) != nil || b.Validate([]byte(`{"n": "x"}`)) != nil {
		t.Error("a schema took another's place by its $id")
	}
	if a.Validate([]byte(`{"n": "x"}`)) == nil || b.Validate([]byte(`{"n": 1}`)) == nil {
		t.Error("a schema accepted what it refuses")
	}
}

// Earlier drafts named by $schema keep their own rules.
func TestEarlierDrafts(t *testing.T) {
	s, err := Compile([]byte(`{"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"type": "string"}], "additionalItems": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`["a"]`)); err != nil {
		t.Errorf("draft-07 tuple: %v", err)
	}
	if err := s.Validate([]byte(`[1]`)); err == nil {
		t.Error("draft-07 tuple accepted [1]")
	}
	if _, err := Compile([]byte(`{"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object"}`)); err != nil {
		t.Errorf("draft 2019-09: %v", err)
	}
}

func TestConcurrentCompile(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			s, err := Compile([]byte(helloSchema))
			if err != nil {
				t.Error(err)
				return
			}
			if s.Validate([]byte(`{"fail": "yes"}`)) == nil {
				t.Error("accepted a string for a boolean")
			}
		})
	}
	wg.Wait()
}

// The content keywords are annotations (draft 2020-12): a config is not
// refused for a string that is not what they describe.
func TestContentIsAnnotation(t *testing.T) {
	s, err := Compile([]byte(`{"type": "object", "properties": {
  "b": {"type": "string", "contentEncoding": "base64", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
  "x": {"allOf": [{"contentEncoding": "x-unknown"}]},
  "n": {"type": "integer"}
}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`{"b": "not base64!", "x": "plain"}`)); err != nil {
		t.Errorf("content keywords asserted: %v", err)
	}
	if err := s.Validate([]byte(`{"b": "eyJhIjoxfQ==", "n": "1"}`)); err == nil {
		t.Error("the other keywords of the schema no longer checked")
	}
}

// "format" is asserted by drafts 4, 6 and 7 (names they know only) and an
// annotation from 2019-09 on.
func TestFormatByDraft(t *testing.T) {
	const props = `"type": "object", "properties": {"e": {"type": "string", "format": "email"}, "u": {"type": "string", "format": "x-unknown"}}`
	d7, err := Compile([]byte(`{"$schema": "http://json-schema.org/draft-07/schema#", ` + props + `}`))
	if err != nil {
		t.Fatal(err)
	}
	d2020, err := Compile([]byte(`{` + props + `}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := d7.Validate([]byte(`{"e": "not an address"}`)); err == nil {
		t.Error("draft-07 accepted a bad email")
	}
	for _, ok := range []string{`{"e": "a@example.com", "u": "anything"}`} {
		if err := d7.Validate([]byte(ok)); err != nil {
			t.Errorf("draft-07 Validate(%s) = %v", ok, err)
		}
	}
	if err := d2020.Validate([]byte(`{"e": "not an address", "u": "anything"}`)); err != nil {
		t.Errorf("draft 2020-12 asserted format: %v", err)
	}
}
