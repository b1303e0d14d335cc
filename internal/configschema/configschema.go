// Package configschema checks a runtime config against the JSON Schema its
// runtime declares (kaptinlin/jsonschema). A schema comes from a plugin, so
// it is compiled with no network or file loader: a $ref to anything outside
// the schema itself (or the JSON Schema meta-schemas, which are embedded)
// fails to compile instead of making the server read a file or the network.
//
// The validator is chosen for what it costs a process that never uses it:
// every built-in runtime re-executes the server binary as a plugin, and a
// package's init runs whatever command the binary runs. This one has no
// eager init; the meta-schemas are compiled on the first Compile.
package configschema

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/kaptinlin/jsonschema"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// metaFS holds the meta-schemas of drafts 2019-09 and 2020-12 as published
// at json-schema.org (drafts 4, 6 and 7 are built into the validator), so
// that checking a schema never fetches one.
//
//go:embed metaschema
var metaFS embed.FS

// Schema is a compiled config schema, safe for concurrent use.
type Schema struct{ s *jsonschema.Schema }

// loadEmbedded serves the embedded meta-schemas by their URL and refuses
// every other URL, so nothing is ever fetched.
func loadEmbedded(ref string) (io.ReadCloser, error) {
	u, err := url.Parse(ref)
	if err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host == "json-schema.org" &&
		strings.HasPrefix(u.Path, "/draft/") && !strings.Contains(u.Path, "..") {
		if b, err := metaFS.ReadFile("metaschema" + u.Path + ".json"); err == nil {
			return io.NopCloser(bytes.NewReader(b)), nil
		}
	}
	return nil, fmt.Errorf("schema references %s; only references inside the schema are allowed", ref)
}

// newCompiler is a compiler whose only loader is loadEmbedded (the library
// registers http and https loaders by default).
func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	for scheme := range c.Loaders {
		delete(c.Loaders, scheme)
	}
	for _, scheme := range []string{"http", "https", "file"} {
		c.RegisterLoader(scheme, loadEmbedded)
	}
	return c
}

// metaCompiler checks schema documents against their meta-schema. It is
// shared, so each meta-schema is compiled once (on first use), and it never
// compiles a plugin's schema, so two plugins' $ids cannot collide in it.
var metaCompiler = sync.OnceValue(newCompiler)

// Compile compiles a JSON Schema document (draft 2020-12 unless its $schema
// says otherwise). It returns an error for a document that is not JSON, not
// a valid schema, or that references anything outside itself.
func Compile(raw []byte) (*Schema, error) {
	if !json.Valid(raw) {
		return nil, errors.New("config schema is not JSON")
	}
	res, err := metaCompiler().ValidateSchema(raw)
	if err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	if !res.IsValid() {
		path, msg := describe(res)
		return nil, fmt.Errorf("config schema is not a valid JSON Schema: at %q: %s", path, msg)
	}
	// A compiler of its own: the library caches schemas by $id, which would
	// let one plugin's schema stand in for another's.
	c := newCompiler()
	s, err := c.Compile(raw)
	if err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	if refs := s.UnresolvedReferenceURIs(); len(refs) > 0 {
		slices.Sort(refs)
		return nil, fmt.Errorf("config schema: cannot resolve $ref %s; only references inside the schema are allowed", strings.Join(refs, ", "))
	}
	// Draft 2020-12 makes the content keywords annotations that do not
	// fail a config; this library would assert them (refusing, say, a
	// string that is not base64).
	walk(s, func(n *jsonschema.Schema) { n.ContentEncoding, n.ContentMediaType, n.ContentSchema = nil, nil, nil })
	// Drafts 4, 6 and 7 assert "format" (2019-09 on make it an annotation),
	// the names they know; a name they do not know checks nothing.
	switch s.Dialect() {
	case jsonschema.Draft4, jsonschema.Draft6, jsonschema.Draft7:
		c.SetAssertFormat(true)
		walk(s, func(n *jsonschema.Schema) {
			if n.Format != nil {
				if _, known := jsonschema.Formats[*n.Format]; !known {
					c.RegisterFormat(*n.Format, func(any) bool { return true })
				}
			}
		})
	}
	return &Schema{s: s}, nil
}

// walk calls fn on a compiled schema and every subschema in it, once each.
func walk(s *jsonschema.Schema, fn func(*jsonschema.Schema)) {
	seen := map[*jsonschema.Schema]bool{}
	var visit func(*jsonschema.Schema)
	visit = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		fn(s)
		for _, m := range []map[string]*jsonschema.Schema{s.Defs, s.DependentSchemas} {
			for _, c := range m {
				visit(c)
			}
		}
		for _, m := range []*jsonschema.SchemaMap{s.Properties, s.PatternProperties} {
			if m != nil {
				for _, c := range *m {
					visit(c)
				}
			}
		}
		for _, l := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf, s.PrefixItems} {
			for _, c := range l {
				visit(c)
			}
		}
		for _, c := range []*jsonschema.Schema{s.Not, s.If, s.Then, s.Else, s.Items, s.Contains,
			s.AdditionalProperties, s.PropertyNames, s.UnevaluatedItems, s.UnevaluatedProperties, s.ContentSchema} {
			visit(c)
		}
	}
	visit(s)
}

