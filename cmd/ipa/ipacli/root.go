// Package ipacli is the ipa command line: every command, its flags and their
// IPA_* environment equivalents, the exit codes, and the GraphQL documents
// `ipa task` sends. cmd/ipa only executes NewRootCommand.
package ipacli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ipa-dev/ipa/internal/buildinfo"
	"github.com/ipa-dev/ipa/internal/client"
	"github.com/ipa-dev/ipa/internal/store"
)

// options are the settings shared by the commands. Every flag has an IPA_*
// environment equivalent; a flag given on the command line wins.
type options struct {
	database        string
	databaseURLFile string
	createDirs      bool
	logLevel        string
	logFormat       string
}

// exitError carries a process exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// ExitCode is the process exit code for an error a command returned: the
// code a command chose, the one an API error's code maps to, or 1.
func ExitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if code := client.ErrorCode(err); code != "" {
		return apiExitCode(code)
	}
	return 1
}

// NewRootCommand is the ipa command with every subcommand; main executes it
// and the reference docs are rendered from it.
func NewRootCommand() *cobra.Command {
	opts := &options{}
	root := &cobra.Command{
		Use:   "ipa",
		Short: "ipa is a task manager for long-running, crash-prone work",
		Long: `ipa is the central task manager for long-running, crash-prone work.

People and programs create tasks, start a pod for each task (an out-of-process
runtime plugin), watch it live, and complete or cancel the task. Every change
is an event in the task's own stream; the only front door is a GraphQL API at
/graphql, with an IDE in the browser at /.

Every flag can also be set with an environment variable: --database is
IPA_DATABASE_URL, --addr is IPA_ADDR, and any other --some-flag is IPA_SOME_FLAG.
A flag given on the command line wins over the environment.`,
		Version:       buildinfo.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			return opts.applyDatabaseURLFile(cmd)
		},
	}
	// --version prints exactly what `ipa version` prints.
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&opts.database, "database", "sqlite://./ipa.db",
		"database URL: sqlite://PATH (embedded; the file is created on first use, its directory must exist) or postgres://USER@HOST:PORT/DB")
	root.PersistentFlags().BoolVar(&opts.createDirs, "create-dirs", false,
		"create the directory of a sqlite:// database when it does not exist (without it, a missing directory is refused: it is most often a typo)")
	root.PersistentFlags().StringVar(&opts.databaseURLFile, "database-url-file", "",
		"read the database URL from this file instead of --database, so its password need not sit in the environment or the command line")
	root.PersistentFlags().StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&opts.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newServeCommand(opts),
		newMigrateCommand(opts),
		newReprojectCommand(opts),
		newPruneCommand(opts),
		newBackupCommand(opts),
		newRestoreCommand(opts),
		newTokenCommand(opts),
		newVersionCommand(),
		newPluginCommand(),
		newTaskCommand(),
		newContextCommand(),
		newPodCommand(),
		newInboxCommand(),
	)
	// "ipa tsk" answers with "did you mean task?".
	root.SuggestionsMinimumDistance = 2
	addExamples(root)
	return root
}

// envName returns the environment variable of a flag.
func envName(flag string) string {
	if flag == "database" {
		return "IPA_DATABASE_URL"
	}
	return "IPA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its IPA_*
// environment variable, when set.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// newLogger builds the process logger on stderr.
func (o *options) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", o.logFormat)
}

func (o *options) open(ctx context.Context, log *slog.Logger, migrate bool) (*store.Store, error) {
	if err := checkDatabaseURL(o.database, o.createDirs); err != nil {
		return nil, err
	}
	s, err := store.Open(ctx, o.database, store.Options{Logger: log, SkipMigrate: !migrate})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", describeOpenError(o.database, err))
	}
	return s, nil
}

// withStore runs fn with the configured database open (migrated first when
// migrate is set) and closes it afterwards: the body of every one-shot
// command.
func (o *options) withStore(cmd *cobra.Command, migrate bool, fn func(*store.Store) error) error {
	log, err := o.newLogger(os.Stderr)
	if err != nil {
		return err
	}
	s, err := o.open(cmd.Context(), log, migrate)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}
