package feed

import (
	"context"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Source is a cursor feed, as a subscription hands it to its cohort
// (package cohort): the subscription starts after Start; Open streams the
// values after any cursor, catching up from the store first; Seq is a value's
// cursor. Values come in increasing Seq, with no gap and no duplicate.
type Source[T any] struct {
	Start int64
	Open  func(ctx context.Context, after int64) (<-chan T, error)
	Seq   func(T) int64
}

// TaskEventsSource is TaskEvents as a Source: Start is after, or the task's
// current version when after is nil. Returns ENOTFOUND when the task does not
// exist, EINVALID for a negative after.
func (f *Feed) TaskEventsSource(ctx context.Context, taskID string, after *int64) (Source[*ipa.Event], error) {
	if after != nil && *after < 0 {
		return Source[*ipa.Event]{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "afterVersion must not be negative.")
	}
	t, err := f.store.GetTask(ctx, taskID)
	if err != nil {
		return Source[*ipa.Event]{}, err
	}
	start := t.Version
	if after != nil {
		start = *after
	}
	return Source[*ipa.Event]{
		Start: start,
		Open: func(ctx context.Context, after int64) (<-chan *ipa.Event, error) {
			return f.TaskEvents(ctx, taskID, &after)
		},
		Seq: func(e *ipa.Event) int64 { return e.Version },
	}, nil
}

// EventsSource is Events as a Source: Start is after, or the head position
// when after is nil.
func (f *Feed) EventsSource(ctx context.Context, after *int64, types []string) (Source[*ipa.Event], error) {
	var start int64
	if after != nil {
		start = *after
	} else {
		head, err := f.store.HeadPosition(ctx)
		if err != nil {
			return Source[*ipa.Event]{}, err
		}
		start = head
	}
	return Source[*ipa.Event]{
		Start: start,
		Open: func(ctx context.Context, after int64) (<-chan *ipa.Event, error) {
			return f.Events(ctx, &after, types)
		},
		Seq: func(e *ipa.Event) int64 { return e.Position },
	}, nil
}
