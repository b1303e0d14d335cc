package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Rows as stored. Times are unix nanoseconds; JSON is text (SQLite) or jsonb
// (PostgreSQL), carried as a string either way.

type streamRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	Type      string `gorm:"column:type"`
	Version   int64  `gorm:"column:version"`
	CreatedAt int64  `gorm:"column:created_at"`
	UpdatedAt int64  `gorm:"column:updated_at"`
}

func (streamRow) TableName() string { return "streams" }

type eventRow struct {
	Position      int64  `gorm:"column:position;primaryKey;autoIncrement:false"`
	ID            string `gorm:"column:id"`
	StreamID      string `gorm:"column:stream_id"`
	Version       int64  `gorm:"column:version"`
	Type          string `gorm:"column:type"`
	Data          string `gorm:"column:data"`
	ActorID       string `gorm:"column:actor_id"`
	CorrelationID string `gorm:"column:correlation_id"`
	CausationID   string `gorm:"column:causation_id"`
	OccurredAt    int64  `gorm:"column:occurred_at"`
}

func (eventRow) TableName() string { return "events" }

func eventToRow(e ipa.Event) eventRow {
	return eventRow{
		Position: e.Position, ID: e.ID, StreamID: e.TaskID, Version: e.Version, Type: e.Type,
		Data: string(e.Data), ActorID: e.ActorID, CorrelationID: e.CorrelationID,
		CausationID: e.CausationID, OccurredAt: e.OccurredAt.UnixNano(),
	}
}

func (r eventRow) event() ipa.Event {
	return ipa.Event{
		ID: r.ID, TaskID: r.StreamID, Version: r.Version, Position: r.Position, Type: r.Type,
		Data: json.RawMessage(r.Data), ActorID: r.ActorID, CorrelationID: r.CorrelationID,
		CausationID: r.CausationID, OccurredAt: fromNanos(r.OccurredAt),
	}
}

type taskRow struct {
	ID            string  `gorm:"column:id;primaryKey"`
	Title         string  `gorm:"column:title"`
	TitleLower    string  `gorm:"column:title_lower"` // strings.ToLower(Title): titleContains agrees with TaskFilter.Matches
	Description   string  `gorm:"column:description"`
	Status        string  `gorm:"column:status"`
	Phase         string  `gorm:"column:phase"`
	Runtime       string  `gorm:"column:runtime"`
	RuntimeConfig string  `gorm:"column:runtime_config"`
	RestartPolicy string  `gorm:"column:restart_policy"`
	Metadata      string  `gorm:"column:metadata"`
	PodState      string  `gorm:"column:pod_state"`
	CreatedBy     string  `gorm:"column:created_by"`
	CreatedAt     int64   `gorm:"column:created_at"`
	UpdatedAt     int64   `gorm:"column:updated_at"`
	ClosedAt      *int64  `gorm:"column:closed_at"`
	Version       int64   `gorm:"column:version"`
	Labels        string  `gorm:"column:labels"`
	ParentID      *string `gorm:"column:parent_id"`
	Deadline      *int64  `gorm:"column:deadline"`
	Archived      bool    `gorm:"column:archived"`
	Priority      int     `gorm:"column:priority"`
	DependsOn     string  `gorm:"column:depends_on"`
}

func (taskRow) TableName() string { return "tasks" }

// taskColumns is the select list for taskRow.
const taskColumns = "id, title, title_lower, description, status, phase, runtime, runtime_config, restart_policy, metadata, pod_state, created_by, created_at, updated_at, closed_at, version, archived, labels, parent_id, deadline, priority, depends_on"

func taskToRow(t *ipa.Task) (taskRow, error) {
	policy, err := json.Marshal(t.RestartPolicy)
	if err != nil {
		return taskRow{}, err
	}
	labels, err := labelsJSON(t.Labels)
	if err != nil {
		return taskRow{}, err
	}
	r := taskRow{
		ID: t.ID, Title: t.Title, TitleLower: strings.ToLower(t.Title), Description: t.Description,
		Status: string(t.Status), Phase: string(t.Phase), Runtime: t.Runtime,
		RuntimeConfig: jsonText(t.RuntimeConfig), RestartPolicy: string(policy), Metadata: jsonText(t.Metadata),
		PodState: string(t.PodState), CreatedBy: t.CreatedBy,
		CreatedAt: t.CreatedAt.UnixNano(), UpdatedAt: t.UpdatedAt.UnixNano(), Version: t.Version,
		Archived: t.Archived,
		Labels:   labels,
		Priority: t.Priority,
	}
	r.DependsOn = "[]"
	if len(t.DependsOn) > 0 {
		b, err := json.Marshal(t.DependsOn)
		if err != nil {
			return taskRow{}, err
		}
		r.DependsOn = string(b)
	}
	if t.ClosedAt != nil {
		n := t.ClosedAt.UnixNano()
		r.ClosedAt = &n
	}
	if t.ParentID != "" {
		p := t.ParentID
		r.ParentID = &p
	}
	if t.Deadline != nil {
		n := t.Deadline.UnixNano()
		r.Deadline = &n
	}
	return r, nil
}

