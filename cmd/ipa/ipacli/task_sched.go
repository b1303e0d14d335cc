package ipacli

import (
	"fmt"
	"strings"
)

// Scheduling is what `ipa task get` shows of a task's place in scheduling.
type Scheduling struct {
	Priority   int `json:"priority"`
	WaitingFor []struct {
		ID     string `json:"id"`
		Title  string `json:"title"`
		Status string `json:"status"`
	} `json:"waitingFor"`
}

// printScheduling adds the rows of a task's priority, queue position and
// the dependencies it waits for (each only when there is something to say).
func printScheduling(row func(k, v string), t apiTask) {
	if t.Priority != 0 {
		row("PRIORITY", fmt.Sprint(t.Priority))
	}
	if t.Pod.QueuePosition != nil {
		row("QUEUED", fmt.Sprintf("position %d", *t.Pod.QueuePosition))
	}
	if len(t.WaitingFor) > 0 {
		deps := make([]string, len(t.WaitingFor))
		for i, d := range t.WaitingFor {
			deps[i] = fmt.Sprintf("%s %q (%s)", d.ID, oneLine(d.Title), d.Status)
		}
		row("WAITS FOR", strings.Join(deps, ", "))
	}
}
