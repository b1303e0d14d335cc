package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// BenchmarkLabelledWrites measures what labels cost the write path, one
// write at a time on each dialect: creating a task without labels and with
// two, and appending an event (a phase change, which moves updated_at) to a
// task without labels and to one with two. Every event of a labelled task
// also writes its task_labels rows (their copies of the task's list
// columns), so the labelled figures beside the plain ones are that cost.
// Appends go round-robin over 100 tasks.
func BenchmarkLabelledWrites(b *testing.B) {
	ctx := context.Background()
	labels := ipa.Labels{"team": "t42", "shard": "s7"}
	for _, d := range store.Dialects() {
		b.Run(d.Name(), func(b *testing.B) {
			s := d.Open(b)
			create := func(l ipa.Labels) (string, error) {
				req := store.NewCreateRequest()
				req.Created.Labels = l
				res, err := s.CreateTask(ctx, req)
				if err != nil {
					return "", err
				}
				return res.Task.ID, nil
			}
			tasks := func(l ipa.Labels) []string {
				ids := make([]string, 100)
				for i := range ids {
					var err error
					ids[i], err = create(l)
					require.NoError(b, err)
				}
				return ids
			}
			appendTo := func(ids []string) func() error {
				k := 0
				return func() error {
					k++
					_, err := s.Append(ctx, ipa.AppendRequest{
						TaskID: ids[k%len(ids)], ExpectedVersion: ipa.AnyVersion, Actor: "bench",
						Decide: func(t *ipa.Task) ([]ipa.NewEvent, error) {
							return []ipa.NewEvent{{Type: ipa.EventPhaseChanged, Data: ipa.PhaseChangedData{From: t.Phase, To: ipa.PhasePlanning}}}, nil
						},
					})
					return err
				}
			}
			plain, labelled := tasks(nil), tasks(labels)
			for _, c := range []struct {
				name string
				fn   func() error
			}{
				{"create/plain", func() error { _, err := create(nil); return err }},
				{fmt.Sprintf("create/labels=%d", len(labels)), func() error { _, err := create(labels); return err }},
				{"append/plain", appendTo(plain)},
				{fmt.Sprintf("append/labels=%d", len(labels)), appendTo(labelled)},
			} {
				b.Run(c.name, func(b *testing.B) { store.RunBench(b, 1, c.fn) })
			}
		})
	}
}