// Validate checks a config (JSON; empty means {}). It returns an EINVALID
// *ipa.Error with reason INVALID_RUNTIME_CONFIG whose message names the
// failing place and whose extensions.path is its JSON pointer ("" for the
// config itself).
func (s *Schema) Validate(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	if !json.Valid(raw) {
		return invalid("", "runtimeConfig is not JSON.")
	}
	res := s.s.ValidateJSON(raw)
	if res.IsValid() {
		return nil
	}
	path, msg := describe(res)
	return invalid(path, fmt.Sprintf("runtimeConfig%s: %s.", path, msg))
}

// applicators are the keywords whose failure is the failure of a
// subschema, reported in a detail of the result rather than by itself.
var applicators = map[string]bool{
	"properties": true, "patternProperties": true, "additionalProperties": true,
	"propertyNames": true, "dependentSchemas": true, "unevaluatedProperties": true,
	"items": true, "prefixItems": true, "contains": true, "unevaluatedItems": true,
	"allOf": true, "anyOf": true, "oneOf": true, "not": true,
	"if": true, "then": true, "else": true,
	"$ref": true, "$dynamicRef": true, "$recursiveRef": true, "contentSchema": true,
}

// closers are the keywords whose false subschema means "nothing more is
// allowed here": their failure belongs to the object or array, not to the
// extra member (`{"other": 1}` against additionalProperties false fails at
// "", naming "other").
var closers = map[string]bool{
	"additionalProperties": true, "unevaluatedProperties": true,
	"items": true, "unevaluatedItems": true,
}

// describe picks the most precise failure of a result: the shallowest
// keyword that failed by itself, else the first failing subschema (by
// instance location, so the choice is stable across runs), recursively. It
// returns the failure's JSON pointer (RFC 6901) and message.
func describe(r *jsonschema.EvaluationResult) (path, msg string) {
	var toks []string
	for {
		if k := firstKey(r.Errors, func(k string) bool { return !applicators[k] }); k != "" {
			return pointer(toks), message(r.Errors[k])
		}
		// A detail's InstanceLocation is relative to its parent: "" (the
		// same place) or "/" followed by one unescaped member name or index.
		// The smallest comes first: the same place, then lexical order.
		var next *jsonschema.EvaluationResult
		for _, d := range r.Details {
			if d != nil && !d.Valid && (next == nil || d.InstanceLocation < next.InstanceLocation) {
				next = d
			}
		}
		if next == nil {
			if k := firstKey(r.Errors, func(string) bool { return true }); k != "" {
				return pointer(toks), message(r.Errors[k])
			}
			return pointer(toks), "does not match the schema"
		}
		if kw := firstSegment(next.EvaluationPath); closers[kw] && r.Errors[kw] != nil && isFalseSchema(next) {
			return pointer(toks), message(r.Errors[kw])
		}
		if next.InstanceLocation != "" {
			toks = append(toks, strings.TrimPrefix(next.InstanceLocation, "/"))
		}
		r = next
	}
}

// isFalseSchema reports whether a result is the failure of the schema false.
func isFalseSchema(r *jsonschema.EvaluationResult) bool {
	return len(r.Errors) == 1 && r.Errors["schema"] != nil && len(r.Details) == 0
}

func firstSegment(p string) string {
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return p
}

// firstKey is the lexically first key of errs that keep accepts, or "".
func firstKey(errs map[string]*jsonschema.EvaluationError, keep func(string) bool) string {
	var best string
	for k, e := range errs {
		if e != nil && keep(k) && (best == "" || k < best) {
			best = k
		}
	}
	return best
}

// message is the library's English message, starting lower-case as it
// follows "runtimeConfig/x: ".
func message(e *jsonschema.EvaluationError) string {
	m := strings.TrimSuffix(e.Error(), ".")
	r, n := utf8.DecodeRuneInString(m)
	if n == 0 {
		return "does not match the schema"
	}
	return string(unicode.ToLower(r)) + m[n:]
}

// pointer is a JSON pointer (RFC 6901) for an instance location.
func pointer(toks []string) string {
	var b strings.Builder
	for _, t := range toks {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

func invalid(path, msg string) *ipa.Error {
	e := ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidRuntimeConfig, "%s", msg)
	e.Extensions = map[string]any{"path": path}
	return e
}
