package ipa

import (
	"strings"
	"time"
)

// Scheduling: concurrency limits by key and the pods queued behind them.

// Limit key kinds: a limit counts the pods (running, backing off, or about
// to start) of every task the key covers.
const (
	LimitGlobal        = "global"   // every pod
	LimitRuntimePrefix = "runtime:" // runtime:<name>, the pods of one runtime
	LimitLabelPrefix   = "label:"   // label:<k>=<v>, the pods of tasks with that label
)

// MaxConcurrencyLimit bounds a limit's value; MaxConcurrencyLimits bounds how
// many limits exist (each is counted on every scheduling decision).
const (
	MaxConcurrencyLimit  = 1_000_000
	MaxConcurrencyLimits = 100
)

// ReasonInvalidLimitKey refuses a limit key that is none of the three kinds.
const ReasonInvalidLimitKey = "INVALID_LIMIT_KEY"

// ConcurrencyLimit is one limit an admin set.
type ConcurrencyLimit struct {
	Key       string
	Limit     int
	Running   int // slots held now under this key, across every instance
	Queued    int // pods queued now that this key covers
	UpdatedAt time.Time
}

// CheckLimitKey returns the key in canonical form, or EINVALID
// (INVALID_LIMIT_KEY) when it is not global, runtime:<name> or
// label:<k>=<v> with a valid label key and value.
func CheckLimitKey(key string) (string, error) {
	bad := func() (string, error) {
		return "", Errorf(EINVALID, ReasonInvalidLimitKey, "A limit key is \"global\", \"runtime:<name>\" or \"label:<key>=<value>\".")
	}
	switch {
	case key == LimitGlobal:
		return key, nil
	case strings.HasPrefix(key, LimitRuntimePrefix):
		name := key[len(LimitRuntimePrefix):]
		if !validLabelName(name) {
			return bad()
		}
		return key, nil
	case strings.HasPrefix(key, LimitLabelPrefix):
		k, v, ok := strings.Cut(key[len(LimitLabelPrefix):], "=")
		if !ok || !validLabelKey(k) || ValidateLabels(Labels{k: v}) != nil {
			return bad()
		}
		return key, nil
	}
	return bad()
}

// LimitKeysOf returns every limit key that covers t's pod: global, its
// runtime, and one per label.
func LimitKeysOf(t *Task) []string {
	keys := make([]string, 0, 2+len(t.Labels))
	keys = append(keys, LimitGlobal, LimitRuntimePrefix+t.Runtime)
	for _, k := range t.Labels.Keys() {
		keys = append(keys, LimitLabelPrefix+k+"="+t.Labels[k])
	}
	return keys
}

// PodQueuedData is the data of pod_queued: a start beyond a concurrency
// limit waits for a slot.
type PodQueuedData struct {
	Trigger    string   `json:"trigger"`              // what asked for the start (see the Trigger constants)
	InstanceID string   `json:"instanceId,omitempty"` // the server that received the start
	Limits     []string `json:"limits"`               // the full limits that held it back
	Position   int      `json:"position"`             // its place in the queue when queued, 1 first
}

// Admission is what the scheduler decided for a start.
type Admission int

const (
	Admitted      Admission = iota // a slot is held: start now
	Queued                         // beyond a limit: queued
	AlreadyQueued                  // it was queued (or granted) already
)

// MaxDependencies bounds a task's dependsOn list.
const MaxDependencies = 64

// ReasonDependencyCycle refuses dependsOn that would make a task wait for
// itself; ReasonInvalidDependency one naming no task, or the task itself.
const (
	ReasonDependencyCycle   = "DEPENDENCY_CYCLE"
	ReasonInvalidDependency = "INVALID_DEPENDENCY"
)

// DependencyCancelledReason is the reason of a task cancelled because a task
// it depends on was cancelled.
const DependencyCancelledReason = "dependency cancelled"

// PodWaitingData is the data of pod_waiting: a start waits until every task
// the task depends on is COMPLETED.
type PodWaitingData struct {
	Trigger    string   `json:"trigger"`
	InstanceID string   `json:"instanceId,omitempty"`
	WaitingFor []string `json:"waitingFor"` // the dependencies not completed then
}
