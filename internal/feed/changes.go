package feed

import (
	"context"
	"sort"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxPendingChanges bounds the tasks a slow taskChanged subscriber may owe;
// past it the subscription ends with an error rather than grow without limit.
const maxPendingChanges = 10_000

// TaskChanged streams the new view of every task whose row changes and that
// passes the filter. A slow subscriber gets each changed task's latest view —
// intermediate views of one task are coalesced — and never slows writers.
// The channel closes when ctx ends, or when the subscriber owes more than
// maxPendingChanges tasks.
func (f *Feed) TaskChanged(ctx context.Context, filter ipa.TaskFilter) (<-chan *ipa.Task, error) {
	l := f.broker.listenChanges()
	out := make(chan *ipa.Task)
	go f.runChanges(ctx, l, filter, out)
	return out, nil
}

func (f *Feed) runChanges(ctx context.Context, l *changeListener, filter ipa.TaskFilter, out chan<- *ipa.Task) {
	defer close(out)
	defer f.broker.unlistenChanges(l)
	sent := make(map[string]int64) // task id -> last version sent; never send an older view
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		pending, overflow := l.take()
		if overflow {
			f.log.Warn("taskChanged subscriber too slow; closing it", "pending", maxPendingChanges)
			return
		}
		commits := make([]Commit, 0, len(pending))
		for _, c := range pending {
			commits = append(commits, c)
		}
		sort.Slice(commits, func(i, j int) bool { return commits[i].Position < commits[j].Position })
		for _, c := range commits {
			t := c.Task
			if t == nil { // a notice from another instance: read the row
				var err error
				if t, err = f.store.GetTask(ctx, c.TaskID); err != nil {
					if ctx.Err() != nil {
						return
					}
					continue
				}
			}
			if v, ok := sent[t.ID]; ok && v >= t.Version {
				continue
			}
			if len(sent) > maxPendingChanges {
				clear(sent)
			}
			sent[t.ID] = t.Version
			if !filter.Matches(t) {
				continue
			}
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
	}
}
