package ipa

import (
	"encoding/json"
	"time"
)

// The pod vocabulary: what the supervisor knows of a pod, what the API shows
// of it, and the data of the pod_* events. Their JSON field names are the
// event data clients see.

// ErrPodNotRunning is returned when a pod is asked to stop but no pod runs
// for the task and no restart is pending.
var ErrPodNotRunning = Errorf(ECONFLICT, ReasonNotRunning, "No pod is running for this task.")

// ErrLeaseHeld is returned when another server instance sharing the database
// owns the task's pod.
var ErrLeaseHeld = &Error{Code: ECONFLICT, Message: "Another server instance runs this task's pod."}

// PodCrash is one crash of a pod: kept in memory by the supervisor for a
// while, and read back from pod_crashed events (its durable record).
type PodCrash struct {
	At       time.Time
	ExitCode *int
	Signal   string // "" when no signal ended it
	Reason   string // see the Crash constants
	UptimeMs int64
	Message  string // human-readable cause when known; never a path, SQL or a stack
}

// MessageText is Message for the API: null when unknown.
func (c PodCrash) MessageText() *string {
	if c.Message == "" {
		return nil
	}
	m := c.Message
	return &m
}

// SignalName is Signal for the API: null when no signal ended the pod.
func (c PodCrash) SignalName() *string {
	if c.Signal == "" {
		return nil
	}
	s := c.Signal
	return &s
}

// PodStatus is the supervisor's in-memory view of one task's pod.
type PodStatus struct {
	TaskID        string
	Known         bool // false when the supervisor holds nothing for the task (State is then STOPPED)
	State         PodState
	Runtime       string
	PID           int
	Attempt       int
	StartedAt     *time.Time
	Restarts      int        // automatic restarts inside the current policy window
	NextAttemptAt *time.Time // while BACKOFF
	Live          json.RawMessage
	Phase         string
	Progress      float64
	Message       string
	Crashes       []PodCrash // newest first, a bounded number
}

// Pod is a task's pod as the API shows it.
type Pod struct {
	TaskID        string
	State         PodState
	PID           *int
	StartedAt     *time.Time
	Restarts      int
	NextAttemptAt *time.Time
	Live          json.RawMessage
}

// PodStartedData is the data of pod_started.
type PodStartedData struct {
	PID     int    `json:"pid"`
	Attempt int    `json:"attempt"` // 0 when a person or the manager started it, n for the nth automatic restart
	Runtime string `json:"runtime"`
	Trigger string `json:"trigger"` // see the Trigger constants
}

// Start triggers (PodStartedData.Trigger): what made a pod start.
const (
	TriggerManual    = "manual"     // startPod or restartPod
	TriggerAutoStart = "auto_start" // createTask with autoStart
	TriggerRestart   = "restart"    // the restart policy after a crash
	TriggerResume    = "resume"     // the server came back after a clean shutdown that stopped it
	TriggerHandoff   = "handoff"    // another instance handed the pod over on its shutdown
	TriggerTakeover  = "takeover"   // the pod's owner died and another instance took it
)

// PodPausedData is the data of pod_paused and pod_resumed.
type PodPausedData struct {
	PID int `json:"pid,omitempty"`
}

// PodStoppedData is the data of pod_stopped.
type PodStoppedData struct {
	Reason           string `json:"reason"`
	PID              int    `json:"pid,omitempty"`
	ExitCode         *int   `json:"exitCode,omitempty"`
	Signal           string `json:"signal,omitempty"`
	Forced           bool   `json:"forced,omitempty"` // it did not exit within StopTimeout and was killed
	UptimeMs         int64  `json:"uptimeMs,omitempty"`
	CancelledRestart bool   `json:"cancelledRestart,omitempty"` // the stop came during BACKOFF
	// InstanceID names the server that stopped the pod on its shutdown
	// (reason server_shutdown): that server resumes the pod when it returns.
	InstanceID string `json:"instanceId,omitempty"`
}

