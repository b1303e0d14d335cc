// Package ipa holds the domain vocabulary of the task manager: tasks, phases,
// pods, events, actors and errors with codes. It is a leaf package: it imports
// only the standard library, so every other package can depend on it and it
// can be read in one sitting.
package ipa

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// TaskStatus says whether a task is open and whether a pod runs for it.
type TaskStatus string

const (
	StatusActive    TaskStatus = "ACTIVE"   // a pod is running
	StatusInactive  TaskStatus = "INACTIVE" // open, no pod running
	StatusCompleted TaskStatus = "COMPLETED"
	StatusCancelled TaskStatus = "CANCELLED"
)

// Closed reports whether the status is final.
func (s TaskStatus) Closed() bool { return s == StatusCompleted || s == StatusCancelled }

// Valid reports whether s is one of the known statuses.
func (s TaskStatus) Valid() bool {
	switch s {
	case StatusActive, StatusInactive, StatusCompleted, StatusCancelled:
		return true
	}
	return false
}

// Phase is where a task stands in its life.
type Phase string

const (
	PhaseSpecClarification Phase = "SPEC_CLARIFICATION"
	PhasePlanning          Phase = "PLANNING"
	PhaseDevelopment       Phase = "DEVELOPMENT"
	PhaseReview            Phase = "REVIEW"
	PhaseCompleted         Phase = "COMPLETED"
	PhaseCancelled         Phase = "CANCELLED"
)

// workPhases is the forward order of the phases a person or runtime may move between.
var workPhases = []Phase{PhaseSpecClarification, PhasePlanning, PhaseDevelopment, PhaseReview}

// Valid reports whether p is one of the known phases.
func (p Phase) Valid() bool {
	switch p {
	case PhaseSpecClarification, PhasePlanning, PhaseDevelopment, PhaseReview, PhaseCompleted, PhaseCancelled:
		return true
	}
	return false
}

// Final reports whether no transition leaves p.
func (p Phase) Final() bool { return p == PhaseCompleted || p == PhaseCancelled }

func phaseIndex(p Phase) int {
	for i, w := range workPhases {
		if w == p {
			return i
		}
	}
	return -1
}

// CheckPhaseTransition applies the phase rules shared by people (transitionPhase)
// and runtimes (the host service): one step forward, or one step back for rework,
// among the work phases. COMPLETED and CANCELLED are reached only by completing or
// cancelling the task. Returns a CONFLICT error with reason INVALID_TRANSITION (or
// ALREADY_COMPLETED / ALREADY_CANCELLED when from is final) when forbidden.
func CheckPhaseTransition(from, to Phase) error {
	switch from {
	case PhaseCompleted:
		return Errorf(ECONFLICT, ReasonAlreadyCompleted, "The task is already completed.")
	case PhaseCancelled:
		return Errorf(ECONFLICT, ReasonAlreadyCancelled, "The task is already cancelled.")
	}
	if !to.Valid() {
		return Errorf(EINVALID, ReasonInvalidArgument, "Unknown phase %q.", to)
	}
	fi, ti := phaseIndex(from), phaseIndex(to)
	if fi < 0 || ti < 0 || (ti != fi+1 && ti != fi-1) {
		return Errorf(ECONFLICT, ReasonInvalidTransition,
			"Cannot move a task from %s to %s: phases move one step forward, or one step back for rework; use completeTask or cancelTask to close a task.", from, to)
	}
	return nil
}

// PhaseChange decides a phase change of the open task t under the phase
// rules: the phase_changed event to append, or the refusal
// (ALREADY_COMPLETED, ALREADY_CANCELLED, INVALID_TRANSITION, INVALID_ARGUMENT).
// People (transitionPhase) and runtimes (the host service) both go through it.
func PhaseChange(t *Task, to Phase, note, causationID string) (NewEvent, error) {
	if err := ClosedTaskError(t.Status); err != nil {
		return NewEvent{}, err
	}
	if err := CheckPhaseTransition(t.Phase, to); err != nil {
		return NewEvent{}, err
	}
	return NewEvent{Type: EventPhaseChanged, Data: PhaseChangedData{From: t.Phase, To: to, Note: note}, CausationID: causationID}, nil
}

// PodState is the supervisor's view of a task's pod.
type PodState string

