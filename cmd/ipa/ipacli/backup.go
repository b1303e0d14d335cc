package ipacli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/store"
)

func newBackupCommand(opts *options) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Copy a SQLite store to a new file, safely while the server runs",
		Long: `Writes a consistent copy of the SQLite store named by --database to FILE, which
must not exist yet. It is safe while ipa serve runs on the same store: the copy is
one snapshot (SQLite's VACUUM INTO in a read transaction) and the server keeps
writing meanwhile. The copy is an ordinary store: open it with
--database sqlite://FILE, or put it back with ipa restore --from FILE.

PostgreSQL stores are backed up with pg_dump (see docs/guides/operations.md, Backups).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return &exitError{code: 2, err: fmt.Errorf("--to is required")}
			}
			if err := store.CheckBackupSource(opts.database); err != nil {
				return err
			}
			// Never migrate here: the running server owns the schema.
			return opts.withStore(cmd, false, func(s *store.Store) error {
				start := time.Now()
				if err := s.Backup(cmd.Context(), to); err != nil {
					return err
				}
				size := int64(0)
				if fi, err := os.Stat(to); err == nil {
					size = fi.Size()
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backed up to %s (%d bytes in %s)\n", to, size, time.Since(start).Round(time.Millisecond))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the backup file to write (must not exist)")
	return cmd
}

func newRestoreCommand(opts *options) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "restore --from FILE",
		Short: "Replace a SQLite store with a backup; refused while a server holds it",
		Long: `Replaces the SQLite store named by --database with the backup FILE (made by
ipa backup). It is refused while any ipa server or command has the store open:
every process using a SQLite store holds a shared lock on <store>.lock, and the
restore needs that lock alone. Stop the server, restore, start it again.

The backup is checked (an intact SQLite file holding an ipa store no newer than
this binary) before anything changes. The replaced store is not deleted: it is
renamed to <store>.replaced-<UTC time> (with its -wal file), and the command says so.

PostgreSQL stores are restored with pg_restore (see docs/guides/operations.md, Backups).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return &exitError{code: 2, err: fmt.Errorf("--from is required")}
			}
			kept, err := store.Restore(cmd.Context(), opts.database, from)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s from %s\n", opts.database, from)
			if kept != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "the replaced store was kept as %s\n", kept)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the backup file to restore")
	return cmd
}
