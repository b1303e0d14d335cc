package exec

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/ipa-dev/ipa/internal/workspace"
)

// EnvWorkspaceMax carries the server's --workspace-max-bytes to the plugin.
const EnvWorkspaceMax = "IPA_EXEC_WORKSPACE_MAX"

// workspaceCheckEvery is how often the workspace is measured.
const workspaceCheckEvery = 2 * time.Second

// workspaceMax is the workspace limit in bytes; 0: none.
func workspaceMax() int64 {
	n, err := strconv.ParseInt(os.Getenv(EnvWorkspaceMax), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// watchWorkspace measures dir until done is closed; once it holds more
// than max bytes, the command is stopped like Stop and its end reported as
// the workspace limit. No quota stops the writes themselves: the command
// may overshoot by what it writes between two checks.
func (r *Runtime) watchWorkspace(dir string, max int64, done <-chan struct{}) {
	t := time.NewTicker(workspaceCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		size, err := workspace.SizeOf(context.Background(), dir)
		if err != nil || size <= max {
			continue
		}
		r.mu.Lock()
		r.wsFull = r.exited == nil
		full := r.wsFull
		r.mu.Unlock()
		if full {
			r.terminate(time.Now().Add(DefaultStopTimeout))
		}
		return
	}
}

func (r *Runtime) wsFullNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wsFull
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
