package httpserver

import (
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
)

// Limits on the document itself. gqlgen validates a document before any
// OperationContextMutator (the depth and cost limits) sees it, and some
// validation rules cost the square of what they are given: comparing every
// pair of fields that share a response name (OverlappingFieldsCanBeMerged)
// took one 92 KB document to gigabytes. So these are checked first, on the
// raw text and then on the parsed document, in work proportional to the
// document's length, and only a document within all of them is validated.
const (
	// MaxDocumentBytes is the longest document (the query text). Bodies and
	// WebSocket messages are capped at 1 MiB already; this caps the document
	// whichever way it came (POST, GET, WebSocket, a persisted query).
	MaxDocumentBytes = 256 << 10
	// MaxDocumentTokens is how many lexical tokens (names, punctuation,
	// values, comments) a document may hold. It bounds the parse; the
	// standard introspection query GraphiQL sends has 181.
	MaxDocumentTokens = 20_000
	// MaxListItems is the longest list value a request may give, in the
	// document or in its variables, at any depth; a longer one is refused
	// (BAD_USER_INPUT / INVALID_ARGUMENT) naming where it was given. Lists
	// select rows (filters, event types), and every item becomes a bound
	// SQL parameter.
	MaxListItems = 1000
	// MaxExpandedSelections bounds the document's size once every fragment
	// spread is replaced by the fragment: the selections and the argument
	// values under them, summed over its operations and fragments (each is
	// validated on its own). Fragments that spread fragments twice over
	// double at each level; they are counted once each, so counting is
	// linear in the document, and refused with COMPLEXITY_LIMIT_EXCEEDED.
	// The standard introspection query expands to about 500.
	MaxExpandedSelections = 20_000
	// MaxSelectionSetFields is how many fields one selection set may hold,
	// counting those its inline fragments and fragment spreads bring in
	// and those of every field merged with its own (same response name).
	MaxSelectionSetFields = 1000
	// MaxFieldMerges bounds the pairs of fields sharing a response name in
	// one selection set (`id id`, or `tasks(first: 1) tasks(first: 2)`),
	// summed over the document. Validation compares every such pair, and
	// each pair that cannot merge is one error.
	MaxFieldMerges = 10_000
)

// documentBudget refuses, before gqlgen parses and validates it, a document
// over one of the limits above, and variables holding a list longer than
// MaxListItems. It is an OperationParameterMutator, so it runs for every
// transport (POST, GET, SSE, both WebSocket protocols), after persisted
// queries have put the query text in place.
type documentBudget struct {
	// cache is gqlgen's cache of parsed and validated documents: a document
	// found there passed these checks already.
	cache graphql.Cache[*ast.QueryDocument]
}

var (
	_ graphql.HandlerExtension          = documentBudget{}
	_ graphql.OperationParameterMutator = documentBudget{}
)

func (documentBudget) ExtensionName() string                   { return "DocumentBudget" }
func (documentBudget) Validate(graphql.ExecutableSchema) error { return nil }

func (b documentBudget) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	if err := checkVariableLists(raw.Variables); err != nil {
		return err
	}
	if b.cache != nil {
		if _, ok := b.cache.Get(ctx, raw.Query); ok {
			return nil
		}
	}
	return checkDocument(raw.Query)
}

// checkDocument applies the document limits to query. A document that does
// not parse passes: gqlgen parses it next and reports the syntax error
// itself, having read no more tokens than were counted here.
func checkDocument(query string) *gqlerror.Error {
	// The scan first: it stops at the first list that is too long, so that
	// refusal names the list however long the document is.
	if err := scanTokens(query); err != nil {
		return err
	}
	if len(query) > MaxDocumentBytes {
		return invalidOperation("The document is %d bytes; the limit is %d.", len(query), MaxDocumentBytes)
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		return nil
	}
	return checkShape(doc)
}

// listFrame is one open bracket while scanning: what it opened, and, for a
// value, the argument or input field name it is given for.
type listFrame struct {
	kind  byte // '(' arguments, '{' selection set, 'o' object value, '[' list value
	key   string
	items int
}

