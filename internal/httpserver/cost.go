package httpserver

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Further limits a request must stay within (see also MaxComplexity). All but
// MaxResponseBytes are checked before any resolver runs.
const (
	// MaxAliases is how many aliased fields one operation may hold, counting
	// a fragment's aliases once per place it is spread. Aliases are how one
	// request asks for the same expensive list many times over.
	MaxAliases = 100
	// MaxIntrospectionDepth caps how deep introspection (__schema, __type)
	// may nest. It is exempt from MaxQueryDepth because the standard query
	// tools send is 15 levels deep (graphql-js 16: nine nested ofType).
	MaxIntrospectionDepth = 20
	// MaxIntrospectionSize caps the estimated number of fields an
	// introspection answer can hold (see introspectionSizes). The standard
	// query the IDE sends is estimated at about 600,000 over this schema (third round).
	// Validation already refuses `fields { type { fields …` three levels
	// deep; this stops two-level ones repeated by aliases.
	MaxIntrospectionSize = 2_000_000
	// MaxResponseBytes is the largest response data sent; a larger one is
	// replaced by an error.
	MaxResponseBytes = 16 << 20
)

// Sizes the cost model assumes where the operation names none.
const (
	// defaultListSize is the assumed length of a list field that takes no
	// size argument and is not in listSizes.
	defaultListSize = 100
	// mutationCost is added for every mutation root field: each one is a
	// write transaction and may start a process, so a request may carry
	// fewer than MaxComplexity/mutationCost of them.
	mutationCost = 1000
	// walkDepthGuard stops the walk on absurdly nested documents; anything
	// this deep is refused anyway.
	walkDepthGuard = 64
)

// listSizes are the assumed lengths of the list fields that take no size
// argument: how many there can sensibly be, as an upper bound for pricing.
var listSizes = map[string]int64{
	"Query.activePods": 100, // pods are OS processes; a server runs some hundreds at most
	"Query.runtimes":   10,  // the runtimes compiled into the server
	"Query.apiTokens":  100, // tokens are minted by hand
}

// sizeArguments are the Int arguments that bound the length of the list a
// field returns.
var sizeArguments = map[string]bool{"first": true, "last": true, "batchSize": true, "limit": true}

// costLimit refuses, before they run, operations that would cost too much:
// its cost counts list sizes multiplicatively (a field costs 1 plus its
// children's cost, times the size of the list it returns), so one request
// cannot fan out to millions of rows. It also refuses operations with more
// than MaxAliases aliases and oversized introspection.
type costLimit struct {
	max int64
	// intro holds the assumed length of each introspection list
	// ("__Type.fields"), the longest such list in the served schema.
	intro map[string]int64
}

var (
	_ graphql.HandlerExtension        = (*costLimit)(nil)
	_ graphql.OperationContextMutator = (*costLimit)(nil)
)

func newCostLimit(max int64) *costLimit { return &costLimit{max: max} }

func (*costLimit) ExtensionName() string { return "CostLimit" }

// Validate learns the introspection list lengths from the served schema.
func (c *costLimit) Validate(es graphql.ExecutableSchema) error {
	c.intro = introspectionSizes(es.Schema())
	return nil
}

// MutateOperationContext prices the operation and refuses it when it is over
// a limit. Cost is checked first: many aliases of an expensive list are
// refused as too costly, many cheap ones as too many aliases.
func (c *costLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	r := c.price(oc.Doc, oc.Operation, oc.Variables)
	switch {
	case r.data > c.max:
		// The same message and code as gqlgen's FixedComplexityLimit.
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", r.data, c.max)
		errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
		return err
	case r.aliases > MaxAliases:
		return invalidOperation("The operation has %d aliased fields; the limit is %d.", r.aliases, MaxAliases)
	case r.truncated || r.introDepth > MaxIntrospectionDepth:
		return invalidOperation("The introspection query is nested more than %d levels deep.", MaxIntrospectionDepth)
	case r.intro > MaxIntrospectionSize:
		return invalidOperation("The introspection query could return about %d fields; the limit is %d.", r.intro, MaxIntrospectionSize)
	}
	return nil
}

