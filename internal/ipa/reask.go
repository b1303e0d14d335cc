package ipa

import (
	"slices"
	"strings"
)

// AutoKeyPrefix starts the key the pod SDK gives an ask its runtime made
// without one: the same request for the run's asks again across a restart
// of the server, but no name of the runtime's own. Such an ask, like one
// with no key at all, is unkeyed for Conversation.Reusable.
const AutoKeyPrefix = "sdk:"

// Unkeyed reports whether key names no request of the runtime's own.
func Unkeyed(key string) bool { return key == "" || strings.HasPrefix(key, AutoKeyPrefix) }

// InputReaskedData is the data of input_reasked: the run named by the
// event's causation asked again, under Key, what request RequestID asked.
type InputReaskedData struct {
	RequestID string `json:"requestId"`
	Key       string `json:"key,omitempty"`
}

// podRuns follows the task's pod runs through its stream. A run is named
// by its pod_started; a pod_reattached (the server restarted, the pod ran
// on) continues the run that was current. A run ends at its pod_stopped,
// pod_crashed or pod_lost, or at the next pod_started.
type podRuns struct {
	current string
	runOf   map[string]string // pod_started or pod_reattached id → run
	over    map[string]bool   // runs that ended
}

func (p *podRuns) apply(e Event) {
	switch e.Type {
	case EventPodStarted:
		if p.runOf == nil {
			p.runOf, p.over = map[string]string{}, map[string]bool{}
		}
		if p.current != "" {
			p.over[p.current] = true
		}
		p.current = e.ID
		p.runOf[e.ID] = e.ID
	case EventPodReattached:
		if p.runOf == nil {
			p.runOf, p.over = map[string]string{}, map[string]bool{}
		}
		if p.current == "" {
			p.current = e.ID
		}
		p.runOf[e.ID] = p.current
		delete(p.over, p.current)
	case EventPodStopped, EventPodCrashed, EventPodLost:
		if p.current != "" {
			p.over[p.current] = true
		}
	}
}

// asker is the live run a runtime's write naming cause (the id of its
// run's pod_started or pod_reattached) came from; "" when cause names no
// run, or one that has ended (a write racing its run's end, or a run's
// first write before its pod_started was recorded, names a run that is
// not the one asking).
func (p *podRuns) asker(cause string) string {
	run := p.runOf[cause]
	if run == "" || p.over[run] {
		return ""
	}
	return run
}

func (p *podRuns) ended(run string) bool { return run != "" && p.over[run] }

// Reusable returns the request an unkeyed ask of run gets instead of a new
// one, nil when none: the first request, asked unkeyed with the same kind,
// prompt and options by a run that has since ended, that no run has had
// the answer of: still pending, or answered after its run ended. An
// expired request is not reused: its wait ran out for the run that asked,
// and the new run's ask is a new wait. Reusing it makes run its asker (input_reasked), so a second such
// ask of the same run is a new request, and an answer a live run got is
// never handed to another: a pod run again asks again.
func (c *Conversation) Reusable(kind InputKind, prompt string, options []string, run string) *InputRequest {
	if run == "" {
		return nil
	}
	for i := range c.Requests {
		r := &c.Requests[i]
		if r.Transition != nil || !Unkeyed(r.Key) || r.Run == "" || r.Run == run || !c.runs.ended(r.Run) {
			continue
		}
		if r.Kind != kind || r.Prompt != prompt || !slices.Equal(r.Options, options) {
			continue
		}
		if r.State == InputPending || (r.EndedUnheard && r.State == InputAnswered) {
			return r
		}
	}
	return nil
}

// Run returns the run a runtime's write naming cause comes from, "" when
// none is live.
func (c *Conversation) Run(cause string) string { return c.runs.asker(cause) }
