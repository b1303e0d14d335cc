package httpserver

import (
	"context"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// chain returns a query whose deepest field is depth levels down.
func chain(depth int) string {
	var sb strings.Builder
	sb.WriteString("{ ")
	for i := range depth - 1 {
		sb.WriteString("f")
		sb.WriteString(string(rune('a' + i%26)))
		sb.WriteString(" { ")
	}
	sb.WriteString("leaf")
	sb.WriteString(strings.Repeat(" }", depth))
	return sb.String()
}

// depthError runs the depth limit on query and returns its error code, or ""
// when the operation may run.
func depthError(t *testing.T, query string) string {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	require.NoError(t, err)
	oc := &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0]}
	gerr := depthLimit{max: MaxQueryDepth}.MutateOperationContext(context.Background(), oc)
	if gerr == nil {
		return ""
	}
	code, _ := gerr.Extensions["code"].(string)
	require.NotEmpty(t, gerr.Message)
	return code
}

func TestDepthLimit(t *testing.T) {
	require.Empty(t, depthError(t, chain(MaxQueryDepth)))
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", depthError(t, chain(MaxQueryDepth+1)))
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", depthError(t, chain(10*MaxQueryDepth)))

	// Fragments and inline fragments count where they are spread.
	spread := `query { a { b { ...F } } } fragment F on T { c { d { e { f { g { h { i { j { k { l { m } } } } } } } } } } }`
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", depthError(t, spread))
	inline := `query { a { b { ... on T { c { d { e { f { g { h { i { j { k { l { m } } } } } } } } } } } } } }`
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", depthError(t, inline))
	wide := `query { a { b } c { d } e { f { g } } }`
	require.Empty(t, depthError(t, wide))

	// Introspection is exempt: it is as deep as the type system.
	intro := "{ __schema { types { fields { type" + strings.Repeat(" { ofType", 12) + " { name }" + strings.Repeat(" }", 12) + " } } } }"
	require.Empty(t, depthError(t, intro))
}
