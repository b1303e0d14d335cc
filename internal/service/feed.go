package service

import (
	"context"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// Feed is the live feed the FeedService hands out (*feed.Feed).
type Feed interface {
	TaskEventsSource(ctx context.Context, taskID string, after *int64) (feed.Source[*ipa.Event], error)
	EventsSource(ctx context.Context, after *int64, types []string) (feed.Source[*ipa.Event], error)
	TaskChanged(ctx context.Context, filter ipa.TaskFilter) (<-chan *ipa.Task, error)
	TaskEventBatches(ctx context.Context, taskID string, after *int64, batchSize int) (<-chan []*ipa.Event, error)
	EventBatches(ctx context.Context, after *int64, types []string, batchSize int) (<-chan []*ipa.Event, error)
}

// MaxStreamBatch is the largest batchSize of eventsStream and
// taskEventsStream; DefaultStreamBatch is what they use when none is given.
const (
	MaxStreamBatch     = 1000
	DefaultStreamBatch = 100
)

func checkStreamBatch(n int) error {
	if n < 1 || n > MaxStreamBatch {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument,
			"batchSize must be from 1 to %d; got %d.", MaxStreamBatch, n)
	}
	return nil
}

// FeedService opens live feeds for authorized callers.
type FeedService struct{ feed Feed }

// NewFeedService returns a FeedService over f.
func NewFeedService(f Feed) *FeedService { return &FeedService{feed: f} }

// TaskEventsSource is the task's events after the version (0 = from the
// start; nil = live only), as a source a cohort opens at any cursor
// (feed.Source). Requires VIEWER. Returns ENOTFOUND when the task does not
// exist.
func (s *FeedService) TaskEventsSource(ctx context.Context, taskID string, after *int64) (feed.Source[*ipa.Event], error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return feed.Source[*ipa.Event]{}, err
	}
	return s.feed.TaskEventsSource(ctx, taskID, after)
}

// EventsSource is the global feed after the position (nil = from the live
// head), only the given types when any, as a source a cohort opens at any
// cursor. Requires VIEWER. Returns EINVALID for a malformed position.
func (s *FeedService) EventsSource(ctx context.Context, afterPosition *string, types []string) (feed.Source[*ipa.Event], error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return feed.Source[*ipa.Event]{}, err
	}
	after, err := optionalPosition("afterPosition", afterPosition)
	if err != nil {
		return feed.Source[*ipa.Event]{}, err
	}
	return s.feed.EventsSource(ctx, after, types)
}

// SubscribeTaskEventBatches is TaskEventsSource as a stream in batches of 1 to
// batchSize consecutive events. Requires VIEWER. Returns EINVALID when
// batchSize is outside 1..MaxStreamBatch or afterVersion is negative,
// ENOTFOUND when the task does not exist.
func (s *FeedService) SubscribeTaskEventBatches(ctx context.Context, taskID string, after *int64, batchSize int) (<-chan []*ipa.Event, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if err := checkStreamBatch(batchSize); err != nil {
		return nil, err
	}
	return s.feed.TaskEventBatches(ctx, taskID, after, batchSize)
}

// SubscribeEventBatches is EventsSource as a stream in batches of 1 to batchSize
// consecutive events. Requires VIEWER. Returns EINVALID for a malformed
// position or a batchSize outside 1..MaxStreamBatch.
func (s *FeedService) SubscribeEventBatches(ctx context.Context, afterPosition *string, types []string, batchSize int) (<-chan []*ipa.Event, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if err := checkStreamBatch(batchSize); err != nil {
		return nil, err
	}
	after, err := optionalPosition("afterPosition", afterPosition)
	if err != nil {
		return nil, err
	}
	return s.feed.EventBatches(ctx, after, types, batchSize)
}

// SubscribeTaskChanged streams the new view of each task matching the filter
// whenever its row changes. Requires VIEWER. Returns EINVALID for a filter no
// task can match.
func (s *FeedService) SubscribeTaskChanged(ctx context.Context, filter ipa.TaskFilter) (<-chan *ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if err := validateFilter(filter); err != nil {
		return nil, err
	}
	return s.feed.TaskChanged(ctx, filter)
}
