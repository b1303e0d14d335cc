package ipacli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/plugins/builtin"
	"github.com/ipa-dev/ipa/sdk/pod/podtest"
)

// newPluginCommand is how the server launches its built-in runtimes out of
// process (it re-executes its own binary as `ipa plugin NAME`), and holds
// `ipa plugin check PATH`, the conformance checks for any runtime plugin.
func newPluginCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   builtin.Command + " NAME",
		Short: "Check a runtime plugin (ipa plugin check PATH); ipa plugin NAME serves a built-in runtime for the server",
		Args:  cobra.ExactArgs(1),
		// Plugin processes take no settings from IPA_* variables.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			serve, ok := builtin.Lookup(args[0])
			if !ok {
				return fmt.Errorf("unknown built-in runtime %q (built-ins: %v)", args[0], builtin.Names())
			}
			serve()
			return nil
		},
	}
	c.AddCommand(newPluginCheckCommand())
	return c
}

// errCheckFailed makes `ipa plugin check` exit 1 once the report is printed.
var errCheckFailed = errors.New("the plugin failed the conformance checks")

func newPluginCheckCommand() *cobra.Command {
	var (
		config  string
		title   string
		timeout time.Duration
		verbose bool
	)
	c := &cobra.Command{
		Use:   "check PATH [ARG...]",
		Short: "Run the runtime conformance checks against a plugin executable (any language)",
		Long: `Launches the plugin the way the server does and drives it through the host's
lifecycle: handshake and protocol version, self-description (description,
config schema, example config), start, live state, host calls, a second
start refused, attach after a host restart, stop with and without a
deadline, and kill -9. Prints one line per step; exits 0 only when every
step passed, 1 otherwise.`,
		Args:          cobra.MinimumNArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			cfg := podtest.Config{Command: append([]string{path}, args[1:]...), Title: title, Timeout: timeout}
			if config != "" {
				if !json.Valid([]byte(config)) {
					return fmt.Errorf("--config is not JSON")
				}
				cfg.RuntimeConfig = json.RawMessage(config)
			}
			if verbose {
				cfg.Log = cmd.ErrOrStderr()
			} else {
				// go-plugin's broker reports a closed broker through the
				// standard logger: noise here, where plugins are killed.
				log.SetOutput(io.Discard)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "checking %s\n", path)
			rep := podtest.Check(context.Background(), cfg)
			fmt.Fprint(cmd.OutOrStdout(), rep.String())
			if !rep.Passed() {
				return errCheckFailed
			}
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "", "runtime config (JSON) of the task the checks start; default: the plugin's example config. It must keep the work running until stopped")
	c.Flags().StringVar(&title, "title", "podtest", "title of the task the checks start")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "time allowed for each step")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the plugin's log")
	return c
}
