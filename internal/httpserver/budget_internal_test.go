package httpserver

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// fragmentBomb is a document of n+1 fragments, each spreading the one
// before it twice: it expands to about 2^n fields in 1 KB.
func fragmentBomb(n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "query { ...F%d }\nfragment F0 on Query { a: tasks { totalCount } b: tasks { totalCount } }\n", n)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sb, "fragment F%d on Query { ...F%d x: task(id: \"1\") { ...F%d } }\n", i, i-1, i-1)
	}
	return sb.String()
}

// repeated returns a query whose root selection set holds n copies of
// field, field formatted with the copy's index.
func repeated(n int, field string) string {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range n {
		sb.WriteString(" ")
		if strings.Contains(field, "%d") {
			fmt.Fprintf(&sb, field, i)
		} else {
			sb.WriteString(field)
		}
	}
	sb.WriteString(" }")
	return sb.String()
}

// enumList is a list literal of n task statuses.
func enumList(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("ACTIVE, ", n), ", ") + "]"
}

// budgetError checks query against the document limits and returns the
// refusal's code and reason and message ("" when it may go on).
func budgetError(t *testing.T, query string, vars map[string]any) (code, reason, msg string) {
	t.Helper()
	err := documentBudget{}.MutateOperationParameters(context.Background(), &graphql.RawParams{Query: query, Variables: vars})
	if err == nil {
		return "", "", ""
	}
	code, _ = err.Extensions["code"].(string)
	reason, _ = err.Extensions["reason"].(string)
	require.NotEmpty(t, code, "every refusal is coded: %s", err.Message)
	require.NotEmpty(t, err.Message)
	return code, reason, err.Message
}

func TestDocumentBudgetPassesWhatClientsSend(t *testing.T) {
	for name, q := range map[string]string{
		"IDE introspection":   StandardIntrospectionQuery(false),
		"full introspection":  StandardIntrospectionQuery(true),
		"page of tasks":       `query($f: TaskFilter) { tasks(filter: $f, first: 100) { edges { cursor node { id title status phase pod { state } } } pageInfo { hasNextPage endCursor } totalCount } }`,
		"fragments":           `{ tasks(first: 10) { edges { node { id ...A ...B } } } } fragment A on Task { id title } fragment B on Task { id status ...A }`,
		"100 aliases":         repeated(100, "v%d: viewer { id }"),
		"a list at the limit": `{ tasks(filter: {status: ` + enumList(MaxListItems) + `}) { totalCount } }`,
		"fields at the limit": repeated(MaxSelectionSetFields, "a%d: __typename"),
		// 141 fields under one name: 9,870 pairs to compare.
		"merges at the limit": repeated(141, "id"),
	} {
		t.Run(name, func(t *testing.T) {
			code, _, msg := budgetError(t, q, nil)
			require.Empty(t, code, msg)
		})
	}
	// The 600 mutations of the complexity test: refused by cost, not here.
	var sb strings.Builder
	sb.WriteString("mutation {")
	for i := range 600 {
		fmt.Fprintf(&sb, ` c%d: createTask(input: {title: "bulk %d"}) { task { id title status phase runtime version createdBy createdAt updatedAt } }`, i, i)
	}
	sb.WriteString(" }")
	code, _, msg := budgetError(t, sb.String(), nil)
	require.Empty(t, code, msg)

	// Variables: a list at the limit passes.
	code, _, msg = budgetError(t, `query($f: TaskFilter) { tasks(filter: $f) { totalCount } }`,
		map[string]any{"f": map[string]any{"status": make([]any, MaxListItems)}})
	require.Empty(t, code, msg)
}

