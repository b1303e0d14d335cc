package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/plugins/builtin"
)

// newPluginCommand is how the server launches its built-in runtimes out of
// process: it re-executes its own binary as `ipa plugin NAME`.
func newPluginCommand() *cobra.Command {
	return &cobra.Command{
		Use:    builtin.Command + " NAME",
		Short:  "Serve a built-in runtime as a plugin process (used by the server)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
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
}
