package ipacli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
)

func newPruneCommand(opts *options) *cobra.Command {
	var (
		closedBefore string
		dryRun       bool
		batch        int
	)
	cmd := &cobra.Command{
		Use:   "prune --closed-before DURATION",
		Short: "Delete the whole history of tasks closed long ago",
		Long: `Deletes the whole streams (events, row, lease, idempotency keys) of tasks that were
completed or cancelled more than DURATION ago, a batch of streams per transaction so running
servers' writes wait at most one batch, and prints how many tasks and events it removed.
DURATION is a Go duration (36h, 90m) or a number of days (30d). With --dry-run it only counts.

Positions of later events are unchanged and never reused: after a prune the global log has holes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if closedBefore == "" {
				return &exitError{code: 2, err: fmt.Errorf("--closed-before is required (e.g. 30d)")}
			}
			age, err := service.ParseRetention(closedBefore)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--closed-before %q: %w", closedBefore, err)}
			}
			if batch < 1 {
				return &exitError{code: 2, err: fmt.Errorf("--batch must be at least 1")}
			}
			cutoff := time.Now().Add(-age)
			return opts.withStore(cmd, true, func(s *store.Store) error {
				removed, err := s.Prune(cmd.Context(), store.PruneRequest{ClosedBefore: cutoff, Batch: batch, DryRun: dryRun})
				verb := "removed"
				if dryRun {
					verb = "would remove"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d tasks and %d events (closed before %s)\n",
					verb, removed.Tasks, removed.Events, cutoff.UTC().Format(time.RFC3339))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&closedBefore, "closed-before", "", "delete tasks closed longer ago than this (30d, 36h, 90m)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be removed")
	cmd.Flags().IntVar(&batch, "batch", store.DefaultPruneBatch, "task streams per transaction")
	return cmd
}