const (
	PodStarting PodState = "STARTING"
	PodRunning  PodState = "RUNNING"
	PodStopping PodState = "STOPPING"
	PodStopped  PodState = "STOPPED"
	PodCrashed  PodState = "CRASHED"
	PodBackoff  PodState = "BACKOFF"
	PodFailed   PodState = "FAILED"  // restart limit reached; stays until a person starts the pod
	PodPaused   PodState = "PAUSED"  // its work is stopped (pausePod) until resumePod
	PodQueued   PodState = "QUEUED"  // asked to start beyond a concurrency limit: waits for a slot
	PodWaiting  PodState = "WAITING" // asked to start while a task it depends on is not completed
)

// RestartPolicy says whether and how fast a crashed pod is restarted.
type RestartPolicy struct {
	AutoRestart      bool `json:"autoRestart"`
	MaxAttempts      int  `json:"maxAttempts"`
	WindowSeconds    int  `json:"windowSeconds"`
	InitialBackoffMs int  `json:"initialBackoffMs"`
	MaxBackoffMs     int  `json:"maxBackoffMs"`
}

// DefaultRestartPolicy is the server-wide default: no automatic restarts, as in
// the seed design; explicit recovery is safer than a restart storm.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{AutoRestart: false, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 1000, MaxBackoffMs: 30000}
}

// Validate returns an EINVALID error when a field is out of its range.
func (p RestartPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 0 || p.MaxAttempts > 100:
		return Errorf(EINVALID, ReasonInvalidArgument, "restartPolicy.maxAttempts must be between 0 and 100.")
	case p.WindowSeconds < 1 || p.WindowSeconds > 86400:
		return Errorf(EINVALID, ReasonInvalidArgument, "restartPolicy.windowSeconds must be between 1 and 86400.")
	case p.InitialBackoffMs < 0 || p.InitialBackoffMs > 3600_000:
		return Errorf(EINVALID, ReasonInvalidArgument, "restartPolicy.initialBackoffMs must be between 0 and 3600000.")
	case p.MaxBackoffMs < p.InitialBackoffMs || p.MaxBackoffMs > 3600_000:
		return Errorf(EINVALID, ReasonInvalidArgument, "restartPolicy.maxBackoffMs must be between initialBackoffMs and 3600000.")
	}
	return nil
}

// Task is the queryable view of one task: the projection of its event stream.
type Task struct {
	ID            string
	Title         string
	Description   string
	Status        TaskStatus
	Phase         Phase
	Runtime       string
	RuntimeConfig json.RawMessage // JSON object, "{}" when none was given
	Metadata      json.RawMessage // JSON object, "{}" when none was given
	RestartPolicy RestartPolicy
	PodState      PodState // last pod state recorded in the stream
	Labels        Labels   // never nil after Apply
	ParentID      string   // "" for a top-level task
	Deadline      *time.Time
	CreatedBy     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	ClosedAt      *time.Time // when it was completed or cancelled
	Archived      bool       // closed and archived: hidden from lists unless asked for
	Priority      int        // scheduling order of queued pods, higher first
	DependsOn     []string   // tasks that must be COMPLETED before its pod starts; nil when none
	Version       int64      // version of the last event applied
}

// Limits on what a client may store with a task. Characters, not bytes, for the
// title (what a person counts); bytes for the rest (what the store pays for).
const (
	MaxTitleChars        = 255
	MaxDescriptionBytes  = 64 << 10 // 64 KiB
	MaxMetadataBytes     = 64 << 10 // 64 KiB of JSON
	MaxRuntimeConfigByte = 64 << 10 // 64 KiB of JSON
	MaxReasonChars       = 1000
	MaxIdempotencyKey    = 255
	// MaxTaskDepth bounds parent chains: a top-level task is at depth 1.
	MaxTaskDepth = 8
)

// NormalizeTitle trims a title and checks it. Returns an EINVALID error with
// reason INVALID_TITLE when it is blank or longer than MaxTitleChars
// characters, and with reason INVALID_TEXT when it is not UTF-8 or holds a
// control character (see CheckLine). Space around it, tabs and newlines
// included, is trimmed as always; inside it, a tab or newline is refused.
func NormalizeTitle(title string) (string, error) {
	t := strings.TrimSpace(title)
	if t == "" {
		return "", Errorf(EINVALID, ReasonInvalidTitle, "The title must not be empty.")
	}
	if err := CheckLine("The title", t); err != nil {
		return "", err
	}
	if n := utf8.RuneCountInString(t); n > MaxTitleChars {
		return "", Errorf(EINVALID, ReasonInvalidTitle, "The title has %d characters; the limit is %d.", n, MaxTitleChars)
	}
	return t, nil
}
