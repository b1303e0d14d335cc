package ipa

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	tooMany, _ := json.Marshal(many)
	delete(many, "k0")
	justEnough, _ := json.Marshal(many)
	long := strings.Repeat("a", MaxLabelNameChars)
	cases := []struct {
		raw string
		ok  bool
	}{
		{``, true},
		{`null`, true},
		{`{}`, true},
		{`{"team":"core"}`, true},
		{`{"env":""}`, true},
		{`{"example.com/tier":"gold"}`, true},
		{`{"a.b-c_d":"A.b-9_z"}`, true},
		{`{"` + long + `":"` + long + `"}`, true},
		{string(justEnough), true},
		{string(tooMany), false},
		{`{"` + long + `a":"x"}`, false},
		{`{"k":"` + long + `a"}`, false},
		{`{"":"x"}`, false},
		{`{"a b":"x"}`, false},
		{`{"k":"a b"}`, false},
		{`{"k":"ü"}`, false},
		{`{"Example.com/k":"x"}`, false},
		{`{"-bad.com/k":"x"}`, false},
		{`{"/k":"x"}`, false},
		{`{"a/b/c":"x"}`, false},
		{`{"example.com/":"x"}`, false},
		{`{"k":1}`, false},
		{`{"k":null}`, false},
		{`["k"]`, false},
		{`"k"`, false},
	}
	for _, c := range cases {
		l, err := ParseLabels(json.RawMessage(c.raw))
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.raw, err)
			} else if l == nil {
				t.Errorf("%s: nil labels", c.raw)
			}
			continue
		}
		if ErrorCode(err) != EINVALID || ErrorReason(err) != ReasonInvalidLabels {
			t.Errorf("%s: got %v, want INVALID_LABELS", c.raw, err)
		}
	}
}

func TestApplyTaskUpdated(t *testing.T) {
	tk := &Task{}
	at := func(v int64) Event {
		return Event{TaskID: "t", Version: v}
	}
	created := at(1)
	created.Type, created.Data = EventTaskCreated, json.RawMessage(`{"title":"a","description":"d","labels":{"x":"1"},"parentId":"p","deadline":"2030-01-02T03:04:05.000000006Z"}`)
	if err := Apply(tk, created); err != nil {
		t.Fatal(err)
	}
	if tk.ParentID != "p" || tk.Labels["x"] != "1" || tk.Deadline == nil || tk.Deadline.Nanosecond() != 6 {
		t.Fatalf("created: %+v", tk)
	}
	upd := at(2)
	upd.Type, upd.Data = EventTaskUpdated, json.RawMessage(`{"title":"b","labels":{}}`)
	if err := Apply(tk, upd); err != nil {
		t.Fatal(err)
	}
	if tk.Title != "b" || tk.Description != "d" || len(tk.Labels) != 0 || tk.Labels == nil || tk.Deadline == nil {
		t.Fatalf("updated: %+v", tk)
	}
}
