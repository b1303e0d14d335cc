package ipacli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// apiTask is the part of a Task the tables show.
type apiTask struct {
	ID            string            `json:"id"`
	Title         string            `json:"title"`
	Description   *string           `json:"description"`
	Status        string            `json:"status"`
	Phase         string            `json:"phase"`
	Runtime       string            `json:"runtime"`
	RuntimeConfig json.RawMessage   `json:"runtimeConfig"`
	Metadata      json.RawMessage   `json:"metadata"`
	Labels        map[string]string `json:"labels"`
	CreatedAt     string            `json:"createdAt"`
	UpdatedAt     string            `json:"updatedAt"`
	CreatedBy     string            `json:"createdBy"`
	Version       int               `json:"version"`
	RestartPolicy struct {
		AutoRestart      bool `json:"autoRestart"`
		MaxAttempts      int  `json:"maxAttempts"`
		WindowSeconds    int  `json:"windowSeconds"`
		InitialBackoffMs int  `json:"initialBackoffMs"`
		MaxBackoffMs     int  `json:"maxBackoffMs"`
	} `json:"restartPolicy"`
	Scheduling
	Pod struct {
		QueuePosition *int            `json:"queuePosition"`
		State         string          `json:"state"`
		PID           *int            `json:"pid"`
		StartedAt     *string         `json:"startedAt"`
		Restarts      int             `json:"restarts"`
		NextAttemptAt *string         `json:"nextAttemptAt"`
		Live          json.RawMessage `json:"live"`
		Crashes       []struct {
			At       string  `json:"at"`
			ExitCode *int    `json:"exitCode"`
			Signal   *string `json:"signal"`
			Reason   string  `json:"reason"`
			UptimeMs int     `json:"uptimeMs"`
		} `json:"crashes"`
		LastExit *struct {
			At         string  `json:"at"`
			ExitCode   *int    `json:"exitCode"`
			Signal     *string `json:"signal"`
			DurationMs int64   `json:"durationMs"`
			Reason     string  `json:"reason"`
		} `json:"lastExit"`
	} `json:"pod"`
	Workspace *struct {
		SizeBytes int64 `json:"sizeBytes"`
	} `json:"workspace"`
}

// apiTaskPage is one page of the tasks query; Edges keeps the raw edges for
// JSON output.
type apiTaskPage struct {
	Edges    []json.RawMessage `json:"edges"`
	PageInfo struct {
		HasNextPage     bool    `json:"hasNextPage"`
		HasPreviousPage bool    `json:"hasPreviousPage"`
		StartCursor     *string `json:"startCursor"`
		EndCursor       string  `json:"endCursor"`
	} `json:"pageInfo"`
	TotalCount int       `json:"totalCount"`
	Rows       []apiTask `json:"-"`
}

func (p *apiTaskPage) UnmarshalJSON(b []byte) error {
	type plain apiTaskPage
	if err := json.Unmarshal(b, (*plain)(p)); err != nil {
		return err
	}
	p.Rows = make([]apiTask, len(p.Edges))
	for i, e := range p.Edges {
		var edge struct{ Node apiTask }
		if err := json.Unmarshal(e, &edge); err != nil {
			return err
		}
		p.Rows[i] = edge.Node
	}
	return nil
}

// apiEvent is one Event.
type apiEvent struct {
	ID            string          `json:"id"`
	TaskID        string          `json:"taskId"`
	Version       int             `json:"version"`
	Position      string          `json:"position"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       *string         `json:"actorId"`
	CorrelationID *string         `json:"correlationId"`
	OccurredAt    string          `json:"occurredAt"`
}

// outputLine is one line of a pod_output event.
type outputLine struct {
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

func (e apiEvent) outputLines() (lines []outputLine, dropped int) {
	var d struct {
		Lines   []outputLine `json:"lines"`
		Dropped int          `json:"dropped"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.Lines, d.Dropped
}

