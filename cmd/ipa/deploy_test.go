package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestDeployMetricsExist: every metric (and every label it is grouped or
// matched by) named in the Prometheus rules and the Grafana dashboard under
// deploy/ is exported by a real `ipa serve` at /metrics, once the server has
// done the work that makes each series appear: tasks created and closed,
// pods started, crashed, restarted (one staying up, one reaching its
// limit), GraphQL operations and errors.
func TestDeployMetricsExist(t *testing.T) {
	t.Parallel()
	exprs := deployExpressions(t)
	if len(exprs) < 10 {
		t.Fatalf("found %d expressions under deploy/, want the rules and the dashboard's", len(exprs))
	}

	h := newHome(t)
	s := h.start("--plugin-dir", brokenPluginDir(t))

	// A runtime that never starts: start failure, crash, one restart, limit.
	broken := s.createTask(t, map[string]any{"runtime": "broken", "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 1, "windowSeconds": 60, "initialBackoffMs": 100, "maxBackoffMs": 100}})
	// A pod killed once that stays up past its 1 s window: a restart success.
	demo := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(200), "autoStart": true,
		"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 3, "windowSeconds": 1, "initialBackoffMs": 100, "maxBackoffMs": 100}})
	pid := s.waitPod(t, demo, "RUNNING", "ACTIVE", 0, 10*time.Second).Pod.PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitPod(t, demo, "RUNNING", "ACTIVE", pid, 10*time.Second)
	s.waitPod(t, broken, "FAILED", "INACTIVE", 0, 10*time.Second)
	// A task closed: its duration is observed.
	closed := s.createTask(t, map[string]any{})
	s.must(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": closed}, nil)
	s.mustFail(t, `mutation { completeTask(taskId: "no-such-task") { task { id } } }`, nil, "NOT_FOUND", "")

	var exported metricsIndex
	eventually(t, 20*time.Second, func() string {
		exported = s.scrape(t)
		if _, ok := exported.families["ipa_pod_restart_success_total"]; !ok {
			return "no restart has stayed up past its window yet"
		}
		return ""
	})

	for _, e := range exprs {
		names, labels := promqlNames(e.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", e.where, e.expr)
		}
		var known []string // labels the expression's series carry
		for _, n := range names {
			if n == "up" { // made by Prometheus for each target
				continue
			}
			fam, ok := exported.series(n)
			if !ok {
				t.Errorf("%s: metric %s is not exported by ipa serve", e.where, n)
				continue
			}
			known = append(known, exported.families[fam].labels...)
		}
		for _, l := range labels {
			if !slices.Contains(known, l) && !slices.Contains([]string{"instance", "job", "le"}, l) {
				t.Errorf("%s: label %s is on none of %v", e.where, l, names)
			}
		}
	}
}

// deployExpression is one PromQL expression and where it was found.
type deployExpression struct{ where, expr string }

// deployExpressions reads every PromQL expression in deploy/: the rules'
// expr fields and the dashboard's targets and template queries.
func deployExpressions(t *testing.T) []deployExpression {
	t.Helper()
	var out []deployExpression
	rules, err := filepath.Glob("../../deploy/prometheus/*.yml")
	if err != nil || len(rules) == 0 {
		t.Fatalf("no Prometheus files under deploy/prometheus (%v)", err)
	}
	for _, path := range rules {
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				}
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out = append(out, deployExpression{filepath.Base(path) + " " + r.Alert + r.Record, r.Expr})
			}
		}
	}
	dashboards, _ := filepath.Glob("../../deploy/grafana/*.json")
	if len(dashboards) == 0 {
		t.Fatal("no dashboard under deploy/grafana")
	}
	for _, path := range dashboards {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		walkJSON(doc, "", func(key, value, title string) {
			// Targets carry "expr"; a query variable its "definition"
			// (and the same text again under "query").
			if key == "expr" || key == "definition" {
				out = append(out, deployExpression{filepath.Base(path) + " " + title, value})
			}
		})
	}
	return out
}

// walkJSON calls fn for each string value in v with its key and the title
// of the nearest enclosing object that has one.
func walkJSON(v any, title string, fn func(key, value, title string)) {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["title"].(string); ok {
			title = s
		} else if s, ok := v["name"].(string); ok {
			title = s
		}
		for k, x := range v {
			if s, ok := x.(string); ok {
				fn(k, s, title)
			} else {
				walkJSON(x, title, fn)
			}
		}
	case []any:
		for _, x := range v {
			walkJSON(x, title, fn)
		}
	}
}

