package httpserver

import (
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// depthLimit refuses operations nested deeper than max, before they run.
type depthLimit struct{ max int }

var (
	_ graphql.HandlerExtension        = depthLimit{}
	_ graphql.OperationContextMutator = depthLimit{}
)

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext measures the operation's depth, following fragments.
func (d depthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	w := depthWalk{frags: fragmentIndex(oc.Doc.Fragments), memo: map[string]int{}}
	if depth := w.height(oc.Operation.SelectionSet); depth > d.max {
		err := gqlerror.Errorf("The operation is nested %d levels deep; the limit is %d.", depth, d.max)
		err.Extensions = map[string]any{"code": "DEPTH_LIMIT_EXCEEDED"}
		return err
	}
	return nil
}

// depthWalk measures how deep selection sets nest. A fragment is as deep
// wherever it is spread, so its depth is computed once: fragments that
// spread fragments twice over cannot make the walk exponential.
type depthWalk struct {
	frags map[string]*ast.FragmentDefinition
	memo  map[string]int
}

// height is how many levels of fields set nests, 0 for an empty set.
func (w *depthWalk) height(set ast.SelectionSet) int {
	max := 0
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				// Introspection (__schema, __type) is as deep as the
				// schema's type system, not the data; tools' standard
				// introspection query must always pass.
				continue
			}
			d = 1 + w.height(s.SelectionSet)
		case *ast.InlineFragment:
			d = w.height(s.SelectionSet)
		case *ast.FragmentSpread:
			var ok bool
			if d, ok = w.memo[s.Name]; !ok {
				w.memo[s.Name] = 0 // a cycle (refused by validation) ends here
				if f := w.frags[s.Name]; f != nil {
					d = w.height(f.SelectionSet)
				}
				w.memo[s.Name] = d
			}
		}
		if d > max {
			max = d
		}
	}
	return max
}

// fragmentIndex maps fragment names to their definitions: the first of a
// name, like ForName, without a linear scan per spread.
func fragmentIndex(frags ast.FragmentDefinitionList) map[string]*ast.FragmentDefinition {
	m := make(map[string]*ast.FragmentDefinition, len(frags))
	for _, f := range frags {
		if _, dup := m[f.Name]; !dup {
			m[f.Name] = f
		}
	}
	return m
}
