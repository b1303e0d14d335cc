package manager

import (
	"context"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func (m *Manager) feedReady(ctx context.Context) error {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return err
	}
	if m.feed == nil {
		return ipa.Errorf(ipa.EUNAVAILABLE, "", "Live feeds are not available on this server.")
	}
	return nil
}

// SubscribeTaskEvents streams the task's events after the version (0 = from
// the start; nil = live only), then live ones. Requires VIEWER. Returns
// ENOTFOUND when the task does not exist.
func (m *Manager) SubscribeTaskEvents(ctx context.Context, taskID string, after *int64) (<-chan *ipa.Event, error) {
	if err := m.feedReady(ctx); err != nil {
		return nil, err
	}
	return m.feed.TaskEvents(ctx, taskID, after)
}

// SubscribeEvents streams the global feed after the position (nil = from the
// live head), only the given types when any. Requires VIEWER. Returns
// EINVALID for a malformed position.
func (m *Manager) SubscribeEvents(ctx context.Context, afterPosition *string, types []string) (<-chan *ipa.Event, error) {
	if err := m.feedReady(ctx); err != nil {
		return nil, err
	}
	var after *int64
	if afterPosition != nil {
		p, err := ParsePosition(*afterPosition)
		if err != nil {
			return nil, err
		}
		after = &p
	}
	return m.feed.Events(ctx, after, types)
}

// SubscribeTaskChanged streams the new view of each task matching the filter
// whenever its row changes. Requires VIEWER.
func (m *Manager) SubscribeTaskChanged(ctx context.Context, filter ipa.TaskFilter) (<-chan *ipa.Task, error) {
	if err := m.feedReady(ctx); err != nil {
		return nil, err
	}
	if err := validateFilter(filter); err != nil {
		return nil, err
	}
	return m.feed.TaskChanged(ctx, filter)
}