// price walks op, with vars its coerced variables.
func (c *costLimit) price(doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any) costResult {
	frags := fragmentIndex(doc.Fragments)
	w := costWalk{vars: vars, frags: frags, intro: c.intro, memo: map[string]costResult{}}
	r := w.set(op.SelectionSet, 0)
	if op.Operation == ast.Mutation {
		r.data = satAdd(r.data, satMul(countRootFields(op.SelectionSet, frags, map[string]int64{}), mutationCost))
	}
	return r
}

func invalidOperation(format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	err.Extensions = map[string]any{"code": ipa.EINVALID, "reason": ipa.ReasonInvalidArgument}
	return err
}

// costResult is the price of one selection set.
type costResult struct {
	data       int64 // cost of the data fields
	intro      int64 // estimated fields of the introspection answer
	aliases    int64 // aliased fields
	introDepth int   // depth of the deepest introspection field, from this set
	depth      int   // depth of the set
	truncated  bool  // the walk stopped at walkDepthGuard
}

func (r *costResult) add(o costResult) {
	r.data = satAdd(r.data, o.data)
	r.intro = satAdd(r.intro, o.intro)
	r.aliases = satAdd(r.aliases, o.aliases)
	r.introDepth = max(r.introDepth, o.introDepth)
	r.depth = max(r.depth, o.depth)
	r.truncated = r.truncated || o.truncated
}

// costWalk prices an operation. A fragment's price does not depend on where
// it is spread, so it is computed once: documents that spread fragments into
// fragments cannot make the walk exponential.
type costWalk struct {
	vars  map[string]any
	frags map[string]*ast.FragmentDefinition
	intro map[string]int64
	memo  map[string]costResult
}

// set prices a selection set found depth levels below the operation.
func (w *costWalk) set(set ast.SelectionSet, depth int) costResult {
	var r costResult
	if depth >= walkDepthGuard {
		r.truncated = true
		return r
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			r.add(w.field(s, depth))
		case *ast.InlineFragment:
			// Every type condition is counted: an upper bound.
			r.add(w.set(s.SelectionSet, depth))
		case *ast.FragmentSpread:
			f, ok := w.memo[s.Name]
			if !ok {
				w.memo[s.Name] = costResult{} // a cycle (refused by validation) ends here
				if def := w.frags[s.Name]; def != nil {
					f = w.set(def.SelectionSet, depth)
				}
				w.memo[s.Name] = f
			}
			r.add(f)
		}
	}
	return r
}

// field prices one field: (1 + its children) × the length of its list.
func (w *costWalk) field(f *ast.Field, depth int) costResult {
	children := w.set(f.SelectionSet, depth+1)
	var r costResult
	r.truncated = children.truncated
	r.aliases = children.aliases
	if f.Alias != "" && f.Alias != f.Name {
		r.aliases = satAdd(r.aliases, 1)
	}
	r.depth = children.depth + 1
	if isIntrospection(f) {
		n := w.introspectionSize(f)
		r.intro = satMul(satAdd(1, satAdd(children.intro, children.data)), n)
		r.introDepth = r.depth
		return r
	}
	n := w.size(f)
	r.data = satMul(satAdd(1, children.data), n)
	r.intro = satMul(children.intro, n)
	if children.introDepth > 0 {
		r.introDepth = children.introDepth + 1
	}
	return r
}

// isIntrospection reports whether f reads the schema rather than data:
// __schema, __type and every field below them. __typename is data: it is
// one string in the object it sits in.
func isIntrospection(f *ast.Field) bool {
	if f.Name == "__schema" || f.Name == "__type" {
		return true
	}
	return f.Name != "__typename" && f.ObjectDefinition != nil && strings.HasPrefix(f.ObjectDefinition.Name, "__")
}

// size is the length of the list f returns: its size argument, else the
// assumed length of such a list, else 1.
func (w *costWalk) size(f *ast.Field) int64 {
	if f.Definition == nil {
		return 1
	}
	n, sized := int64(0), false
	for _, def := range f.Definition.Arguments {
		if !sizeArguments[def.Name] || def.Type == nil || def.Type.Elem != nil || def.Type.NamedType != "Int" {
			continue
		}
		var v *ast.Value
		if a := f.Arguments.ForName(def.Name); a != nil {
			v = a.Value
		}
		if m, ok := intValue(v, def.DefaultValue, w.vars); ok {
			n, sized = max(n, m), true
		}
	}
	if sized {
		return max(n, 1)
	}
	if f.Definition.Type == nil || f.Definition.Type.Elem == nil {
		return 1
	}
	parent := ""
	if f.ObjectDefinition != nil {
		parent = f.ObjectDefinition.Name
	}
	if f.Name == "edges" && strings.HasSuffix(parent, "Connection") {
		return 1 // the connection's first/last already counted its length
	}
	if n, ok := listSizes[parent+"."+f.Name]; ok {
		return n
	}
	return defaultListSize
}

