package ipa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Labels are a task's Kubernetes-style key/value tags: selectable with
// TaskFilter.Labels, unlike metadata.
type Labels map[string]string

// Limits on labels, as Kubernetes has them.
const (
	MaxLabels          = 64
	MaxLabelNameChars  = 63  // the name part of a key, and a value
	MaxLabelPrefixChar = 253 // the DNS-style prefix of a key
)

// ParseLabels reads a JSON object of string values into Labels and checks
// every pair with ValidateLabels. Absent or null is no labels (an empty,
// non-nil map). Returns EINVALID with reason INVALID_LABELS otherwise.
func ParseLabels(raw json.RawMessage) (Labels, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return Labels{}, nil
	}
	if raw[0] != '{' {
		return nil, Errorf(EINVALID, ReasonInvalidLabels, "labels must be a JSON object of strings.")
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, Errorf(EINVALID, ReasonInvalidLabels, "labels must be a JSON object of strings.")
	}
	out := make(Labels, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, Errorf(EINVALID, ReasonInvalidLabels, "The value of label %q must be a string.", k)
		}
		out[k] = s
	}
	return out, ValidateLabels(out)
}

// ValidateLabels checks the Kubernetes rules: at most 64 labels; keys of
// 1–63 characters of [A-Za-z0-9._-], optionally prefixed by a DNS-style name
// and '/'; values of up to 63 characters of the same set, or empty. Returns
// EINVALID with reason INVALID_LABELS naming the first bad label (by key
// order, so the message is stable); INVALID_TEXT for a key or value that is
// not UTF-8 or holds a control character.
func ValidateLabels(l Labels) error {
	if len(l) > MaxLabels {
		return Errorf(EINVALID, ReasonInvalidLabels, "A task has at most %d labels; got %d.", MaxLabels, len(l))
	}
	for _, k := range l.Keys() {
		// Text that is no text at all is INVALID_TEXT, as in every other
		// single-line field; the format rules below refuse the rest.
		if err := CheckLine("A label key", k); err != nil {
			return err
		}
		if err := CheckLine(fmt.Sprintf("The value of label %q", k), l[k]); err != nil {
			return err
		}
		if !validLabelKey(k) {
			return Errorf(EINVALID, ReasonInvalidLabels,
				"Label key %q is invalid: 1 to %d characters of A-Z a-z 0-9 . _ - , optionally after a DNS-style prefix and '/'.", k, MaxLabelNameChars)
		}
		if v := l[k]; v != "" && !validLabelName(v) {
			return Errorf(EINVALID, ReasonInvalidLabels,
				"Value %q of label %q is invalid: up to %d characters of A-Z a-z 0-9 . _ - , or empty.", v, k, MaxLabelNameChars)
		}
	}
	return nil
}

// Keys returns the keys in ascending order.
func (l Labels) Keys() []string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Equal reports whether l and o hold the same pairs (nil equals empty).
func (l Labels) Equal(o Labels) bool {
	if len(l) != len(o) {
		return false
	}
	for k, v := range l {
		if w, ok := o[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Contains reports whether every pair of sel is in l.
func (l Labels) Contains(sel Labels) bool {
	for k, v := range sel {
		if w, ok := l[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func validLabelKey(k string) bool {
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		if !validDNSPrefix(k[:i]) {
			return false
		}
		name = k[i+1:]
	}
	return validLabelName(name)
}

// validLabelName: 1–63 characters of [A-Za-z0-9._-]. Kubernetes further asks
// for an alphanumeric first and last character; the contract does not, so
// neither do we.
func validLabelName(s string) bool {
	if len(s) == 0 || len(s) > MaxLabelNameChars {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validDNSPrefix: a DNS subdomain, dot-separated labels of [a-z0-9-] that
// start and end alphanumeric, 253 characters at most.
func validDNSPrefix(s string) bool {
	if len(s) == 0 || len(s) > MaxLabelPrefixChar {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if len(part) == 0 || len(part) > 63 {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
			if !alnum && (c != '-' || i == 0 || i == len(part)-1) {
				return false
			}
		}
	}
	return true
}