var (
	promStrings    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promRanges     = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promMatchers   = regexp.MustCompile(`\{([^}]*)\}`)
	promMatcherKey = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promVariables  = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
	promOffset     = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promLabelVals  = regexp.MustCompile(`\blabel_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)[^,)]*(?:,\s*([a-zA-Z_][a-zA-Z0-9_]*))?\s*\)`)
	promIdent      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords   = []string{"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "inf", "nan"}
)

// promqlNames returns the metric names and the label names (grouped by or
// matched on) in a PromQL expression (or a Grafana label_values query). A
// name followed by "(" is a function; numbers, strings, ranges, offsets and
// dashboard variables are skipped.
func promqlNames(expr string) (names, labels []string) {
	addLabel := func(l string) {
		if l != "" && !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	expr = promStrings.ReplaceAllString(expr, `""`)
	expr = promVariables.ReplaceAllString(expr, "")
	expr = promLabelVals.ReplaceAllStringFunc(expr, func(m string) string {
		sub := promLabelVals.FindStringSubmatch(m)
		addLabel(sub[2])
		return sub[1]
	})
	expr = promRanges.ReplaceAllString(expr, "")
	expr = promOffset.ReplaceAllString(expr, "")
	expr = promGrouping.ReplaceAllStringFunc(expr, func(m string) string {
		for _, l := range strings.Split(promGrouping.FindStringSubmatch(m)[1], ",") {
			addLabel(strings.TrimSpace(l))
		}
		return ""
	})
	expr = promMatchers.ReplaceAllStringFunc(expr, func(m string) string {
		for _, sub := range promMatcherKey.FindAllStringSubmatch(m, -1) {
			addLabel(sub[1])
		}
		return ""
	})
	for _, loc := range promIdent.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.') {
			continue // the exponent or unit of a number (1e3, 4h)
		}
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") || slices.Contains(promKeywords, strings.ToLower(word)) {
			continue
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	return names, labels
}

func TestPromqlNames(t *testing.T) {
	names, labels := promqlNames(`histogram_quantile(0.9, sum by (le, status) (rate(ipa_x_bucket{instance=~"$instance",code!="a b"}[5m] offset 1w))) > 4 * 3600 and on (job) up == 0 or sum(rate(ipa_y_total[$__rate_interval])) > 1e3`)
	if !slices.Equal(names, []string{"ipa_x_bucket", "up", "ipa_y_total"}) || !slices.Equal(labels, []string{"le", "status", "job", "instance", "code"}) {
		t.Fatalf("names %v labels %v", names, labels)
	}
	names, labels = promqlNames(`label_values(ipa_pods_running, instance)`)
	if !slices.Equal(names, []string{"ipa_pods_running"}) || !slices.Equal(labels, []string{"instance"}) {
		t.Fatalf("label_values: names %v labels %v", names, labels)
	}
}

// metricsIndex is what a /metrics page exports: each family's type and the
// labels its samples carry.
type metricsIndex struct {
	families map[string]*metricFamily
}

type metricFamily struct {
	typ    string
	labels []string
}

// series maps a name as PromQL uses it to its family: the family itself,
// or for a histogram (or summary) its _bucket, _sum and _count series. A
// histogram's bare name is no series, so it is not found.
func (m metricsIndex) series(name string) (string, bool) {
	if f, ok := m.families[name]; ok {
		return name, f.typ != "histogram" && f.typ != "summary"
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := m.families[base]; ok && (f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return base, true
		}
	}
	return "", false
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s`)

// scrape reads the server's /metrics (text format).
func (s *server) scrape(t *testing.T) metricsIndex {
	t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s %s", resp.Status, b)
	}
	idx := metricsIndex{families: map[string]*metricFamily{}}
	family := func(sample string) *metricFamily {
		if f, ok := idx.families[sample]; ok {
			return f
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := idx.families[strings.TrimSuffix(sample, suffix)]; ok {
				return f
			}
		}
		return nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			var name, typ string
			if _, err := fmt.Sscan(rest, &name, &typ); err == nil {
				idx.families[name] = &metricFamily{typ: typ}
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := family(m[1])
		if f == nil {
			t.Fatalf("/metrics sample without a TYPE: %q", line)
		}
		for _, kv := range promMatcherKey.FindAllStringSubmatch(promStrings.ReplaceAllString(m[2], `""`), -1) {
			if !slices.Contains(f.labels, kv[1]) {
				f.labels = append(f.labels, kv[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return idx
}
