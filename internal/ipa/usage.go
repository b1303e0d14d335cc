package ipa

// Usage and budget events.
const (
	EventUsageReported  = "usage_reported"
	EventBudgetExceeded = "budget_exceeded"
)

// ReasonBudgetExceeded refuses a pod start while the task's budget is spent.
const ReasonBudgetExceeded = "BUDGET_EXCEEDED"

// StopReasonBudget is pod_stopped's reason when a budget stopped the pod.
const StopReasonBudget = "budget"

// Usage is what a task's runtimes reported (usage_reported's data, and the
// totals of Task.usage).
type Usage struct {
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	CostMicros   int64 `json:"costMicros"`
}

// Add returns u plus v.
func (u Usage) Add(v Usage) Usage {
	return Usage{InputTokens: u.InputTokens + v.InputTokens, OutputTokens: u.OutputTokens + v.OutputTokens, CostMicros: u.CostMicros + v.CostMicros}
}

// Budget limits a task's spending; a nil field is no limit. Tokens counts
// input and output tokens together; WallSeconds the time its pods ran.
type Budget struct {
	Tokens      *int64 `json:"tokens,omitempty"`
	CostMicros  *int64 `json:"costMicros,omitempty"`
	WallSeconds *int64 `json:"wallSeconds,omitempty"`
}

// BudgetExceededData is the data of budget_exceeded.
type BudgetExceededData struct {
	Limit       string `json:"limit"` // tokens, costMicros or wallSeconds
	Budget      Budget `json:"budget"`
	Usage       Usage  `json:"usage"`
	WallSeconds int64  `json:"wallSeconds"`
}

// Exceeded names the first limit u (with wall seconds of pod time) is over,
// "" when none.
func (b *Budget) Exceeded(u Usage, wall int64) string {
	switch {
	case b == nil:
		return ""
	case b.Tokens != nil && u.InputTokens+u.OutputTokens > *b.Tokens:
		return "tokens"
	case b.CostMicros != nil && u.CostMicros > *b.CostMicros:
		return "costMicros"
	case b.WallSeconds != nil && wall > *b.WallSeconds:
		return "wallSeconds"
	}
	return ""
}
