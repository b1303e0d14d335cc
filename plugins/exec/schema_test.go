package exec

import (
	"testing"

	"github.com/ipa-dev/ipa/internal/configschema"
)

// The declared schema (what the runtimes query shows, and what createTask
// checks first) describes sandbox and onSuccess as ParseConfig decides
// them: what one accepts the other does, and what ParseConfig refuses for
// those fields the schema refuses too.
func TestConfigSchemaAgreesOnSandboxAndOnSuccess(t *testing.T) {
	schema, err := configschema.Compile([]byte(ConfigSchema))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	for _, ok := range []string{
		`{"command": ["true"]}`,
		`{"command": ["true"], "onSuccess": "COMPLETE"}`,
		`{"command": ["true"], "onSuccess": "STOP"}`,
		`{"command": ["true"], "sandbox": {}}`,
		`{"command": ["true"], "sandbox": {"network": true, "writable": ["/srv"]}}`,
	} {
		if _, err := ParseConfig([]byte(ok)); err != nil {
			t.Errorf("ParseConfig(%s): %v", ok, err)
		}
		if err := schema.Validate([]byte(ok)); err != nil {
			t.Errorf("schema refuses %s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		`{"command": ["true"], "onSuccess": "MAYBE"}`,
		`{"command": ["true"], "onSuccess": "complete"}`,
		`{"command": ["true"], "sandbox": {"network": "yes"}}`,
		`{"command": ["true"], "sandbox": {"writable": "/srv"}}`,
		`{"command": ["true"], "sandbox": {"net": true}}`,
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig accepts %s", bad)
		}
		if err := schema.Validate([]byte(bad)); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
	// Defaults: no network, STOP.
	c, err := ParseConfig([]byte(`{"command": ["true"]}`))
	if err != nil || c.Sandbox.Network || len(c.Sandbox.Writable) != 0 || c.OnSuccess != OnSuccessStop {
		t.Fatalf("defaults %+v, %v: want no network, nothing more writable, STOP", c, err)
	}
}
