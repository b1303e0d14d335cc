package securitytest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// allocCeiling is the most one request may allocate, whatever its
// document: the document budget (internal/httpserver/budget.go) refuses,
// in work proportional to the document, anything validation or execution
// could not do within it. Before the budget one 92 KB document allocated
// gigabytes.
const allocCeiling = 64 << 20

// hostileShapes are the shapes FuzzHostileDocument builds.
const hostileShapes = 10

// hostileDocument builds a document of one hostile shape: n sets its size,
// depth its nesting, word a name or value the fuzzer chose. It returns the
// document and its variables.
func hostileDocument(shape uint8, n uint16, depth uint8, word string) (string, map[string]any) {
	count := int(n)
	levels := int(depth)
	name := strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, word)
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "f" + name
	}
	var sb strings.Builder
	switch shape % hostileShapes {
	case 0: // deep nesting
		for range levels {
			sb.WriteString(`{ task(id: "1") `)
		}
		sb.WriteString("{ id }")
		sb.WriteString(strings.Repeat(" }", levels))
	case 1: // a wide selection set under one name
		sb.WriteString("{")
		for range count {
			sb.WriteString(" " + name)
		}
		sb.WriteString(" }")
	case 2: // a fragment chain, each spreading the one before twice
		fmt.Fprintf(&sb, "query { ...F%d }\nfragment F0 on Query { a: tasks { totalCount } b: %s }\n", levels, name)
		for i := 1; i <= levels; i++ {
			fmt.Fprintf(&sb, "fragment F%d on Query { ...F%d x: task(id: \"1\") { ...F%d } }\n", i, i-1, i-1)
		}
	case 3: // many aliases of a list
		sb.WriteString("{")
		for i := range count {
			fmt.Fprintf(&sb, " a%d: tasks(first: %d) { edges { node { id %s } } }", i, i%1000+1, name)
		}
		sb.WriteString(" }")
	case 4: // one name, different arguments
		sb.WriteString("{")
		for i := range count {
			fmt.Fprintf(&sb, " tasks(filter: {titleContains: \"%s%d\"}) { totalCount }", name, i)
		}
		sb.WriteString(" }")
	case 5: // a long list literal
		sb.WriteString(`{ tasks(filter: {status: [`)
		sb.WriteString(strings.TrimSuffix(strings.Repeat("ACTIVE, ", count), ", "))
		sb.WriteString(`]}) { totalCount } }`)
	case 6: // a long list variable
		types := make([]any, count)
		for i := range types {
			types[i] = name
		}
		return `query($t: [String!]) { task(id: "x") { events(types: $t) { totalCount } } }`, map[string]any{"t": types}
	case 7: // nested inline fragments, each repeating the fields
		for range levels {
			sb.WriteString("{ ... on Query { viewer { id } " + name + " ")
		}
		sb.WriteString("{ __typename }")
		sb.WriteString(strings.Repeat(" } }", levels))
	case 8: // many fragments, all spread in one place, all sharing names
		sb.WriteString("{ viewer {")
		for i := range count % 2000 {
			fmt.Fprintf(&sb, " ...V%d", i)
		}
		sb.WriteString(" } }")
		for i := range count % 2000 {
			fmt.Fprintf(&sb, " fragment V%d on Actor { id %s role }", i, name)
		}
	case 9: // values nested deep, objects and lists
		sb.WriteString(`{ tasks(filter: `)
		for i := range levels * 25 {
			if i%2 == 0 {
				sb.WriteString("{" + name + ": ")
			} else {
				sb.WriteString("[")
			}
		}
		sb.WriteString("1")
		for i := levels*25 - 1; i >= 0; i-- {
			if i%2 == 0 {
				sb.WriteString("}")
			} else {
				sb.WriteString("]")
			}
		}
		sb.WriteString(`) { totalCount } }`)
	}
	return sb.String(), nil
}

// FuzzHostileDocument sends hostile documents (deep nesting, wide selection
// sets, fragment chains, aliases, repeated names with different arguments,
// long lists in the document and in variables) through the real handler as
// a viewer, and requires each answer to be coded, never a 500, and each
// request to allocate less than allocCeiling. Run it longer with
//
//	go test -run '^$' -fuzz '^FuzzHostileDocument$' -fuzztime 10m ./internal/securitytest/
func FuzzHostileDocument(f *testing.F) {
	for shape := range uint8(hostileShapes) {
		f.Add(shape, uint16(3000), uint8(40), "tasks")
		f.Add(shape, uint16(200), uint8(12), "id")
	}
	f.Add(uint8(1), uint16(60000), uint8(0), "__typename")
	f.Add(uint8(5), uint16(40000), uint8(0), "")
	f.Add(uint8(6), uint16(40000), uint8(0), "pod_output")
	f.Add(uint8(2), uint16(0), uint8(24), "__typename")
	a := apptest.New(f, dbtest.URL(f, "sqlite"), auth.ModeRequired, nil)
	_, secret, err := auth.Mint(context.Background(), a.Store, "fuzz", ipa.RoleViewer, time.Now())
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, shape uint8, n uint16, depth uint8, word string) {
		query, vars := hostileDocument(shape, n, depth, word)
		body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
		req.Host = "localhost"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		ctx, cancel := context.WithTimeout(req.Context(), 60*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		a.Handler.ServeHTTP(rec, req.WithContext(ctx))
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("shape %d, %d bytes of document: %d KiB allocated, status %d", shape%hostileShapes, len(query), alloc>>10, rec.Code)
		if alloc > allocCeiling {
			t.Fatalf("shape %d, %d bytes of document: the request allocated %d MiB, over the ceiling of %d MiB",
				shape%hostileShapes, len(query), alloc>>20, allocCeiling>>20)
		}

		raw := rec.Body.Bytes()
		if rec.Code >= 500 {
			t.Fatalf("status %d: %.500s", rec.Code, raw)
		}
		var resp struct {
			Errors []gqlError `json:"errors"`
		}
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatalf("status %d, not JSON (%v): %.500s", rec.Code, err, raw)
		}
		for _, e := range resp.Errors {
			if e.code() == "" || e.code() == ipa.EINTERNAL {
				t.Fatalf("an uncoded or internal error: %.500s", raw)
			}
		}
	})
}
