package supervisor

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// seedHistory fills the pod's restart accounting from the task's stream the
// first time this supervisor handles the task, so a server restart forgets
// no crash and no automatic restart inside the policy window (a crash-looping
// server would otherwise reset the limit each time it came back). It reads
// only when the pod has no history in memory yet; on a read error it logs and
// tries again next time. Operation lock held; call it before recording the
// fact being handled, which must not count twice.
func (s *Supervisor) seedHistory(ctx context.Context, p *pod) {
	if s.cfg.History == nil {
		return
	}
	p.mu.Lock()
	if p.seeded || !p.restarts.empty() {
		p.seeded = true
		p.mu.Unlock()
		return
	}
	pol := s.policy(p.task)
	p.mu.Unlock()
	now := s.cfg.Now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	events, err := s.cfg.History.RecentPodEvents(rctx, p.taskID, now.Add(-policyWindow(pol)))
	if err != nil {
		s.log.Warn("read restart history", slog.String("task_id", p.taskID), slog.Any("error", err))
		return
	}
	facts := podFacts(events)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seeded || !p.restarts.empty() {
		return
	}
	p.restarts.replay(pol, facts)
	p.seeded = true
	if len(facts) > 0 {
		s.log.Info("restart history read", slog.String("task_id", p.taskID), slog.Int("events", len(facts)),
			slog.Int("crashes_in_window", len(p.restarts.crashes)), slog.Int("restarts_in_window", p.restarts.restartsInWindow(pol, now)))
	}
}

// podFacts turns a task's pod events, oldest first, into what the restart
// accounting counts. Events it cannot read are skipped.
func podFacts(events []ipa.Event) []podFact {
	var out []podFact
	for _, e := range events {
		switch e.Type {
		case ipa.EventPodStarted:
			var d ipa.PodStartedData
			if json.Unmarshal(e.Data, &d) != nil {
				continue
			}
			switch d.Trigger {
			case "manual":
				out = append(out, podFact{Kind: factReset, At: e.OccurredAt})
			case "restart":
				out = append(out, podFact{Kind: factRestart, At: e.OccurredAt})
			}
		case ipa.EventPodCrashed:
			var d ipa.PodCrashedData
			if json.Unmarshal(e.Data, &d) != nil {
				continue
			}
			if d.Reason == ipa.CrashStartFailed {
				// The automatic restart was attempted and failed to launch:
				// both a restart and a crash, as when it happened.
				out = append(out, podFact{Kind: factRestart, At: e.OccurredAt})
			}
			out = append(out, podFact{Kind: factCrash, At: e.OccurredAt, Uptime: time.Duration(d.UptimeMs) * time.Millisecond})
		case ipa.EventPodLost:
			var d ipa.PodLostData
			if json.Unmarshal(e.Data, &d) != nil || d.Reason == ipa.LostNotActive {
				continue
			}
			out = append(out, podFact{Kind: factCrash, At: e.OccurredAt})
		}
	}
	return out
}