// writeJSONDocument writes one data object, indented, as one JSON document.
func writeJSONDocument(w io.Writer, data json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func writeJSONValue(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeJSONDocument(w, raw)
}

// writeJSONLine writes one data object compactly on one line.
func writeJSONLine(w io.Writer, data json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// localTime shows an API time in the local zone, to the second ("-" when
// absent or unreadable as a time).
func localTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if s == "" {
			return "-"
		}
		return s
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// compactJSON is raw on one line, cut to max characters (0: no limit).
func compactJSON(raw json.RawMessage, max int) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return cut(buf.String(), max)
}

// cut shortens s to max characters with an ellipsis (0: no limit).
func cut(s string, max int) string {
	r := []rune(s)
	if max <= 0 || len(r) <= max {
		return s
	}
	return string(r[:max-1]) + "…"
}

// oneLine keeps a free text on one table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func podSummary(t apiTask) string {
	p := t.Pod
	s := p.State
	var parts []string
	if p.PID != nil {
		parts = append(parts, fmt.Sprintf("pid %d", *p.PID))
	}
	if p.StartedAt != nil {
		parts = append(parts, "since "+localTime(*p.StartedAt))
	}
	if p.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("%d restarts", p.Restarts))
	}
	if p.NextAttemptAt != nil {
		parts = append(parts, "next attempt "+localTime(*p.NextAttemptAt))
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// printTask prints one task as FIELD value rows.
func printTask(out io.Writer, t apiTask) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	row("ID", t.ID)
	row("TITLE", oneLine(t.Title))
	row("STATUS", t.Status)
	row("PHASE", t.Phase)
	row("RUNTIME", t.Runtime)
	row("VERSION", fmt.Sprint(t.Version))
	row("POD", podSummary(t))
	printScheduling(row, t)
	row("CREATED", localTime(t.CreatedAt)+" by "+t.CreatedBy)
	row("UPDATED", localTime(t.UpdatedAt))
	if t.Description != nil && *t.Description != "" {
		row("DESCRIPTION", cut(oneLine(*t.Description), 200))
	}
	if c := compactJSON(t.RuntimeConfig, 200); c != "" {
		row("CONFIG", c)
	}
	if m := compactJSON(t.Metadata, 200); m != "" {
		row("METADATA", m)
	}
	if l := labelList(t.Labels); l != "" {
		row("LABELS", l)
	}
	rp := t.RestartPolicy
	if rp.AutoRestart {
		row("RESTART", fmt.Sprintf("automatic, at most %d in %ds, back-off %dms to %dms",
			rp.MaxAttempts, rp.WindowSeconds, rp.InitialBackoffMs, rp.MaxBackoffMs))
	} else {
		row("RESTART", "manual")
	}
	if l := compactJSON(t.Pod.Live, 200); l != "" {
		row("LIVE", l)
	}
	if e := t.Pod.LastExit; e != nil {
		how := e.Reason
		switch {
		case e.Signal != nil:
			how += ", killed by " + *e.Signal
		case e.ExitCode != nil:
			how += fmt.Sprintf(", exit code %d", *e.ExitCode)
		}
		row("LAST EXIT", fmt.Sprintf("%s  %s after %dms", localTime(e.At), how, e.DurationMs))
	}
	if t.Workspace != nil {
		row("WORKSPACE", fmt.Sprintf("%d bytes", t.Workspace.SizeBytes))
	}
	for i, c := range t.Pod.Crashes {
		how := c.Reason
		if c.ExitCode != nil {
			how += fmt.Sprintf(", exit code %d", *c.ExitCode)
		}
		if c.Signal != nil {
			how += ", " + *c.Signal
		}
		k := ""
		if i == 0 {
			k = "CRASHES"
		}
		row(k, fmt.Sprintf("%s  %s after %dms", localTime(c.At), how, c.UptimeMs))
	}
	return w.Flush()
}

// labelList is the labels as k=v pairs, sorted by key, comma-separated.
func labelList(labels map[string]string) string {
	keys := slices.Sorted(mapKeys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + oneLine(labels[k])
	}
	return strings.Join(parts, ",")
}

func printTaskList(out io.Writer, p apiTaskPage) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTITLE\tSTATUS\tPHASE\tPOD\tRUNTIME\tVERSION\tUPDATED")
	for _, t := range p.Rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, cut(oneLine(t.Title), 40), t.Status, t.Phase,
			t.Pod.State, t.Runtime, t.Version, localTime(t.UpdatedAt))
	}
	return w.Flush()
}

func printEvents(out io.Writer, evs []apiEvent) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tTYPE\tACTOR\tOCCURRED\tDATA")
	for _, e := range evs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.Version, e.Type, deref(e.ActorID), localTime(e.OccurredAt), compactJSON(e.Data, 100))
	}
	return w.Flush()
}

// eventLine is one event on one line, for watch (a tabwriter would hold
// lines back until the end).
func eventLine(e apiEvent) string {
	return fmt.Sprintf("%s  v%-4d %-26s %-10s %s", localTime(e.OccurredAt), e.Version, e.Type, deref(e.ActorID), compactJSON(e.Data, 200))
}

// taskLine is one task change on one line, for watch without an id.
func taskLine(t apiTask) string {
	return fmt.Sprintf("%s  %s  %-9s %-18s %-8s v%-4d %s", localTime(t.UpdatedAt), t.ID, t.Status, t.Phase, t.Pod.State, t.Version, cut(oneLine(t.Title), 60))
}

func deref(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}
