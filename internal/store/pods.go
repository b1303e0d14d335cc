package store

import (
	"context"
	"fmt"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxActivePods bounds TasksWithPods: a server runs far fewer pods than this.
const maxActivePods = 10_000

// TasksWithPods returns the tasks whose recorded pod state is not STOPPED
// (running, starting, crashed, backing off or failed), most recently updated
// first. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) TasksWithPods(ctx context.Context) ([]*ipa.Task, error) {
	var rows []taskRow
	err := s.read.WithContext(ctx).Raw(`SELECT `+taskColumns+` FROM tasks WHERE pod_state <> ? ORDER BY updated_at DESC, id DESC LIMIT ?`,
		string(ipa.PodStopped), maxActivePods).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: tasks with pods: %w", err))
	}
	out := make([]*ipa.Task, 0, len(rows))
	for _, r := range rows {
		t, err := r.task()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
