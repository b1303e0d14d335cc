package ipacli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/buildinfo"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build time and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Get().String())
		},
	}
}

func newMigrateCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply schema migrations to the database and exit",
		Long:  "Applies pending schema migrations to the configured database and exits. Running it again is harmless.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.withStore(cmd, false, func(s *store.Store) error {
				n, err := s.Migrate(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "database is up to date (%d migrations applied now)\n", n)
				return nil
			})
		},
	}
}

func newReprojectCommand(opts *options) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "reproject",
		Short: "Rebuild the tasks table from the event log",
		Long: `Rebuilds the tasks table from the event log and prints how many rows changed.
With --check it only compares, and exits 1 when any row differs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.withStore(cmd, true, func(s *store.Store) error {
				n, err := s.Reproject(cmd.Context(), check)
				if err != nil {
					return err
				}
				if check {
					fmt.Fprintf(cmd.OutOrStdout(), "%d rows differ from the event log\n", n)
					if n > 0 {
						return &exitError{code: 1, err: fmt.Errorf("%d rows differ from the event log", n)}
					}
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d rows changed\n", n)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only compare; exit 1 when any row differs")
	return cmd
}

func newTokenCommand(opts *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (create, list, revoke, reset-local)",
	}
	var actor, role string
	create := &cobra.Command{
		Use:   "create",
		Short: "Mint an API token; it is printed once, alone on the last line",
		Long: `Mints an API token for an actor with a role (viewer, operator or admin).
The token is printed once, alone on the last line of stdout; only its hash is
stored, so keep it safe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := ipa.Role(toUpper(role))
			if !r.Valid() {
				return fmt.Errorf("--role must be viewer, operator or admin, not %q", role)
			}
			return opts.withStore(cmd, true, func(s *store.Store) error {
				t, secret, err := auth.Mint(cmd.Context(), s, actor, r, time.Now())
				if err != nil {
					return err
				}
				cliAudit(opts, "token created", "token_id", t.ID, "for_actor", t.ActorID, "role", t.Role)
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "token %s for actor %q with role %s (shown once; only its hash is stored):\n", t.ID, t.ActorID, t.Role)
				fmt.Fprintln(out, secret)
				return nil
			})
		},
	}
	create.Flags().StringVar(&actor, "actor", "", "actor id recorded on every event made with this token (required)")
	create.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	_ = create.MarkFlagRequired("actor")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.withStore(cmd, true, func(s *store.Store) error {
				tokens, err := s.ListTokens(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tACTOR\tROLE\tCREATED\tLAST USED\tREVOKED")
				for _, t := range tokens {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.ActorID, t.Role, t.CreatedAt.Format(time.RFC3339),
						optTime(t.LastUsed), optTime(t.RevokedAt))
				}
				return w.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token by its id (or a unique prefix of it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return opts.withStore(cmd, true, func(s *store.Store) error {
				if err := s.RevokeToken(cmd.Context(), args[0]); err != nil {
					return err
				}
				cliAudit(opts, "token revoked", "token_id", args[0])
				fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke, newResetLocalCommand(opts))
	return cmd
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
