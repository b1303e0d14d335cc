package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newPluginCommand is how the server launches its built-in runtimes out of
// process: it re-executes its own binary as `ipa plugin NAME`.
func newPluginCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "plugin NAME",
		Short:  "Serve a built-in runtime as a plugin process (used by the server)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("unknown built-in runtime %q", args[0])
		},
	}
}
