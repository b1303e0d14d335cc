package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra/doc"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// The references under docs/reference are generated from the things they
// describe: the GraphQL schema, the Prometheus registry a real server
// builds, and the CLI's cobra commands. TestReferenceDocsCurrent renders
// them again and fails when the committed files differ, so a change to any
// of them without `make docs` fails CI. With IPA_WRITE_DOCS=1 (what `make
// docs` sets) it writes them instead.

const refDir = "../../docs/reference"

func TestReferenceDocsCurrent(t *testing.T) {
	want := map[string][]byte{
		"graphql.md": graphqlReference(t),
		"metrics.md": metricsReference(t),
	}
	for name, b := range cliReference(t) {
		want[filepath.Join("cli", name)] = b
	}
	if os.Getenv("IPA_WRITE_DOCS") == "1" {
		if err := os.RemoveAll(filepath.Join(refDir, "cli")); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			p := filepath.Join(refDir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var stale []string
	for name, b := range want {
		have, err := os.ReadFile(filepath.Join(refDir, name))
		if err != nil || !bytes.Equal(have, b) {
			stale = append(stale, name)
		}
	}
	// A command removed leaves a page behind.
	pages, _ := filepath.Glob(filepath.Join(refDir, "cli", "*.md"))
	for _, p := range pages {
		if _, ok := want[filepath.Join("cli", filepath.Base(p))]; !ok {
			stale = append(stale, filepath.Join("cli", filepath.Base(p))+" (no such command)")
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		t.Fatalf("docs/reference is out of date (%s): run `make docs` and commit the result", strings.Join(stale, ", "))
	}
}

// cliReference renders one page per command with cobra's generator, from
// the real root command. Defaults that depend on the machine (home
// directory, host name) are rendered for a fixed HOME.
func cliReference(t *testing.T) map[string][]byte {
	t.Helper()
	t.Setenv("HOME", "/home/user")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_DATA_HOME", "")
	root := ipacli.NewRootCommand()
	root.DisableAutoGenTag = true // the tag carries today's date
	dir := t.TempDir()
	if err := doc.GenMarkdownTree(root, dir); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// graphqlReference renders every type of schema/*.graphqls: the root
// operations first, then the other types by kind and name, with their
// fields, arguments, default values, enum values and descriptions.
func graphqlReference(t *testing.T) []byte {
	t.Helper()
	files, err := filepath.Glob("../../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files (%v)", err)
	}
	var sources []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &ast.Source{Name: filepath.Base(f), Input: string(b)})
	}
	schema, gerr := gqlparser.LoadSchema(sources...)
	if gerr != nil {
		t.Fatalf("load schema: %v", gerr)
	}
	var b strings.Builder
	b.WriteString("# GraphQL API reference\n\n")
	b.WriteString("<!-- Generated from schema/*.graphqls by `make docs` (cmd/ipa/refdocs_test.go). Do not edit. -->\n\n")
	b.WriteString("Every type of the API at `/graphql`, from the schema the server is built from. ")
	b.WriteString("What tasks, events, pods and instances are: [concepts](../concepts.md); limits on requests: [limits](../limits.md).\n\n")
	roots := []*ast.Definition{schema.Query, schema.Mutation, schema.Subscription}
	kinds := []struct {
		kind  ast.DefinitionKind
		title string
	}{
		{ast.Object, "Objects"}, {ast.InputObject, "Input objects"}, {ast.Enum, "Enums"},
		{ast.Interface, "Interfaces"}, {ast.Union, "Unions"}, {ast.Scalar, "Scalars"},
	}
	b.WriteString("## Contents\n\n")
	for _, r := range roots {
		if r != nil {
			fmt.Fprintf(&b, "- [%s](#%s)\n", r.Name, strings.ToLower(r.Name))
		}
	}
	byKind := map[ast.DefinitionKind][]*ast.Definition{}
	for _, d := range schema.Types {
		if d.BuiltIn || slices.Contains(roots, d) {
			continue
		}
		byKind[d.Kind] = append(byKind[d.Kind], d)
	}
	for _, k := range kinds {
		sort.Slice(byKind[k.kind], func(i, j int) bool { return byKind[k.kind][i].Name < byKind[k.kind][j].Name })
		if len(byKind[k.kind]) > 0 {
			fmt.Fprintf(&b, "- %s: ", k.title)
			for i, d := range byKind[k.kind] {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "[%s](#%s)", d.Name, strings.ToLower(d.Name))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	for _, r := range roots {
		if r != nil {
			writeDefinition(&b, r, "##")
		}
	}
	for _, k := range kinds {
		if len(byKind[k.kind]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n", k.title)
		for _, d := range byKind[k.kind] {
			writeDefinition(&b, d, "###")
		}
	}
	return []byte(strings.TrimRight(b.String(), "\n") + "\n")
}

func writeDefinition(b *strings.Builder, d *ast.Definition, heading string) {
	fmt.Fprintf(b, "%s %s\n\n", heading, d.Name)
	kind := strings.ToLower(string(d.Kind))
	if len(d.Interfaces) > 0 {
		kind += " implementing " + strings.Join(d.Interfaces, ", ")
	}
	if len(d.Types) > 0 {
		kind += " of " + strings.Join(d.Types, " | ")
	}
	fmt.Fprintf(b, "*%s*\n\n", kind)
	if d.Description != "" {
		b.WriteString(strings.TrimSpace(d.Description) + "\n\n")
	}
	for _, f := range d.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		sig := "`" + f.Name
		if d.Kind == ast.InputObject {
			sig += ": " + f.Type.String()
			if f.DefaultValue != nil {
				sig += " = " + f.DefaultValue.String()
			}
		} else {
			if len(f.Arguments) > 0 {
				var args []string
				for _, a := range f.Arguments {
					s := a.Name + ": " + a.Type.String()
					if a.DefaultValue != nil {
						s += " = " + a.DefaultValue.String()
					}
					args = append(args, s)
				}
				sig += "(" + strings.Join(args, ", ") + ")"
			}
			sig += ": " + f.Type.String()
		}
		sig += "`"
		b.WriteString("- " + sig + deprecation(f.Directives) + describeItem(f.Description, "  ") + "\n")
		for _, a := range f.Arguments {
			if a.Description != "" {
				fmt.Fprintf(b, "  - `%s`%s\n", a.Name, describeItem(a.Description, "    "))
			}
		}
	}
	for _, v := range d.EnumValues {
		b.WriteString("- `" + v.Name + "`" + deprecation(v.Directives) + describeItem(v.Description, "  ") + "\n")
	}
	b.WriteString("\n")
}

// describeItem renders a description after a list item's name, its later
// lines indented to stay in the item.
func describeItem(s, indent string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i := 1; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == "" {
			lines[i] = ""
		} else {
			lines[i] = indent + strings.TrimSpace(lines[i])
		}
	}
	return ": " + strings.Join(lines, "\n")
}

func deprecation(ds ast.DirectiveList) string {
	d := ds.ForName("deprecated")
	if d == nil {
		return ""
	}
	if r := d.Arguments.ForName("reason"); r != nil {
		return " (deprecated: " + r.Value.Raw + ")"
	}
	return " (deprecated)"
}

// metricsReference renders the ipa_ metrics of the registry a real server
// (package app, as ipa serve builds it) exports: name, type, labels and
// help. A labelled metric has no series, so no type, in the registry's
// gather until something is counted; the type then comes from the
// collector itself as the supervisor and the webhook deliverer register it,
// and from a few real requests for the API's and the tasks' metrics.
func metricsReference(t *testing.T) []byte {
	t.Helper()
	types := map[string]string{}
	rec := func(r prometheus.Registerer) prometheus.Registerer { return typeRecorder{r, types} }
	a := apptest.New(t, "sqlite://"+filepath.Join(t.TempDir(), "ipa.db"), auth.ModeAuto, func(c *app.Config) {
		c.Supervisor = func(s *supervisor.Config) { s.Registry = rec(s.Registry) }
		c.Webhook = func(w *webhook.Config) { w.Registry = rec(w.Registry) }
	})
	srv := httptest.NewServer(a.Handler)
	defer srv.Close()
	gql := func(query string) string {
		resp, err := http.Post(srv.URL+"/graphql", "application/json", strings.NewReader(query))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	// A task created and completed, and one error.
	created := gql(`{"query":"mutation { createTask(input: {title: \"t\"}) { task { id } } }"}`)
	id := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(created)
	if id == nil {
		t.Fatalf("createTask: %s", created)
	}
	gql(`{"query":"mutation { completeTask(taskId: \"` + id[1] + `\") { task { id } } }"}`)
	gql(`{"query":"mutation { completeTask(taskId: \"no-such-task\") { task { id } } }"}`)
	fams, err := a.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		types[f.GetName()] = strings.ToLower(f.GetType().String())
	}
	ch := make(chan *prometheus.Desc, 256)
	a.Registry.Describe(ch)
	close(ch)
	type metric struct{ name, kind, help, labels string }
	var ms []metric
	for d := range ch {
		m := descFields.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("unreadable descriptor %s", d)
		}
		if !strings.HasPrefix(m[1], "ipa_") {
			continue
		}
		kind := types[m[1]]
		if kind == "" {
			t.Fatalf("metric %s: type unknown (neither gathered nor registered by a recorded part): teach metricsReference where it comes from", m[1])
		}
		labels := ""
		if m[3] != "" {
			labels = "`" + strings.ReplaceAll(m[3], ",", "`, `") + "`"
		}
		ms = append(ms, metric{m[1], kind, m[2], labels})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("<!-- Generated from the server's Prometheus registry by `make docs` (cmd/ipa/refdocs_test.go). Do not edit. -->\n\n")
	b.WriteString("The metrics `ipa serve` exports at `/metrics` (and at `--metrics-addr`). ")
	b.WriteString("Besides these, the standard Go runtime (`go_*`) and process (`process_*`) collectors of the Prometheus client are exported. ")
	b.WriteString("A labelled metric has a series once something has been counted for those labels. ")
	b.WriteString("See [operations](../guides/operations.md) for the rules and the dashboard under `deploy/`.\n\n")
	b.WriteString("| Name | Type | Labels | Help |\n|---|---|---|---|\n")
	for _, m := range ms {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.name, m.kind, m.labels, strings.ReplaceAll(m.help, "|", `\|`))
	}
	return []byte(b.String())
}

var descFields = regexp.MustCompile(`^Desc\{fqName: "([^"]*)", help: "((?:[^"\\]|\\.)*)", .*variableLabels: \{([^}]*)\}\}$`)

// typeRecorder notes the type of each collector registered through it.
type typeRecorder struct {
	prometheus.Registerer
	types map[string]string
}

func (r typeRecorder) Register(c prometheus.Collector) error {
	kind := ""
	switch c.(type) {
	case *prometheus.CounterVec, prometheus.Counter, prometheus.CounterFunc:
		kind = "counter"
	case *prometheus.GaugeVec, prometheus.Gauge, prometheus.GaugeFunc:
		kind = "gauge"
	case *prometheus.HistogramVec, prometheus.Histogram:
		kind = "histogram"
	case *prometheus.SummaryVec, prometheus.Summary:
		kind = "summary"
	}
	if kind != "" {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := descFields.FindStringSubmatch(d.String()); m != nil {
				r.types[m[1]] = kind
			}
		}
	}
	if r.Registerer == nil {
		return nil
	}
	return r.Registerer.Register(c)
}

func (r typeRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}
