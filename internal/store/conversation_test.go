package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// The inbox rows move with the events in their transaction: a request is
// PENDING, then ANSWERED; the task's close cancels the pending ones; a lost
// table is rebuilt by Reproject from the log alone. On every dialect.
func TestInputRequestsProjection(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			ctx := context.Background()
			at := time.Now()
			task := createTask(t, s, "asks", at)
			ask := func(id string, exp *time.Time) {
				_, err := s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Actor: "runtime:x",
					Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
						return []ipa.NewEvent{{Type: ipa.EventInputRequested, Data: ipa.InputRequestedData{RequestID: id, Kind: ipa.InputQuestion, Prompt: "?", ExpiresAt: exp}}}, nil
					}})
				require.NoError(t, err)
			}
			a, b := uuid.NewString(), uuid.NewString()
			past := at.Add(-time.Minute)
			ask(a, nil)
			ask(b, &past)
			due, err := s.DueRequests(ctx, at, 10)
			require.NoError(t, err)
			require.Len(t, due, 1)
			require.Equal(t, b, due[0].ID)

			_, err = s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Actor: "ann",
				Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
					x := "yes"
					return []ipa.NewEvent{{Type: ipa.EventInputAnswered, Data: ipa.InputAnsweredData{RequestID: a, Answer: &x}}}, nil
				}})
			require.NoError(t, err)
			got, err := s.ListRequests(ctx, ipa.InputAnswered, "", 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, a, got[0].ID)
			owner, err := s.RequestTask(ctx, b)
			require.NoError(t, err)
			require.Equal(t, task.ID, owner)

			appendEvents(t, s, task.ID, at, ipa.EventTaskCancelled)
			got, err = s.ListRequests(ctx, ipa.InputCancelled, "", 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, b, got[0].ID)
			pending, err := s.ListRequests(ctx, ipa.InputPending, "", 10)
			require.NoError(t, err)
			require.Empty(t, pending)

			changed, err := s.Reproject(ctx, true)
			require.NoError(t, err)
			require.Zero(t, changed)
			require.NoError(t, s.write.Exec(`DELETE FROM input_requests`).Error)
			changed, err = s.Reproject(ctx, true)
			require.NoError(t, err)
			require.Equal(t, 2, changed)
			_, err = s.Reproject(ctx, false)
			require.NoError(t, err)
			all, err := s.ListRequests(ctx, "", "", 10)
			require.NoError(t, err)
			require.Len(t, all, 2)
			changed, err = s.Reproject(ctx, true)
			require.NoError(t, err)
			require.Zero(t, changed)
		})
	}
}
