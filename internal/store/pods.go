package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxActivePods bounds TasksWithPods: a server runs far fewer pods than this.
const maxActivePods = 10_000

// TasksWithPods returns the tasks whose recorded pod state is not STOPPED
// (running, starting, crashed, backing off or failed), most recently updated
// first: what reconcile checks after a restart. Returns EUNAVAILABLE when the
// database is unreachable.
func (s *Store) TasksWithPods(ctx context.Context) ([]*ipa.Task, error) {
	return s.tasksWhere(ctx, "tasks with pods", `SELECT `+taskColumns+` FROM tasks WHERE pod_state <> ? ORDER BY updated_at DESC, id DESC LIMIT ?`,
		string(ipa.PodStopped), maxActivePods)
}

// ActivePodTasks returns the tasks whose recorded pod state is STARTING,
// RUNNING, STOPPING or BACKOFF (not CRASHED or FAILED), most recently updated
// first: the API's activePods. Returns EUNAVAILABLE when the database is
// unreachable.
func (s *Store) ActivePodTasks(ctx context.Context) ([]*ipa.Task, error) {
	return s.tasksWhere(ctx, "active pods", `SELECT `+taskColumns+` FROM tasks WHERE pod_state IN (?, ?, ?, ?, ?) ORDER BY updated_at DESC, id DESC LIMIT ?`,
		string(ipa.PodStarting), string(ipa.PodRunning), string(ipa.PodStopping), string(ipa.PodBackoff), string(ipa.PodPaused), maxActivePods)
}

// ShutdownStoppedTasks returns the open tasks whose pod was last stopped by
// the clean shutdown of one of instances (a server's id and the ids it had
// before): their pod is STOPPED and their newest pod_stopped event has
// reason server_shutdown and one of those instanceIds. A pod
// started (or stopped) since by anyone else has a newer pod event and is not
// returned. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) ShutdownStoppedTasks(ctx context.Context, instances ...string) ([]*ipa.Task, error) {
	if len(instances) == 0 {
		return nil, nil
	}
	field := func(name string) string { return `json_extract(e.data, '$.` + name + `')` }
	if s.postgres() {
		field = func(name string) string { return `e.data->>'` + name + `'` }
	}
	cols := "t." + strings.ReplaceAll(taskColumns, ", ", ", t.")
	q := `SELECT ` + cols + ` FROM tasks t JOIN events e ON e.stream_id = t.id AND e.type = ?
		WHERE t.pod_state = ? AND t.status IN (?, ?)
		AND e.version = (SELECT MAX(e2.version) FROM events e2 WHERE e2.stream_id = t.id AND e2.type = ?)
		AND ` + field("reason") + ` = ? AND ` + field("instanceId") + ` IN ?
		ORDER BY t.updated_at, t.id LIMIT ?`
	return s.tasksWhere(ctx, "tasks stopped by shutdown", q,
		ipa.EventPodStopped, string(ipa.PodStopped), string(ipa.StatusInactive), string(ipa.StatusActive),
		ipa.EventPodStopped, ipa.StopShutdown, instances, maxActivePods)
}

func (s *Store) tasksWhere(ctx context.Context, what, q string, args ...any) ([]*ipa.Task, error) {
	var rows []taskRow
	if err := s.read.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: %s: %w", what, err))
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