// introspectionSize is the assumed length of an introspection list field.
func (w *costWalk) introspectionSize(f *ast.Field) int64 {
	if f.Definition == nil || f.Definition.Type == nil || f.Definition.Type.Elem == nil || f.ObjectDefinition == nil {
		return 1
	}
	if n, ok := w.intro[f.ObjectDefinition.Name+"."+f.Name]; ok {
		return max(n, 1)
	}
	return defaultListSize
}

// intValue reads an Int argument: its value (a literal or a variable), else
// its default. A value that cannot be read as an integer counts as the
// largest one, so it can only make the operation dearer.
func intValue(v, def *ast.Value, vars map[string]any) (int64, bool) {
	var raw any
	given := false
	if v != nil {
		if v.Kind == ast.Variable {
			raw, given = vars[v.Raw]
			if !given && v.VariableDefinition != nil && v.VariableDefinition.DefaultValue != nil {
				raw, given = valueOf(v.VariableDefinition.DefaultValue), true
			}
		} else {
			raw, given = valueOf(v), true
		}
	}
	if (!given || raw == nil) && def != nil {
		raw = valueOf(def)
	}
	if raw == nil {
		return 0, false
	}
	switch x := raw.(type) {
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		if x >= math.MaxInt64 {
			return math.MaxInt64, true
		}
		return int64(x), true
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, true
		}
	}
	return math.MaxInt64, true
}

func valueOf(v *ast.Value) any {
	x, err := v.Value(nil)
	if err != nil {
		return v.Raw // priced as the largest size by intValue
	}
	return x
}

// countRootFields counts the root fields of an operation, through
// fragments; each fragment's count is computed once (memo), so fragments
// spreading fragments twice over cannot make it exponential.
func countRootFields(set ast.SelectionSet, frags map[string]*ast.FragmentDefinition, memo map[string]int64) int64 {
	var n int64
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name != "__typename" {
				n = satAdd(n, 1)
			}
		case *ast.InlineFragment:
			n = satAdd(n, countRootFields(s.SelectionSet, frags, memo))
		case *ast.FragmentSpread:
			c, ok := memo[s.Name]
			if !ok {
				memo[s.Name] = 0 // a cycle (refused by validation) ends here
				if f := frags[s.Name]; f != nil {
					c = countRootFields(f.SelectionSet, frags, memo)
				}
				memo[s.Name] = c
			}
			n = satAdd(n, c)
		}
	}
	return n
}

// introspectionSizes returns, for each introspection list field, the length
// of the longest such list in schema: an upper bound for pricing.
func introspectionSizes(s *ast.Schema) map[string]int64 {
	m := map[string]int64{
		"__Schema.types":      int64(len(s.Types)),
		"__Schema.directives": int64(len(s.Directives)),
	}
	grow := func(key string, n int) { m[key] = max(m[key], int64(n)) }
	for _, t := range s.Types {
		switch t.Kind {
		case ast.Object, ast.Interface:
			grow("__Type.fields", len(t.Fields))
		case ast.InputObject:
			grow("__Type.inputFields", len(t.Fields))
		}
		grow("__Type.interfaces", len(t.Interfaces))
		grow("__Type.enumValues", len(t.EnumValues))
		grow("__Type.possibleTypes", len(s.PossibleTypes[t.Name]))
		for _, f := range t.Fields {
			grow("__Field.args", len(f.Arguments))
		}
	}
	for _, d := range s.Directives {
		grow("__Directive.args", len(d.Arguments))
		grow("__Directive.locations", len(d.Locations))
	}
	return m
}

// satAdd and satMul add and multiply non-negative costs, stopping at
// math.MaxInt64 instead of overflowing: a hostile document must price high,
// never wrap round to cheap.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