func (r taskRow) task() (*ipa.Task, error) {
	t := &ipa.Task{
		ID: r.ID, Title: r.Title, Description: r.Description,
		Status: ipa.TaskStatus(r.Status), Phase: ipa.Phase(r.Phase), Runtime: r.Runtime,
		RuntimeConfig: json.RawMessage(r.RuntimeConfig), Metadata: json.RawMessage(r.Metadata),
		PodState: ipa.PodState(r.PodState), CreatedBy: r.CreatedBy,
		CreatedAt: fromNanos(r.CreatedAt), UpdatedAt: fromNanos(r.UpdatedAt), Version: r.Version,
		Archived: r.Archived, Priority: r.Priority,
	}
	if err := json.Unmarshal([]byte(r.RestartPolicy), &t.RestartPolicy); err != nil {
		return nil, fmt.Errorf("store: task %s: decode restart policy: %w", r.ID, err)
	}
	if r.ClosedAt != nil {
		at := fromNanos(*r.ClosedAt)
		t.ClosedAt = &at
	}
	if r.DependsOn != "" && r.DependsOn != "[]" {
		if err := json.Unmarshal([]byte(r.DependsOn), &t.DependsOn); err != nil {
			return nil, fmt.Errorf("store: task %s: decode dependencies: %w", r.ID, err)
		}
	}
	t.Labels = ipa.Labels{}
	if r.Labels != "" {
		if err := json.Unmarshal([]byte(r.Labels), &t.Labels); err != nil {
			return nil, fmt.Errorf("store: task %s: decode labels: %w", r.ID, err)
		}
	}
	if r.ParentID != nil {
		t.ParentID = *r.ParentID
	}
	if r.Deadline != nil {
		at := fromNanos(*r.Deadline)
		t.Deadline = &at
	}
	return t, nil
}

// sameRow reports whether two rows hold the same task: JSON columns are
// compared by meaning, because PostgreSQL's jsonb does not keep bytes.
func sameRow(a, b taskRow) bool {
	ja := [4]string{a.RuntimeConfig, a.RestartPolicy, a.Metadata, a.Labels}
	jb := [4]string{b.RuntimeConfig, b.RestartPolicy, b.Metadata, b.Labels}
	for i := range ja {
		if !sameJSON(ja[i], jb[i]) {
			return false
		}
	}
	a.RuntimeConfig, a.RestartPolicy, a.Metadata, a.Labels = "", "", "", ""
	b.RuntimeConfig, b.RestartPolicy, b.Metadata, b.Labels = "", "", "", ""
	return reflect.DeepEqual(a, b)
}

func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// labelsJSON encodes a label set as a JSON object ("{}" when empty).
func labelsJSON(l ipa.Labels) (string, error) {
	if len(l) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// labelRow is one label of a task, as task_labels holds it for selectors,
// with copies of the task row's list columns (see migration 00005): a label
// page is then a range scan of task_labels in the page's order. Every write
// of the task row writes them in the same transaction (writeLabels,
// syncLabels).
type labelRow struct {
	TaskID    string `gorm:"column:task_id"`
	Key       string `gorm:"column:key"`
	Value     string `gorm:"column:value"`
	Archived  bool   `gorm:"column:archived"`
	Status    string `gorm:"column:status"`
	CreatedAt int64  `gorm:"column:created_at"`
	UpdatedAt int64  `gorm:"column:updated_at"`
	Title     string `gorm:"column:title"`
}

func (labelRow) TableName() string { return "task_labels" }

// labelColumns is the select list for labelRow.
const labelColumns = "task_id, key, value, archived, status, created_at, updated_at, title"

// labelRowsOf returns the task_labels rows task row r with labels l should have.
func labelRowsOf(r taskRow, l ipa.Labels) []labelRow {
	rows := make([]labelRow, 0, len(l))
	for _, k := range l.Keys() {
		rows = append(rows, labelRow{
			TaskID: r.ID, Key: k, Value: l[k], Archived: r.Archived, Status: r.Status,
			CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Title: r.Title,
		})
	}
	return rows
}

// writeLabels replaces the task's rows in task_labels with the labels l of
// task row r, in tx (the transaction that writes the task row).
func writeLabels(tx *gorm.DB, r taskRow, l ipa.Labels, replace bool) error {
	if replace {
		if err := tx.Exec(`DELETE FROM task_labels WHERE task_id = ?`, r.ID).Error; err != nil {
			return err
		}
	}
	if len(l) == 0 {
		return nil
	}
	rows := labelRowsOf(r, l)
	return tx.Create(&rows).Error
}

// syncLabels brings the copies in the task's task_labels rows from row old
// to row r when its labels did not change. Only the columns that changed are
// set, so an index whose columns did not change is not touched (SQLite
// updates every index naming a SET column); updated_at moves with every
// event.
func syncLabels(tx *gorm.DB, old, r taskRow) error {
	set := []string{"updated_at = ?"}
	args := []any{r.UpdatedAt}
	if old.Status != r.Status {
		set, args = append(set, "status = ?"), append(args, r.Status)
	}
	if old.Archived != r.Archived {
		set, args = append(set, "archived = ?"), append(args, r.Archived)
	}
	if old.Title != r.Title {
		set, args = append(set, "title = ?"), append(args, r.Title)
	}
	if old.CreatedAt != r.CreatedAt {
		set, args = append(set, "created_at = ?"), append(args, r.CreatedAt)
	}
	return tx.Exec(`UPDATE task_labels SET `+strings.Join(set, ", ")+` WHERE task_id = ?`, append(args, r.ID)...).Error
}

func jsonText(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "{}"
	}
	return string(raw)
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nanos(t time.Time) int64 { return t.UnixNano() }
