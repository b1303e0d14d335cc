package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// peakRSSCeilingKiB is the most memory (VmHWM, the peak resident set) an
// ipa server may ever have used while refusing every hostile document
// below. Before the document budget one of them took it to 10.2 GiB.
const peakRSSCeilingKiB = 200 << 10

// vmHWMKiB reads VmHWM, the peak resident set size, of pid in KiB.
func vmHWMKiB(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}

// hostileDocuments are the red team's requests of the third security
// round, as they sent them to a real server as a viewer.
func hostileDocuments() []struct {
	name, query string
	vars        map[string]any
	code        string
} {
	many := func(n int, field string) string {
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
	bomb := func(n int) string {
		var sb strings.Builder
		fmt.Fprintf(&sb, "query { ...F%d }\nfragment F0 on Query { a: tasks { totalCount } b: tasks { totalCount } }\n", n)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&sb, "fragment F%d on Query { ...F%d x: task(id: \"1\") { ...F%d } }\n", i, i-1, i-1)
		}
		return sb.String()
	}
	statuses := make([]any, 40_000)
	for i := range statuses {
		statuses[i] = "ACTIVE"
	}
	types := make([]any, 40_000)
	for i := range types {
		types[i] = fmt.Sprintf("type_%d", i)
	}
	const complexity, invalid = "COMPLEXITY_LIMIT_EXCEEDED", "BAD_USER_INPUT"
	return []struct {
		name, query string
		vars        map[string]any
		code        string
	}{
		{"3,000 tasks fields with different arguments", many(3000, "tasks(first:%d){totalCount}"), nil, invalid},
		{"1,000 tasks fields with different arguments", many(1000, "tasks(first:%d){totalCount}"), nil, complexity},
		{"200,000 duplicate ids", many(200_000, "id"), nil, invalid},
		{"95,000 __typename", many(95_000, "__typename"), nil, invalid},
		{"fragment bomb 24", bomb(24), nil, complexity},
		{"fragment bomb 30", bomb(30), nil, complexity},
		{"fragment bomb 40", bomb(40), nil, complexity},
		{"40,000 statuses in the document", `{ tasks(filter: {status: [` + strings.TrimSuffix(strings.Repeat("ACTIVE,", 40_000), ",") + `]}) { totalCount } }`, nil, invalid},
		{"40,000 statuses in a variable", `query($f: TaskFilter) { tasks(filter: $f) { totalCount } }`, map[string]any{"f": map[string]any{"status": statuses}}, invalid},
		{"40,000 event types in a variable", `query($t: [String!]) { task(id: "x") { events(types: $t) { totalCount } } }`, map[string]any{"t": types}, invalid},
	}
}

// TestHostileDocumentsRealServer replays the third round's documents
// against a real `ipa serve` as a viewer: each is refused with a coded
// error (no 500, no timeout), the server's peak memory stays under
// peakRSSCeilingKiB, requests a client gave up on stop costing anything,
// and SIGTERM stops the server.
func TestHostileDocumentsRealServer(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	_, viewer := h.mintCLI(t, "vera", "viewer")
	s := h.start()
	// A generous bound: a regression fails here rather than hanging.
	client := &http.Client{Timeout: 2 * time.Minute}
	send := func(ctx context.Context, query string, vars map[string]any) (*http.Response, error) {
		body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+viewer)
		return client.Do(req)
	}
	status, errs := s.postAs(t, viewer, `{ viewer { id role } }`, nil)
	if status != http.StatusOK || len(errs) > 0 {
		t.Fatalf("a viewer's query: %d %v", status, errs)
	}
	baseline := vmHWMKiB(t, s.pid())

	for _, d := range hostileDocuments() {
		resp, err := send(context.Background(), d.query, d.vars)
		if err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
		var out struct{ Errors []gqlError }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: HTTP %d, not JSON: %v", d.name, resp.StatusCode, err)
		}
		if resp.StatusCode >= 500 || len(out.Errors) != 1 || out.Errors[0].Extensions.Code != d.code {
			t.Fatalf("%s: HTTP %d %v, want one %s", d.name, resp.StatusCode, out.Errors, d.code)
		}
		t.Logf("%s: HTTP %d %v", d.name, resp.StatusCode, out.Errors[0])
	}
	peak := vmHWMKiB(t, s.pid())
	t.Logf("peak RSS: %d KiB before the documents, %d KiB after", baseline, peak)
	if peak > peakRSSCeilingKiB {
		t.Fatalf("peak RSS %d KiB, over the ceiling of %d KiB", peak, peakRSSCeilingKiB)
	}

	// Clients that give up at once: each document again, abandoned, then
	// SIGTERM. A server still working on one would not stop.
	for _, d := range hostileDocuments() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		if resp, err := send(ctx, d.query, d.vars); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	status, errs = s.postAs(t, viewer, `{ viewer { id } }`, nil)
	if status != http.StatusOK || len(errs) > 0 {
		t.Fatalf("the server no longer answers: %d %v", status, errs)
	}
	if peak := vmHWMKiB(t, s.pid()); peak > peakRSSCeilingKiB {
		t.Fatalf("peak RSS %d KiB, over the ceiling of %d KiB", peak, peakRSSCeilingKiB)
	}
	s.stop(t, 30*time.Second)
}
