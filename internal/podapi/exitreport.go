package podapi

import (
	"encoding/json"
	"strings"
)

// A plugin's last word on how its work ended. The process exit status says
// only "code n" or "signal s"; a runtime often knows more (its command timed
// out, or hit a resource limit). Serve writes that, when the runtime gives it
// (ExitStatus.Reason), as one line on the plugin's stderr just before the
// process exits:
//
//	ipa-plugin-exit {"reason":"timeout","message":"timeoutMs 500 passed"}
//
// The host reads the plugin's stderr to its end after the process exited, so
// the line is seen whenever the host is the plugin's parent. A host that
// reattached after a restart has no stderr pipe and classifies the exit from
// what it can see.

// ExitReportPrefix starts the exit report line.
const ExitReportPrefix = "ipa-plugin-exit "

// ExitReport is the payload of the exit report line.
type ExitReport struct {
	Reason  string `json:"reason"`            // a crash reason (ipa.Crash* constants)
	Message string `json:"message,omitempty"` // human-readable cause
}

// FormatExitReport returns the line (with its newline) for r.
func FormatExitReport(r ExitReport) []byte {
	b, _ := json.Marshal(r)
	return append(append([]byte(ExitReportPrefix), b...), '\n')
}

// ParseExitReport reads an exit report line (without its newline).
func ParseExitReport(line string) (ExitReport, bool) {
	rest, ok := strings.CutPrefix(line, ExitReportPrefix)
	if !ok {
		return ExitReport{}, false
	}
	var r ExitReport
	if err := json.Unmarshal([]byte(rest), &r); err != nil || r.Reason == "" {
		return ExitReport{}, false
	}
	return r, true
}
