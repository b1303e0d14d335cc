package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/ipa-dev/ipa/internal/configschema"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// TestMain doubles as a runtime plugin: with CATALOG_TEST_PLUGIN=1 the test
// binary serves describedRuntime, so discovery launches a real plugin.
func TestMain(m *testing.M) {
	if os.Getenv("CATALOG_TEST_PLUGIN") == "1" {
		pod.Serve(describedRuntime{})
	}
	os.Exit(m.Run())
}

type describedRuntime struct{}

func (describedRuntime) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{
		Description:   "Says what it is.",
		ConfigSchema:  json.RawMessage(`{"type": "object", "properties": {"fail": {"type": "boolean"}}}`),
		ExampleConfig: json.RawMessage(`{"fail": false}`),
	}, nil
}
func (describedRuntime) Start(context.Context, pod.StartRequest) (pod.StartResponse, error) {
	return pod.StartResponse{}, nil
}
func (describedRuntime) Attach(_ context.Context, r pod.AttachRequest) (pod.AttachResponse, error) {
	return pod.AttachResponse{TaskID: r.TaskID}, nil
}
func (describedRuntime) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	return pod.StateResponse{}, nil
}
func (describedRuntime) Stop(context.Context, pod.StopRequest) (pod.StopResponse, error) {
	return pod.StopResponse{}, nil
}

// Discovery asks each plugin about itself: a plugin that answers is listed
// with its description, protocol version, schema and example, and its
// schema checks configs; a file that is no plugin is still listed, with a
// description naming it and nothing else.
func TestDiscoverDescribes(t *testing.T) {
	s := newSetup(t)
	s.write(t, "described", fmt.Sprintf("#!/bin/sh\nCATALOG_TEST_PLUGIN=1 exec %q\n", os.Args[0]), 0o755)
	s.write(t, "mute", scriptA, 0o755)
	o := s.opts()
	o.SHA256File = ""
	c, err := Discover(o, quiet())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ipa.Runtime{}
	for _, r := range c.Runtimes() {
		got[r.Name] = r
	}
	d := got["described"]
	if d.Description != "Says what it is." || d.ProtocolVersion != pod.ProtocolVersion ||
		string(d.ExampleConfig) != `{"fail": false}` || len(d.ConfigSchema) == 0 || d.ValidateConfig == nil {
		t.Fatalf("described: %+v", d)
	}
	err = d.ValidateConfig([]byte(`{"fail": "yes"}`))
	var e *ipa.Error
	if ipa.ErrorReason(err) != ipa.ReasonInvalidRuntimeConfig || !asError(err, &e) || e.Extensions["path"] != "/fail" {
		t.Fatalf("ValidateConfig of a bad config = %v", err)
	}
	if err := d.ValidateConfig([]byte(`{"fail": true}`)); err != nil {
		t.Fatalf("ValidateConfig of a good config = %v", err)
	}
	m := got["mute"]
	if m.Description != "External runtime plugin mute." || m.ProtocolVersion != 0 || m.ConfigSchema != nil || m.ValidateConfig != nil {
		t.Fatalf("mute: %+v", m)
	}
	for _, name := range []string{"demo", "exec"} {
		b := got[name]
		if b.ProtocolVersion != pod.ProtocolVersion || !json.Valid(b.ConfigSchema) || !json.Valid(b.ExampleConfig) || b.ValidateConfig == nil {
			t.Fatalf("%s: %+v", name, b)
		}
		// A built-in's example is valid by its own check and its schema.
		if err := b.ValidateConfig(b.ExampleConfig); err != nil {
			t.Fatalf("%s's example config: %v", name, err)
		}
		schema, err := configschema.Compile(b.ConfigSchema)
		if err != nil {
			t.Fatalf("%s's schema: %v", name, err)
		}
		if err := schema.Validate(b.ExampleConfig); err != nil {
			t.Fatalf("%s's example against its schema: %v", name, err)
		}
	}
}

func asError(err error, target **ipa.Error) bool {
	e, ok := err.(*ipa.Error)
	*target = e
	return ok
}
