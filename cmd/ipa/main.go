// Command ipa is the task manager: a GraphQL server that creates tasks, runs
// a pod (an out-of-process runtime plugin) for each, watches it live, and
// completes or cancels it. Run `ipa --help` for the commands; they live in
// cmd/ipa/ipacli.
package main

import (
	"fmt"
	"os"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
	"github.com/ipa-dev/ipa/internal/hardening"
)

func main() {
	// Before anything starts a process: descriptors inherited from whoever
	// started ipa are not passed on to plugins and their commands.
	if err := hardening.CloseInheritedFiles(); err != nil {
		fmt.Fprintln(os.Stderr, "ipa: mark inherited descriptors close-on-exec:", err)
		os.Exit(1)
	}
	if err := ipacli.NewRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ipa:", err)
		os.Exit(ipacli.ExitCode(err))
	}
}
