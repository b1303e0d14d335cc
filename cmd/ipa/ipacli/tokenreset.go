package ipacli

import (
	"fmt"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/store"
)

// newResetLocalCommand is `ipa token reset-local`: the explicit act that
// reopens the anonymous local door once every token is revoked. Without it
// the door stays shut for good after the first token, so revoking the last
// token can never hand the server to whoever reaches its port.
func newResetLocalCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-local",
		Short: "Let requests without a token act as the local admin again (no active token may exist)",
		Long: `Once any token has existed, a server in --auth auto mode requires tokens, even
after every token is revoked, and across restarts. reset-local reopens the
anonymous local door: on a loopback-only server in auto mode, requests without a
token act as actor "local" with role admin again. It refuses while any token is
active; revoke them first (ipa token list, ipa token revoke ID). Running
servers notice within a second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.withStore(cmd, true, func(s *store.Store) error {
				if err := s.ReopenLocalDoor(cmd.Context()); err != nil {
					return err
				}
				cliAudit(opts, "local door reopened")
				fmt.Fprintln(cmd.OutOrStdout(), "requests without a token act as the local admin again (auto mode, loopback only)")
				return nil
			})
		},
	}
}

// cliAudit writes an audit record of a token change made from the command
// line: the actor is the operating-system user, the remote address "local".
func cliAudit(opts *options, msg string, args ...any) {
	log, err := opts.newLogger(os.Stderr)
	if err != nil {
		return
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	log.Info(msg, append(args, "actor", "cli:"+name, "remote_addr", "local")...)
}
