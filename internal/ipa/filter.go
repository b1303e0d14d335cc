package ipa

import (
	"strings"
	"time"
)

// TaskFilter narrows a task list. Empty fields match everything; slices match
// any of their values; all given fields must match.
type TaskFilter struct {
	Statuses      []TaskStatus
	Phases        []Phase
	CreatedAfter  *time.Time // exclusive
	CreatedBefore *time.Time // exclusive
	CreatedBy     *string
	Runtime       *string
	TitleContains *string // case-insensitive substring
	// Archived selects archived tasks (true) or the others (false, the
	// default: archived tasks are hidden).
	Archived bool
	// Labels: every pair must be among the task's labels.
	Labels         Labels
	PodStates      []PodState
	ParentID       *string    // children of this task
	DeadlineBefore *time.Time // exclusive; tasks without a deadline never match
	// IDPrefix: ids starting with it (see IDPrefixRange), so a person can
	// name a task by the first characters of its id.
	IDPrefix *string
}

// Matches reports whether t passes the filter, with the same meaning the store
// gives it in SQL. Live feeds (taskChanged) use it to filter server-side.
func (f TaskFilter) Matches(t *Task) bool {
	if t.Archived != f.Archived {
		return false
	}
	if len(f.Statuses) > 0 && !contains(f.Statuses, t.Status) {
		return false
	}
	if len(f.Phases) > 0 && !contains(f.Phases, t.Phase) {
		return false
	}
	if f.CreatedAfter != nil && !t.CreatedAt.After(*f.CreatedAfter) {
		return false
	}
	if f.CreatedBefore != nil && !t.CreatedAt.Before(*f.CreatedBefore) {
		return false
	}
	if f.CreatedBy != nil && t.CreatedBy != *f.CreatedBy {
		return false
	}
	if f.Runtime != nil && t.Runtime != *f.Runtime {
		return false
	}
	if f.TitleContains != nil && !strings.Contains(strings.ToLower(t.Title), strings.ToLower(*f.TitleContains)) {
		return false
	}
	if len(f.Labels) > 0 && !t.Labels.Contains(f.Labels) {
		return false
	}
	if len(f.PodStates) > 0 && !contains(f.PodStates, t.PodState) {
		return false
	}
	if f.ParentID != nil && t.ParentID != *f.ParentID {
		return false
	}
	if f.IDPrefix != nil && !HasIDPrefix(t.ID, *f.IDPrefix) {
		return false
	}
	if f.DeadlineBefore != nil && (t.Deadline == nil || !t.Deadline.Before(*f.DeadlineBefore)) {
		return false
	}
	return true
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TaskOrderField is a column a task list can be sorted by.
type TaskOrderField string

const (
	OrderCreatedAt TaskOrderField = "CREATED_AT"
	OrderUpdatedAt TaskOrderField = "UPDATED_AT"
	OrderTitle     TaskOrderField = "TITLE"
)

// TaskOrder sorts a task list; ties are broken by task id in the same direction,
// so every order is total and keyset pagination is exact.
type TaskOrder struct {
	Field      TaskOrderField
	Descending bool
}

// DefaultTaskOrder is UPDATED_AT DESC, the contract's default.
var DefaultTaskOrder = TaskOrder{Field: OrderUpdatedAt, Descending: true}
