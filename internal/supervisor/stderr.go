package supervisor

import (
	"bytes"
	"context"
	"log/slog"
	"sync"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// stderrTailLines is how many of a plugin's last stderr lines a pod_crashed
// event carries: enough for a panic's first frames, small enough for an event.
const stderrTailLines = 20

// maxStderrLine caps one line kept in memory and logged; longer ones are cut.
const maxStderrLine = 2048

// stderrTail is the io.Writer go-plugin hands a plugin's stderr to. It keeps
// the last stderrTailLines lines in a ring and relays each line to the server
// log with the task id. Writes never block on anything but its own mutex.
type stderrTail struct {
	log *slog.Logger

	mu      sync.Mutex
	partial []byte
	lines   [stderrTailLines]string
	next    int // index the next line goes to
	n       int // lines held, up to stderrTailLines
	report  *podapi.ExitReport
}

func newStderrTail(log *slog.Logger) *stderrTail { return &stderrTail{log: log} }

func (t *stderrTail) Write(b []byte) (int, error) {
	n := len(b)
	t.mu.Lock()
	var done []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if room := maxStderrLine - len(t.partial); room > 0 {
				t.partial = append(t.partial, b[:min(room, len(b))]...)
			}
			break
		}
		line := append(t.partial, b[:min(i, max(0, maxStderrLine-len(t.partial)))]...)
		t.partial = nil
		b = b[i+1:]
		s := string(bytes.TrimRight(line, "\r"))
		if r, ok := podapi.ParseExitReport(s); ok {
			// The plugin's account of how its work ended: kept apart, it is
			// the crash's reason, not a line of its stderr.
			t.report = &r
			continue
		}
		t.lines[t.next] = s
		t.next = (t.next + 1) % stderrTailLines
		t.n = min(t.n+1, stderrTailLines)
		done = append(done, s)
	}
	log := t.log
	t.mu.Unlock()
	for _, s := range done {
		log.LogAttrs(context.Background(), slog.LevelInfo, "plugin stderr", slog.String("line", s))
	}
	return n, nil
}

// setLog makes log the logger of the lines written from now on (a warm
// plugin's stderr becomes its task's).
func (t *stderrTail) setLog(log *slog.Logger) {
	t.mu.Lock()
	t.log = log
	t.mu.Unlock()
}

// Tail returns the kept lines, oldest first, plus an unterminated last line.
func (t *stderrTail) Tail() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, t.n+1)
	for i := range t.n {
		out = append(out, t.lines[(t.next-t.n+i+stderrTailLines)%stderrTailLines])
	}
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
	}
	if len(out) > stderrTailLines {
		out = out[len(out)-stderrTailLines:]
	}
	return out
}

// Report returns the plugin's exit report, if it wrote one.
func (t *stderrTail) Report() (podapi.ExitReport, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.report == nil {
		return podapi.ExitReport{}, false
	}
	return *t.report, true
}
