// Command ipa is the task manager: a GraphQL server that creates tasks, runs
// a pod (an out-of-process runtime plugin) for each, watches it live, and
// completes or cancels it. Run `ipa --help` for the commands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ipa:", err)
		os.Exit(exitCode(err))
	}
}