// scanTokens counts the document's tokens and the items of every list
// literal, without parsing it: a refusal costs at most MaxDocumentTokens
// tokens' reading and no allocation per token. Which bracket opens a value
// (rather than a selection set) follows from the one it sits in.
func scanTokens(query string) *gqlerror.Error {
	lex := lexer.New(&ast.Source{Input: query})
	var (
		stack   []listFrame
		prev    lexer.Token
		lastKey string // the name before the last colon in arguments or an object
	)
	for n := 0; ; n++ {
		tok, err := lex.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return nil // a syntax error is the parser's to report
		}
		if n >= MaxDocumentTokens {
			return invalidOperation("The document has more than %d tokens; the limit is %d.", MaxDocumentTokens, MaxDocumentTokens)
		}
		if tok.Kind == lexer.Comment {
			continue
		}
		var top *listFrame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		inValue := top != nil && top.kind != '{'
		if top != nil && top.kind == '[' && startsValue(tok.Kind) {
			top.items++
			if top.items > MaxListItems {
				return invalidOperation("The list given for %q has more than %d items; the limit is %d.", valuePath(stack), MaxListItems, MaxListItems)
			}
		}
		// A value opened under a key is given for that key; one opened
		// inside a list, for the list's.
		key := ""
		if top != nil && top.kind != '[' {
			key = lastKey
		}
		switch tok.Kind {
		case lexer.ParenL:
			stack = append(stack, listFrame{kind: '('})
		case lexer.BracketL:
			stack = append(stack, listFrame{kind: '[', key: key})
		case lexer.BraceL:
			if inValue {
				stack = append(stack, listFrame{kind: 'o', key: key})
			} else {
				stack = append(stack, listFrame{kind: '{'})
			}
		case lexer.ParenR, lexer.BracketR, lexer.BraceR:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case lexer.Colon:
			if prev.Kind == lexer.Name && top != nil && (top.kind == '(' || top.kind == 'o') {
				lastKey = prev.Value
			}
		}
		prev = tok
	}
}

// valuePath names the value the innermost frame of stack belongs to: the
// keys of the values it is nested in, from its argument down
// (`filter.status`). It is built only for a refusal, so that deeply nested
// values cost nothing while scanning.
func valuePath(stack []listFrame) string {
	start := 0
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].kind == '(' || stack[i].kind == '{' {
			start = i + 1
			break
		}
	}
	var keys []string
	for _, f := range stack[start:] {
		if f.key != "" {
			keys = append(keys, f.key)
		}
	}
	return strings.Join(keys, ".")
}

// startsValue reports whether a token of kind begins a value.
func startsValue(kind lexer.Type) bool {
	switch kind {
	case lexer.Name, lexer.Int, lexer.Float, lexer.String, lexer.BlockString, lexer.Dollar, lexer.BracketL, lexer.BraceL:
		return true
	}
	return false
}

// checkVariableLists refuses variables holding a list of more than
// MaxListItems items, at any depth.
func checkVariableLists(vars map[string]any) *gqlerror.Error {
	for name, v := range vars {
		if path, n := longList("$"+name, v); path != "" {
			return invalidOperation("The list given for %q has %d items; the limit is %d.", path, n, MaxListItems)
		}
	}
	return nil
}

// longList returns the path and length of the first list in v longer than
// MaxListItems, or "" when there is none.
func longList(path string, v any) (string, int) {
	switch x := v.(type) {
	case []any:
		if len(x) > MaxListItems {
			return path, len(x)
		}
		for _, item := range x {
			if p, n := longList(path, item); p != "" {
				return p, n
			}
		}
	case map[string]any:
		for k, item := range x {
			if p, n := longList(path+"."+k, item); p != "" {
				return p, n
			}
		}
	}
	return "", 0
}

// shapeWalk measures a parsed document. Fragments are looked up by name in a
// map (the AST's ForName is a linear scan) and each fragment's expanded size
// is computed once.
type shapeWalk struct {
	frags  map[string]*ast.FragmentDefinition
	size   map[string]int // expanded size of each fragment, once known
	active map[string]bool
	cycle  string // a fragment found spreading itself
	merges int
}

// checkShape applies MaxExpandedSelections, MaxSelectionSetFields and
// MaxFieldMerges to doc.
func checkShape(doc *ast.QueryDocument) *gqlerror.Error {
	w := &shapeWalk{
		frags:  make(map[string]*ast.FragmentDefinition, len(doc.Fragments)),
		size:   map[string]int{},
		active: map[string]bool{},
	}
	for _, f := range doc.Fragments {
		if _, dup := w.frags[f.Name]; !dup { // the first of a name, like ForName
			w.frags[f.Name] = f
		}
	}
	// Validation walks every operation and every fragment on its own.
	total := 0
	for _, op := range doc.Operations {
		total = satAddInt(total, w.setSize(op.SelectionSet))
	}
	for _, f := range doc.Fragments {
		total = satAddInt(total, w.setSize(f.SelectionSet))
	}
	if w.cycle != "" {
		err := gqlerror.Errorf("Cannot spread fragment %q within itself.", w.cycle)
		errcode.Set(err, errcode.ValidationFailed)
		return err
	}
	if total > MaxExpandedSelections {
		return overLimit("The document expands to more than %d selections once its fragments are spread; the limit is %d.", MaxExpandedSelections, MaxExpandedSelections)
	}
	// Within the bound, the expansion itself is affordable: merge the
	// selection sets validation compares and count what it would compare.
	for _, op := range doc.Operations {
		if err := w.merge([]ast.SelectionSet{op.SelectionSet}); err != nil {
			return err
		}
	}
	for _, f := range doc.Fragments {
		if err := w.merge([]ast.SelectionSet{f.SelectionSet}); err != nil {
			return err
		}
	}
	return nil
}

