package httpserver

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/ipa-dev/ipa/graph"
	"github.com/ipa-dev/ipa/graph/generated"
)

// StandardIntrospectionQuery is graphql-js 16's getIntrospectionQuery, the
// query GraphiQL and most tools send; all adds every optional part
// (introspectionFromSchema's defaults), else it is the IDE's (descriptions,
// inputValueDeprecation).
func StandardIntrospectionQuery(all bool) string {
	opt := func(on bool, s string) string {
		if on {
			return s
		}
		return ""
	}
	typeRef := "kind name"
	for range 9 {
		typeRef = "kind name ofType { " + typeRef + " }"
	}
	return `query IntrospectionQuery {
  __schema {
    ` + opt(all, "description") + `
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives {
      name
      description
      ` + opt(all, "isRepeatable") + `
      locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  ` + opt(all, "specifiedByURL isOneOf") + `
  fields(includeDeprecated: true) {
    name
    description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
  isDeprecated
  deprecationReason
}
fragment TypeRef on __Type { ` + typeRef + ` }`
}

var testSchema = generated.NewExecutableSchema(generated.Config{Resolvers: &graph.Resolver{}})

// priced validates query against the served schema as gqlgen does, runs the
// cost limit on it and returns what the walk found and the refusal, if any.
func priced(t *testing.T, query string, vars map[string]any) (costResult, string) {
	t.Helper()
	doc, errs := gqlparser.LoadQuery(testSchema.Schema(), query)
	require.Emptyf(t, errs, "%s", query)
	op := doc.Operations[0]
	coerced, err := validator.VariableValues(testSchema.Schema(), op, vars)
	require.NoError(t, err)
	c := newCostLimit(MaxComplexity)
	require.NoError(t, c.Validate(testSchema))
	oc := &graphql.OperationContext{Doc: doc, Operation: op, Variables: coerced}
	r := c.price(doc, op, coerced)
	gerr := c.MutateOperationContext(context.Background(), oc)
	if gerr == nil {
		return r, ""
	}
	code, _ := gerr.Extensions["code"].(string)
	require.NotEmpty(t, gerr.Message)
	return r, code
}

// cost prices query with vars, requiring the walk to find no other excess.
func cost(t *testing.T, query string, vars map[string]any) int64 {
	t.Helper()
	r, _ := priced(t, query, vars)
	return r.data
}

