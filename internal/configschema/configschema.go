// Package configschema checks a runtime config against the JSON Schema its
// runtime declares (santhosh-tekuri/jsonschema). A schema comes from a plugin,
// so it is compiled with no loader: a $ref to anything outside the schema
// itself fails to compile instead of making the server read a file or the
// network.
package configschema

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// schemaURL names the one resource of a compiler; it is never fetched.
const schemaURL = "mem:///runtime-config.schema.json"

var printer = message.NewPrinter(language.English)

// Schema is a compiled config schema, safe for concurrent use.
type Schema struct{ s *jsonschema.Schema }

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema references %s; only references inside the schema are allowed", url)
}

// Compile compiles a JSON Schema document (draft 2020-12 unless its $schema
// says otherwise). It returns an error for a document that is not JSON or not
// a valid schema.
func Compile(raw []byte) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("config schema is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	return &Schema{s: s}, nil
}

// Validate checks a config (JSON; empty means {}). It returns an EINVALID
// *ipa.Error with reason INVALID_RUNTIME_CONFIG whose message names the
// failing place and whose extensions.path is its JSON pointer ("" for the
// config itself).
func (s *Schema) Validate(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return invalid("", "runtimeConfig is not JSON.")
	}
	err = s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return invalid("", "runtimeConfig cannot be checked: "+err.Error())
	}
	leaf := firstLeaf(ve)
	path := pointer(leaf.InstanceLocation)
	where := "runtimeConfig"
	if path != "" {
		where = "runtimeConfig" + path
	}
	return invalid(path, fmt.Sprintf("%s: %s.", where, leaf.ErrorKind.LocalizedString(printer)))
}

// firstLeaf is the deepest first cause: the most precise failure.
func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		causes := append([]*jsonschema.ValidationError(nil), e.Causes...)
		// Stable across runs: the shallowest-first, then lexical, location.
		sort.SliceStable(causes, func(i, j int) bool {
			return pointer(causes[i].InstanceLocation) < pointer(causes[j].InstanceLocation)
		})
		e = causes[0]
	}
	return e
}

// pointer is a JSON pointer (RFC 6901) for an instance location.
func pointer(loc []string) string {
	var b strings.Builder
	for _, t := range loc {
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