// PodCrashedData is the data of pod_crashed; its fields are the API's PodCrash
// (at is the event's occurredAt).
type PodCrashedData struct {
	PID      int      `json:"pid,omitempty"`
	Attempt  int      `json:"attempt"`
	Runtime  string   `json:"runtime"`
	ExitCode *int     `json:"exitCode"`         // null when a signal ended it or the status is unknown
	Signal   string   `json:"signal,omitempty"` // e.g. "SIGKILL"
	Reason   string   `json:"reason"`           // see the Crash constants
	UptimeMs int64    `json:"uptimeMs"`
	Stderr   []string `json:"stderr,omitempty"`  // the plugin's last stderr lines, oldest first
	Message  string   `json:"message,omitempty"` // human-readable cause when known: never a path, SQL or a stack
}

// PodRestartScheduledData is the data of pod_restart_scheduled.
type PodRestartScheduledData struct {
	Attempt int       `json:"attempt"` // 1 for the first automatic restart in the window
	DelayMs int64     `json:"delayMs"`
	At      time.Time `json:"at"`
}

// PodRestartLimitReachedData is the data of pod_restart_limit_reached.
type PodRestartLimitReachedData struct {
	MaxAttempts   int `json:"maxAttempts"`
	WindowSeconds int `json:"windowSeconds"`
}

// PodLostData is the data of pod_lost.
type PodLostData struct {
	Reason string `json:"reason"` // see the Lost constants
	PID    int    `json:"pid,omitempty"`
	// InstanceID is the instance that owned the pod before (instance_lost,
	// process_gone); Epoch the lease's fencing epoch after a takeover.
	InstanceID string `json:"instanceId,omitempty"`
	Epoch      int64  `json:"epoch,omitempty"`
}

// PodReattachedData is the data of pod_reattached.
type PodReattachedData struct {
	PID     int    `json:"pid"`
	Attempt int    `json:"attempt"`
	Runtime string `json:"runtime"`
}

// Crash reasons (PodCrashedData.Reason), the contract's stable list.
const (
	CrashExited       = "exited"       // it exited on its own with a non-zero status
	CrashSignal       = "signal"       // a signal ended it (someone ran kill -9, the OOM killer…)
	CrashTimeout      = "timeout"      // the runtime's own time limit (exec timeoutMs) ended the work
	CrashUnresponsive = "unresponsive" // it failed HealthFailures health checks in a row and was killed
	CrashStartFailed  = "start_failed" // the plugin could not be launched, or its runtime refused Start
	// CrashLost: a pod_lost event, or a process adopted after a server
	// restart that ended: only our own children's exit status is known, so
	// how it ended is not.
	CrashLost = "lost"
	// CrashExitCode is the former name of CrashExited.
	CrashExitCode = CrashExited

	// CrashLimitPrefix starts the reason of a pod that exceeded one of its
	// resource limits (exec runtimeConfig.limits), when that can be told.
	CrashLimitPrefix    = "limit: "
	CrashLimitMemory    = CrashLimitPrefix + "memory"    // memoryMB (address space): an allocation failed
	CrashLimitCPU       = CrashLimitPrefix + "cpu"       // cpuSeconds: SIGXCPU, then SIGKILL
	CrashLimitOpenFiles = CrashLimitPrefix + "openFiles" // openFiles
	CrashLimitProcesses = CrashLimitPrefix + "processes" // processes
	CrashLimitWorkspace = CrashLimitPrefix + "workspace" // the server's --workspace-max-bytes
)

// Lost reasons (PodLostData.Reason).
const (
	LostNoLease        = "no_lease"        // the task was ACTIVE but this server holds no lease for it
	LostProcessGone    = "process_gone"    // the leased process is dead, or its pid now names another process
	LostReattachFailed = "reattach_failed" // it was alive and ours, but did not answer; it was killed
	LostNotActive      = "not_active"      // a lease for a task that is not open and ACTIVE; the process was killed
	LostInstanceLost   = "instance_lost"   // the owning instance stopped heartbeating; another instance took the pod over
	// LostHostSilent: the plugin stopped its work because its server was
	// silent (paused, cut off) for the orphan grace, and said so as it
	// exited; the server came back still owning the pod.
	LostHostSilent = "host_silent"
)

// Stop reasons the supervisor itself uses (PodStoppedData.Reason); people
// give their own.
const (
	StopShutdown = "server_shutdown"
	StopRestart  = "restart"
	StopExited   = "exited"  // the plugin exited with status 0 without being asked: its work is done
	StopHandoff  = "handoff" // the owner handed the pod to another live instance (drain)
)