func TestDocumentBudgetRefusals(t *testing.T) {
	const complexity = "COMPLEXITY_LIMIT_EXCEEDED"
	cases := []struct {
		name, query  string
		vars         map[string]any
		code, reason string
		message      string // a part of the message
	}{
		// The red team's documents.
		{"3,000 tasks with different arguments", repeated(3000, `tasks(first: %d) { totalCount }`), nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", "20000 tokens"},
		{"200,000 duplicate ids", repeated(200_000, "id"), nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", "tokens"},
		{"95,000 __typename", repeated(95_000, "__typename"), nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", "tokens"},
		{"fragment bomb 24", fragmentBomb(24), nil, complexity, "", "selections"},
		{"fragment bomb 30", fragmentBomb(30), nil, complexity, "", "selections"},
		{"fragment bomb 40", fragmentBomb(40), nil, complexity, "", "selections"},
		{"40,000 statuses in the document", `{ tasks(filter: {status: ` + enumList(40_000) + `}) { totalCount } }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"filter.status" has more than 1000 items; the limit is 1000`},
		{"40,000 statuses in a variable", `query($f: TaskFilter) { tasks(filter: $f) { totalCount } }`,
			map[string]any{"f": map[string]any{"status": make([]any, 40_000)}}, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"$f.status" has 40000 items; the limit is 1000`},
		{"40,000 event types in the document", `{ task(id: "1") { events(types: [` + strings.Repeat(`"x" `, 40_000) + `]) { totalCount } } }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"types"`},
		{"40,000 event types in a variable", `query($t: [String!]) { task(id: "1") { events(types: $t) { totalCount } } }`,
			map[string]any{"t": make([]any, 40_000)}, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"$t" has 40000 items`},
		{"a long list nested in lists", `{ a(x: [[1], ` + "[" + strings.Repeat("1 ", MaxListItems+1) + `]]) }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"x"`},
		{"a long list in objects in a list", `{ a(f: [{b: 1}, {a: [` + strings.Repeat("1 ", MaxListItems+1) + `]}]) }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"f.a"`},
		{"a long list in a variable's default", `query($t: [String!] = [` + strings.Repeat(`"x" `, MaxListItems+1) + `]) { viewer { id } }`, nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", `"t"`},
		// Each limit just past its edge, under the others.
		{"fields past the limit", repeated(MaxSelectionSetFields+1, "a%d: __typename"), nil, complexity, "", "1001 fields"},
		{"fields through inline fragments", repeated(MaxSelectionSetFields/2+1, "... on Query { a%d: __typename b%[1]d: __typename }"), nil, complexity, "", "fields"},
		{"merges past the limit", repeated(142, "id"), nil, complexity, "", "pairs of fields"},
		{"1,000 tasks with different arguments", repeated(1000, `tasks(first: %d) { totalCount }`), nil, complexity, "", `"tasks"`},
		{"merges below merged fields", `{ a { ...F } a { ...F } a { ...F } } fragment F on T { ` + strings.Repeat("id ", 80) + ` }`, nil, complexity, "", `"id"`},
		{"merges summed over fragments", fragmentsEach(100, strings.Repeat("id ", 20)), nil, complexity, "", "pairs"},
		{"expanded past the limit", `{ ` + strings.Repeat("...F ", 201) + ` } fragment F on Query { ` + repeatedAliases(99) + ` }`, nil, complexity, "", "selections"},
		{"bytes past the limit", "#" + strings.Repeat("x", MaxDocumentBytes) + "\n{ viewer { id } }", nil, "BAD_USER_INPUT", "INVALID_ARGUMENT", "bytes"},
		{"a fragment cycle", `{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`, nil, "GRAPHQL_VALIDATION_FAILED", "", "within itself"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, msg := budgetError(t, tc.query, tc.vars)
			require.Equal(t, tc.code, code, msg)
			require.Equal(t, tc.reason, reason, msg)
			require.Contains(t, msg, tc.message)
		})
	}
}

// fragmentsEach is n fragments on Query, each with body, and an operation.
func fragmentsEach(n int, body string) string {
	var sb strings.Builder
	sb.WriteString("{ viewer { id } }")
	for i := range n {
		fmt.Fprintf(&sb, " fragment F%d on Query { %s }", i, body)
	}
	return sb.String()
}

func repeatedAliases(n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "a%d: __typename ", i)
	}
	return sb.String()
}

func TestScanTokensCountsEveryToken(t *testing.T) {
	exactly := func(n int) string { return strings.TrimSpace(strings.Repeat("a ", n)) }
	require.Nil(t, scanTokens(exactly(MaxDocumentTokens)))
	require.NotNil(t, scanTokens(exactly(MaxDocumentTokens+1)))
	// Comments are tokens too: they are read, and kept by the parser.
	require.NotNil(t, scanTokens(strings.Repeat("#\n", MaxDocumentTokens+1)))
	// A syntax error is left to the parser, which stops where the scan did.
	require.Nil(t, scanTokens(`{ "unterminated`))
	_, _, msg := budgetError(t, `{ "unterminated`, nil)
	require.Empty(t, msg)
}

// The scan costs no allocation per token: values nested thousands deep
// (the most the token limit allows) are scanned in a handful, and their
// path is built only for a refusal.
func TestScanTokensAllocatesLittle(t *testing.T) {
	const levels = MaxDocumentTokens / 4 // `{a:` and `}`
	objects := "{ a(x: " + strings.Repeat("{a: ", levels-10) + "1" + strings.Repeat("}", levels-10) + ") }"
	require.Nil(t, scanTokens(objects))
	allocs := testing.AllocsPerRun(5, func() { _ = scanTokens(objects) })
	require.Less(t, allocs, 100.0)
	ids := repeated(MaxDocumentTokens-2, "id")
	require.Nil(t, scanTokens(ids))
	allocs = testing.AllocsPerRun(5, func() { _ = scanTokens(ids) })
	require.Less(t, allocs, 100.0)
}

// The depth and cost walks compute each fragment once: a fragment bomb of
// 40 levels, which expands to about 2^40 fields, is measured without being
// expanded (exponential walks would not finish), and measured right.
func TestLimitWalksMemoiseFragments(t *testing.T) {
	doc, err := parser.ParseQuery(&ast.Source{Input: fragmentBomb(40)})
	require.NoError(t, err)
	oc := &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0]}
	gerr := depthLimit{max: MaxQueryDepth}.MutateOperationContext(context.Background(), oc)
	require.NotNil(t, gerr)
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", gerr.Extensions["code"])
	require.Contains(t, gerr.Message, "nested 42 levels deep")

	c := newCostLimit(MaxComplexity)
	require.NoError(t, c.Validate(testSchema))
	r := c.price(doc, doc.Operations[0], nil)
	require.Greater(t, r.data, int64(1)<<40)
	gerr = c.MutateOperationContext(context.Background(), oc)
	require.NotNil(t, gerr)
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", gerr.Extensions["code"])

	// Root mutations counted through a bomb of fragments: 2^40 of them.
	var sb strings.Builder
	sb.WriteString(`mutation { ...M40 } fragment M0 on Mutation { createTask(input: {title: "x"}) { task { id } } }`)
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&sb, " fragment M%d on Mutation { ...M%d ...M%d }", i, i-1, i-1)
	}
	doc, err = parser.ParseQuery(&ast.Source{Input: sb.String()})
	require.NoError(t, err)
	require.Equal(t, int64(1)<<40, countRootFields(doc.Operations[0].SelectionSet, fragmentIndex(doc.Fragments), map[string]int64{}))
}

// A document that passes the budget is validated in bounded work: the
// largest merge count the budget allows, every pair a conflict, gives at
// most MaxFieldMerges errors.
func TestBudgetBoundsValidation(t *testing.T) {
	q := repeated(141, `taskCount(filter: {titleContains: "%d"})`)
	code, _, msg := budgetError(t, q, nil)
	require.Empty(t, code, msg)
	_, errs := gqlparser.LoadQuery(testSchema.Schema(), q)
	require.NotEmpty(t, errs)
	require.LessOrEqual(t, len(errs), MaxFieldMerges)
}