// setSize is the expanded size of set: a selection counts 1 plus its
// argument and directive values plus what it selects; a spread counts the
// fragment's expanded size, computed once.
func (w *shapeWalk) setSize(set ast.SelectionSet) int {
	n := 0
	for _, sel := range set {
		n = satAddInt(n, 1)
		switch s := sel.(type) {
		case *ast.Field:
			for _, a := range s.Arguments {
				n = satAddInt(n, valueSize(a.Value))
			}
			n = satAddInt(n, directivesSize(s.Directives))
			n = satAddInt(n, w.setSize(s.SelectionSet))
		case *ast.InlineFragment:
			n = satAddInt(n, directivesSize(s.Directives))
			n = satAddInt(n, w.setSize(s.SelectionSet))
		case *ast.FragmentSpread:
			n = satAddInt(n, directivesSize(s.Directives))
			n = satAddInt(n, w.fragmentSize(s.Name))
		}
	}
	return n
}

func (w *shapeWalk) fragmentSize(name string) int {
	if n, ok := w.size[name]; ok {
		return n
	}
	def := w.frags[name]
	if def == nil {
		return 0 // unknown: validation refuses it
	}
	if w.active[name] {
		if w.cycle == "" {
			w.cycle = name
		}
		return 0
	}
	w.active[name] = true
	n := satAddInt(directivesSize(def.Directives), w.setSize(def.SelectionSet))
	w.active[name] = false
	w.size[name] = n
	return n
}

func directivesSize(ds ast.DirectiveList) int {
	n := 0
	for _, d := range ds {
		n = satAddInt(n, 1)
		for _, a := range d.Arguments {
			n = satAddInt(n, valueSize(a.Value))
		}
	}
	return n
}

// valueSize counts the nodes of an argument value.
func valueSize(v *ast.Value) int {
	if v == nil {
		return 0
	}
	n := 1
	for _, c := range v.Children {
		n = satAddInt(n, valueSize(c.Value))
	}
	return n
}

// merge takes the selection sets that land at one place of the response
// (a field's, and those of the fields merged with it), gathers their
// fields through inline fragments and spreads, counts them and the pairs
// sharing a response name, and goes on below each response name. It visits
// every expanded field once, so it runs only once the expanded size is
// known to be within MaxExpandedSelections.
func (w *shapeWalk) merge(sets []ast.SelectionSet) *gqlerror.Error {
	var (
		order  []string
		byName = map[string][]*ast.Field{}
		fields int
	)
	var gather func(set ast.SelectionSet)
	gather = func(set ast.SelectionSet) {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				name := s.Alias
				if name == "" {
					name = s.Name
				}
				if _, seen := byName[name]; !seen {
					order = append(order, name)
				}
				byName[name] = append(byName[name], s)
				fields++
			case *ast.InlineFragment:
				gather(s.SelectionSet)
			case *ast.FragmentSpread:
				if def := w.frags[s.Name]; def != nil {
					gather(def.SelectionSet)
				}
			}
		}
	}
	for _, set := range sets {
		gather(set)
	}
	if fields > MaxSelectionSetFields {
		return overLimit("A selection set holds %d fields once its fragments are spread; the limit is %d.", fields, MaxSelectionSetFields)
	}
	for _, name := range order {
		k := len(byName[name])
		w.merges = satAddInt(w.merges, k*(k-1)/2)
		if w.merges > MaxFieldMerges {
			return overLimit("The document has more than %d pairs of fields sharing a response name (such as %q); the limit is %d. Give them different aliases, or ask once.", MaxFieldMerges, name, MaxFieldMerges)
		}
	}
	for _, name := range order {
		var below []ast.SelectionSet
		for _, f := range byName[name] {
			if len(f.SelectionSet) > 0 {
				below = append(below, f.SelectionSet)
			}
		}
		if len(below) > 0 {
			if err := w.merge(below); err != nil {
				return err
			}
		}
	}
	return nil
}

// overLimit is the refusal of a document too costly to check or run.
func overLimit(format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
	return err
}

func satAddInt(a, b int) int {
	if s := a + b; s >= a && s >= b {
		return s
	}
	return int(^uint(0) >> 1)
}
