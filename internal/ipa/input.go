package ipa

import (
	"encoding/json"
	"time"
)

// CreateTaskInput is what a client gives to create a task.
type CreateTaskInput struct {
	Title          string
	Description    *string
	Runtime        *string
	RuntimeConfig  json.RawMessage
	Metadata       json.RawMessage
	AutoStart      *bool
	RestartPolicy  *RestartPolicyInput
	IdempotencyKey *string
	Labels         json.RawMessage // JSON object of strings; see ParseLabels
	ParentID       *string
	Deadline       *time.Time
	Priority       *int // scheduling order of queued pods, higher first; 0 when nil
	DependsOn      []string
	Approvals      []Phase
	Budget         *BudgetInput
}

// BudgetInput is a budget as a client gives it; see Budget.
type BudgetInput struct {
	Tokens      *int64
	CostMicros  *int64
	WallSeconds *int64
}

// Budget checks the input: every limit given is at least 0.
func (b *BudgetInput) Budget() (*Budget, error) {
	if b == nil {
		return nil, nil
	}
	for _, v := range []*int64{b.Tokens, b.CostMicros, b.WallSeconds} {
		if v != nil && *v < 0 {
			return nil, Errorf(EINVALID, ReasonInvalidArgument, "A budget's limits are 0 or more.")
		}
	}
	return &Budget{Tokens: b.Tokens, CostMicros: b.CostMicros, WallSeconds: b.WallSeconds}, nil
}

// UpdateTaskInput changes some of a task's fields; nil fields stay as they are.
type UpdateTaskInput struct {
	Title         *string
	Description   *string
	Metadata      json.RawMessage
	Labels        json.RawMessage     // the whole new set
	RestartPolicy *RestartPolicyInput // merged field by field into the current policy
	Deadline      *time.Time
	Budget        *BudgetInput // the whole new budget
	Priority      *int
	DependsOn     []string // the whole new list when not nil
}

// RestartPolicyInput overrides the server's default restart policy field by field.
type RestartPolicyInput struct {
	AutoRestart      *bool
	MaxAttempts      *int
	WindowSeconds    *int
	InitialBackoffMs *int
	MaxBackoffMs     *int
}

// Apply returns the default policy with the given fields replaced.
func (in *RestartPolicyInput) Apply(p RestartPolicy) RestartPolicy {
	if in == nil {
		return p
	}
	if in.AutoRestart != nil {
		p.AutoRestart = *in.AutoRestart
	}
	if in.MaxAttempts != nil {
		p.MaxAttempts = *in.MaxAttempts
	}
	if in.WindowSeconds != nil {
		p.WindowSeconds = *in.WindowSeconds
	}
	if in.InitialBackoffMs != nil {
		p.InitialBackoffMs = *in.InitialBackoffMs
	}
	if in.MaxBackoffMs != nil {
		p.MaxBackoffMs = *in.MaxBackoffMs
		if in.InitialBackoffMs == nil && p.InitialBackoffMs > p.MaxBackoffMs {
			p.InitialBackoffMs = p.MaxBackoffMs
		}
	}
	return p
}

// RuntimeInfo is a runtime as the API lists it.
type RuntimeInfo struct {
	Name            string
	Description     string
	ProtocolVersion int
	ConfigSchema    json.RawMessage // nil: none declared
	ExampleConfig   json.RawMessage // nil: none declared
}

// Runtime is a pod runtime a server offers.
type Runtime struct {
	Name        string
	Description string
	// ValidateConfig checks a task's runtime config when the task is
	// created, without starting anything. Nil accepts any JSON object.
	ValidateConfig func(raw []byte) error
	// ProtocolVersion is the plugin protocol version the runtime speaks
	// (negotiated when the server discovered it).
	ProtocolVersion int
	// ConfigSchema is the JSON Schema the runtime declares for its config
	// and ExampleConfig a valid config; nil when it declares none.
	ConfigSchema, ExampleConfig json.RawMessage
	// Role is the role needed to create a task of this runtime or start its
	// pod; "" means OPERATOR, as for every mutation. exec, which runs any
	// command as the server's OS user, needs ADMIN by default.
	Role Role
	// Unavailable, when set, refuses every start of this runtime's pods
	// with it (exec under --sandbox required without a working bwrap).
	Unavailable error
	// CompletesOnSuccess, when set, says whether a task of this runtime
	// with runtime config raw is completed when its pod's work ends well
	// (exec's onSuccess COMPLETE).
	CompletesOnSuccess func(raw []byte) bool
}