func TestCostCountsListSizes(t *testing.T) {
	for _, c := range []struct {
		name  string
		query string
		vars  map[string]any
		want  int64
	}{
		{"Scalar", `{ taskCount }`, nil, 1},
		{"Object", `{ viewer { id role } }`, nil, 3},
		{"Typename", `{ __typename viewer { __typename } }`, nil, 3},
		// tasks: (1 + totalCount) × first.
		{"FirstLiteral", `{ tasks(first: 7) { totalCount } }`, nil, 14},
		{"FirstDefault", `{ tasks { totalCount } }`, nil, 200},
		{"FirstVariable", `query($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": 50}, 100},
		{"FirstVariableOmitted", `query($n: Int) { tasks(first: $n) { totalCount } }`, nil, 200},
		{"FirstVariableNull", `query($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": nil}, 200},
		{"FirstVariableDefault", `query($n: Int = 30) { tasks(first: $n) { totalCount } }`, nil, 60},
		{"FirstVariableString", `query($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": "40"}, 80},
		{"FirstNegative", `{ tasks(first: -5) { totalCount } }`, nil, 2},
		// A connection's edges are as many as its first: not counted twice.
		{"Edges", `{ tasks(first: 10) { edges { cursor node { id title } } } }`, nil, (1 + (1 + 1 + (1 + 2))) * 10},
		// task(1 + pod(1 + crashes((1 + 1) × 10))).
		{"LastDefault", `{ task(id: "x") { pod { crashes { at } } } }`, nil, 1 + 1 + 2*10},
		{"LastLiteral", `{ task(id: "x") { pod { crashes(last: 3) { at reason } } } }`, nil, 1 + 1 + 3*3},
		// Multiplied down the tree.
		{"Nested", `query($n: Int) { tasks(first: $n) { edges { node { events(first: $n) { edges { node { id } } } } } } }`,
			map[string]any{"n": 10}, (1 + (1 + (1 + (1+(1+(1+1)))*10))) * 10},
		{"ActivePods", `{ activePods { id } }`, nil, 2 * listSizes["Query.activePods"]},
		{"Runtimes", `{ runtimes { name description } }`, nil, 3 * listSizes["Query.runtimes"]},
		{"ApiTokens", `{ apiTokens { id } }`, nil, 2 * listSizes["Query.apiTokens"]},
		{"Aliases", `{ a: tasks(first: 5) { totalCount } b: tasks(first: 6) { totalCount } }`, nil, 10 + 12},
		// Fragments and inline fragments count where they are spread.
		{"Fragment", `{ tasks(first: 10) { ...C } } fragment C on TaskConnection { edges { node { id } } }`, nil, (1 + 3) * 10},
		{"FragmentTwice", `{ a: tasks(first: 10) { ...C } b: tasks(first: 2) { ...C } }
			fragment C on TaskConnection { edges { node { ...T } } } fragment T on Task { id pod { state } }`, nil, (1+(1+(1+3)))*10 + (1+(1+(1+3)))*2},
		{"InlineFragment", `{ node(id: "x") { id ... on Task { pod { crashes(last: 4) { at } } } } }`, nil, 1 + 1 + (1 + 2*4)},
		// Each mutation root field is a write: mutationCost on top.
		{"Mutation", `mutation { createTask(input: {title: "x"}) { task { id } } }`, nil, mutationCost + 3},
		{"Mutations", `mutation { a: createTask(input: {title: "x"}) { task { id } } ...M } fragment M on Mutation { b: completeTask(taskId: "x") { task { id } } }`, nil, 2*mutationCost + 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, cost(t, c.query, c.vars))
		})
	}
}

func TestCostLimit(t *testing.T) {
	// The common large reads pass: a full page of tasks with their pods
	// and recent crashes; a page of tasks with a page of events each.
	page := `{ tasks(first: 1000) { edges { cursor node { ` + taskFieldsT + ` pod { state pid startedAt restarts live crashes { at exitCode signal reason uptimeMs } } } }
		pageInfo { hasNextPage endCursor } totalCount } }`
	r, code := priced(t, page, nil)
	require.Empty(t, code, "cost %d", r.data)
	r, code = priced(t, `{ tasks(first: 100) { edges { node { id events(first: 100) { edges { node { id type data occurredAt } } } } } } }`, nil)
	require.Empty(t, code, "cost %d", r.data)

	// A thousand tasks with a thousand events each does not.
	r, code = priced(t, `{ tasks(first: 1000) { edges { node { events(first: 1000) { edges { node { id } } } } } } }`, nil)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", code)
	require.Equal(t, int64((1+(1+(1+(1+(1+(1+1)))*1000)))*1000), r.data)

	// Nor do many aliases of a large list, nor a size from a variable.
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 30 {
		fmt.Fprintf(&sb, " t%d: tasks(first: 1000) { edges { node { id } } }", i)
	}
	sb.WriteString(" }")
	_, code = priced(t, sb.String(), nil)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", code)
	nested := `query($n: Int) { tasks(first: $n) { edges { node { ...E } } } } fragment E on Task { events(first: $n) { totalCount } }`
	_, code = priced(t, nested, map[string]any{"n": 100})
	require.Empty(t, code)
	_, code = priced(t, nested, map[string]any{"n": 1000})
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", code)

	// The message is gqlgen's.
	doc, errs := gqlparser.LoadQuery(testSchema.Schema(), `{ tasks(first: 1000) { edges { node { events(first: 1000) { totalCount } } } } }`)
	require.Empty(t, errs)
	c := newCostLimit(MaxComplexity)
	require.NoError(t, c.Validate(testSchema))
	gerr := c.MutateOperationContext(context.Background(), &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0]})
	require.NotNil(t, gerr)
	require.Equal(t, fmt.Sprintf("operation has complexity %d, which exceeds the limit of %d", (1+(1+(1+2*1000)))*1000, MaxComplexity), gerr.Message)
}

func TestCostSaturates(t *testing.T) {
	require.Equal(t, int64(math.MaxInt64), satAdd(math.MaxInt64-1, 2))
	require.Equal(t, int64(math.MaxInt64), satMul(math.MaxInt64/2, 3))
	require.Equal(t, int64(0), satMul(0, math.MaxInt64))
	require.Equal(t, int64(12), satMul(3, 4))

	// Sizes that overflow int64 several times over price at the ceiling
	// instead of wrapping round to something cheap.
	const huge = `tasks(first: 2147483647) { edges { node { events(first: 2147483647) { edges { node { id taskId version } } } } } }`
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 50 {
		fmt.Fprintf(&sb, " h%d: %s", i, huge)
	}
	sb.WriteString(" }")
	r, code := priced(t, sb.String(), nil)
	require.Equal(t, int64(math.MaxInt64), r.data)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", code)
}

func TestAliasLimit(t *testing.T) {
	aliases := func(n int) string {
		var sb strings.Builder
		sb.WriteString("{")
		for i := range n {
			fmt.Fprintf(&sb, " v%d: viewer { id }", i)
		}
		sb.WriteString(" }")
		return sb.String()
	}
	r, code := priced(t, aliases(MaxAliases), nil)
	require.Empty(t, code)
	require.Equal(t, int64(MaxAliases), r.aliases)
	r, code = priced(t, aliases(MaxAliases+1), nil)
	require.Equal(t, "BAD_USER_INPUT", code)
	require.Equal(t, int64(MaxAliases+1), r.aliases)

	// A fragment's aliases count once per spread; nested aliases count too.
	frag := func(n int) string {
		var sb strings.Builder
		sb.WriteString(`{ a: tasks(first: 1) { ...F } b: tasks(first: 1) { ...F } c: tasks(first: 1) { edges { node { ...G } } } } fragment F on TaskConnection { edges { node { ...G } } } fragment G on Task {`)
		for i := range n {
			fmt.Fprintf(&sb, " i%d: id", i)
		}
		sb.WriteString(" }")
		return sb.String()
	}
	r, code = priced(t, frag(32), nil)
	require.Empty(t, code)
	require.Equal(t, int64(3+3*32), r.aliases)
	r, code = priced(t, frag(33), nil)
	require.Equal(t, "BAD_USER_INPUT", code)
	require.Equal(t, int64(3+3*33), r.aliases)

	// Fields without an alias, or aliased to their own name, are not aliases.
	r, _ = priced(t, `{ viewer { id } taskCount: taskCount }`, nil)
	require.Zero(t, r.aliases)
}

func TestIntrospectionLimit(t *testing.T) {
	// The tools' standard query passes, in the IDE's form and in full.
	for _, all := range []bool{false, true} {
		r, code := priced(t, StandardIntrospectionQuery(all), nil)
		require.Emptyf(t, code, "all=%v: %+v", all, r)
		require.Equal(t, 15, r.introDepth)
		require.Zero(t, r.data)
		require.Less(t, r.intro, int64(MaxIntrospectionSize/2), "room for the schema to grow")
	}

	ofType := func(depth int) string { // __schema types fields type ofType… name: depth levels
		return "{ __schema { types { fields { type" + strings.Repeat(" { ofType", depth-5) + " { name }" + strings.Repeat(" }", depth-5) + " } } } }"
	}
	r, code := priced(t, ofType(MaxIntrospectionDepth), nil)
	require.Empty(t, code)
	require.Equal(t, MaxIntrospectionDepth, r.introDepth)
	_, code = priced(t, ofType(MaxIntrospectionDepth+1), nil)
	require.Equal(t, "BAD_USER_INPUT", code)
	// Beyond the walk's guard: stopped early, still refused.
	r, code = priced(t, ofType(10*walkDepthGuard), nil)
	require.Equal(t, "BAD_USER_INPUT", code)
	require.True(t, r.truncated)

	// Types' fields' types' fields: shallow, but each level multiplies the
	// answer by the number of fields of a type, and aliases repeat it.
	// (Validation already refuses three such levels; two pass it.)
	bomb := func(n int) string {
		var sb strings.Builder
		sb.WriteString("{ __schema { types {")
		for i := range n {
			fmt.Fprintf(&sb, " f%d: fields { type { ofType { fields { name type { ofType { name kind } } } } } }", i)
		}
		sb.WriteString(" } } }")
		return sb.String()
	}
	r, code = priced(t, bomb(5), nil)
	require.Empty(t, code)
	r, code = priced(t, bomb(MaxAliases), nil)
	require.Equal(t, "BAD_USER_INPUT", code)
	require.Greater(t, r.intro, int64(MaxIntrospectionSize))
	require.LessOrEqual(t, r.aliases, int64(MaxAliases))
	require.LessOrEqual(t, r.introDepth, MaxIntrospectionDepth)

	// __type and __typename are cheap.
	_, code = priced(t, `{ __type(name: "Task") { name fields { name type { name kind } } } __typename }`, nil)
	require.Empty(t, code)
}

const taskFieldsT = `id title description status phase runtime runtimeConfig metadata createdAt updatedAt createdBy version
	restartPolicy { autoRestart maxAttempts windowSeconds initialBackoffMs maxBackoffMs }`
