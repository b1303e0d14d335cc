package ipacli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/client"
)

// eventsPage is what fetchEvents gathered: the raw edges (for JSON) and
// the decoded events, with the last page's pageInfo.
type eventsPage struct {
	TaskID      string
	Status      string
	PodState    string // "" when the task's pod never started
	AutoRestart bool
	Edges       []json.RawMessage
	Events      []apiEvent
	PageInfo    json.RawMessage
	TotalCount  int
	Last        struct {
		HasNextPage bool   `json:"hasNextPage"`
		EndCursor   string `json:"endCursor"`
	}
}

func (p *eventsPage) document() map[string]any {
	return map[string]any{"task": map[string]any{"id": p.TaskID, "status": p.Status, "events": map[string]any{
		"edges": p.Edges, "pageInfo": p.PageInfo, "totalCount": p.TotalCount}}}
}

// fetchEvents reads the task's stored events, oldest first: one page of
// first after the cursor after, or every page when all is set. Returns
// NOT_FOUND when there is no such task.
func fetchEvents(ctx context.Context, c *client.Client, id string, types []string, first int, after string, all bool) (*eventsPage, error) {
	vars := map[string]any{"id": id, "first": first}
	if len(types) > 0 {
		vars["types"] = types
	}
	if after != "" {
		vars["after"] = after
	}
	p := &eventsPage{}
	for {
		data, err := c.Do(ctx, docTaskEvents, vars)
		if err != nil {
			return nil, err
		}
		var out struct {
			Task *struct {
				ID            string
				Status        string
				Pod           *struct{ State string }
				RestartPolicy struct{ AutoRestart bool }
				Started       struct{ TotalCount int }
				Events        struct {
					Edges      []json.RawMessage `json:"edges"`
					PageInfo   json.RawMessage   `json:"pageInfo"`
					TotalCount int               `json:"totalCount"`
				}
			}
		}
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
		if out.Task == nil {
			return nil, notFound(id)
		}
		p.TaskID, p.Status, p.AutoRestart = out.Task.ID, out.Task.Status, out.Task.RestartPolicy.AutoRestart
		// A pod that never started is STOPPED too, but has yet to begin:
		// only one that ran has ended.
		if out.Task.Pod != nil && out.Task.Started.TotalCount > 0 {
			p.PodState = out.Task.Pod.State
		}
		for _, raw := range out.Task.Events.Edges {
			var e struct{ Node apiEvent }
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, err
			}
			p.Edges = append(p.Edges, raw)
			p.Events = append(p.Events, e.Node)
		}
		p.PageInfo, p.TotalCount = out.Task.Events.PageInfo, out.Task.Events.TotalCount
		if err := json.Unmarshal(p.PageInfo, &p.Last); err != nil {
			return nil, err
		}
		if !all || !p.Last.HasNextPage {
			return p, nil
		}
		vars["after"] = p.Last.EndCursor
	}
}

func newTaskEventsCommand(o *taskOptions) *cobra.Command {
	var (
		types []string
		first int
		after string
		all   bool
	)
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "Show the task's stored events, oldest first",
		Long: `Shows the task's stored events, oldest first, a page of --first at a time;
--types keeps only those types, --all follows the pages to the end. Live
events: ipa task watch ID.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id, err := resolveID(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			p, err := fetchEvents(cmd.Context(), c, id, types, first, after, all)
			if err != nil {
				return err
			}
			if o.json() {
				return writeJSONValue(cmd.OutOrStdout(), p.document())
			}
			if err := printEvents(cmd.OutOrStdout(), p.Events); err != nil {
				return err
			}
			if p.Last.HasNextPage {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d shown; more with --after %s (or --all)\n", len(p.Events), p.TotalCount, p.Last.EndCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&types, "types", nil, "only these event types (comma-separated), e.g. phase_changed,pod_crashed")
	f.IntVar(&first, "first", 100, "page size, 1 to 1000")
	f.StringVar(&after, "after", "", "start after this cursor (a page's end cursor)")
	f.BoolVar(&all, "all", false, "follow the pages to the end")
	_ = cmd.RegisterFlagCompletionFunc("types", fixedCompletion([]string{
		"task_created", "task_completed", "task_cancelled", "phase_changed", "pod_started", "pod_stopped",
		"pod_crashed", "pod_restart_scheduled", "pod_restart_limit_reached", "pod_lost", "pod_reattached", "pod_output"}))
	return cmd
}

// taskEventsQuery subscribes to a task's events after a version, or to
// live ones only when after < 0.
func taskEventsQuery(id string, after int) (string, map[string]any) {
	vars := map[string]any{"id": id}
	if after < 0 {
		return docTaskEventsLive, vars
	}
	vars["after"] = after
	return docTaskEventsAfter, vars
}

// follow runs one subscription until SIGINT or SIGTERM, until the server
// completes it, or until handle says stop; all three end cleanly (complete,
// then a normal close) and return nil. ready, when set, runs once the
// subscription is sent.
func follow(cmd *cobra.Command, c *client.Client, query string, vars map[string]any, ready func(), handle func(data json.RawMessage) (stop bool, err error)) error {
	ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	sub, err := c.Subscribe(ctx, query, vars)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer sub.Close()
	if ready != nil {
		ready()
	}
	for {
		data, err := sub.Next(ctx)
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF):
			return sub.Close()
		case err != nil:
			return err
		}
		stop, err := handle(data)
		if err != nil {
			return err
		}
		if stop {
			return sub.Close()
		}
	}
}

func closedStatus(s string) bool { return s == "COMPLETED" || s == "CANCELLED" }

func newTaskLogsCommand(o *taskOptions) *cobra.Command {
	var followFlag bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print what the task's pod wrote (pod_output); -f follows it live",
		Long: `Prints the lines the task's pod wrote, from its pod_output events, in order:
stdout lines on stdout, stderr lines on stderr. With -f it then follows new
lines live (a taskEvents subscription after the last version seen) until
the pod ends (stopped, crashed with no automatic restart, or failed at its
restart limit), the task is completed or cancelled, or Ctrl-C or SIGTERM. A
pod that has already ended prints its lines and returns at once.

With -o json: the stored pod_output events as one JSON document; with -f,
one {"taskEvents": EVENT} object per line, stored ones first.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id, err := resolveID(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			p, err := fetchEvents(cmd.Context(), c, id, []string{"pod_output"}, 1000, "", true)
			if err != nil {
				return err
			}
			if o.json() && !followFlag {
				return writeJSONValue(cmd.OutOrStdout(), p.document())
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			emit := func(e apiEvent, raw json.RawMessage) error {
				if o.json() {
					return writeJSONLine(stdout, raw)
				}
				lines, dropped := e.outputLines()
				for _, l := range lines {
					w := stdout
					if l.Stream == "stderr" {
						w = stderr
					}
					if _, err := fmt.Fprintln(w, l.Text); err != nil {
						return err
					}
				}
				if dropped > 0 {
					fmt.Fprintf(stderr, "[%d lines dropped]\n", dropped)
				}
				return nil
			}
			last := 0
			for i, e := range p.Events {
				var edge struct{ Node json.RawMessage }
				_ = json.Unmarshal(p.Edges[i], &edge)
				if err := emit(e, mustJSON(map[string]json.RawMessage{"taskEvents": edge.Node})); err != nil {
					return err
				}
				last = e.Version
			}
			if !followFlag || closedStatus(p.Status) || podEnded(p.PodState, p.AutoRestart) {
				return nil
			}
			query, vars := taskEventsQuery(id, last)
			return follow(cmd, c, query, vars, nil, func(data json.RawMessage) (bool, error) {
				var out struct{ TaskEvents apiEvent }
				if err := json.Unmarshal(data, &out); err != nil {
					return false, err
				}
				switch out.TaskEvents.Type {
				case "pod_output":
					return false, emit(out.TaskEvents, data)
				case "task_completed", "task_cancelled":
					return true, nil
				case "pod_stopped":
					// The pod ended, unless it was stopped to be started
					// again: by restartPod, on another instance, or by
					// this one when it is back.
					var d struct{ Reason string }
					_ = json.Unmarshal(out.TaskEvents.Data, &d)
					return d.Reason != "restart" && d.Reason != "handoff" && d.Reason != "server_shutdown", nil
				case "pod_restart_limit_reached":
					return true, nil
				case "pod_crashed":
					// Without automatic restarts nothing follows a crash;
					// with them a restart is scheduled or the limit is
					// reached, each an event of its own.
					return !p.AutoRestart, nil
				}
				return false, nil
			})
		},
	}
	cmd.Flags().BoolVarP(&followFlag, "follow", "f", false, "follow new lines live until the pod ends, the task closes, or Ctrl-C")
	return cmd
}

// podEnded reports whether a pod in state has ended for good: nothing will
// restart it unless a person does.
func podEnded(state string, autoRestart bool) bool {
	switch state {
	case "STOPPED", "FAILED":
		return true
	case "CRASHED":
		return !autoRestart
	}
	return false
}

func mustJSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return raw
}

func newTaskWatchCommand(o *taskOptions) *cobra.Command {
	var (
		afterVersion           int
		statuses, phases       []string
		runtime, titleContains string
	)
	cmd := &cobra.Command{
		Use:   "watch [ID]",
		Short: "Follow one task's events live, or (without ID) every task change",
		Long: `With an ID, prints the task's events as they are committed (a taskEvents
subscription; --after-version N replays the stored ones after version N
first, 0 for all). Without one, prints each task's new view whenever it
changes (a taskChanged subscription), narrowed by the filter flags.

Runs until Ctrl-C or SIGTERM, then ends the subscription cleanly and exits 0.
With -o json, every result is one JSON object per line, as the subscription
delivers it: {"taskEvents": EVENT} or {"taskChanged": TASK}.`,
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if len(args) == 1 {
				if len(statuses)+len(phases) > 0 || runtime != "" || titleContains != "" {
					return usageError("the filter flags apply to watch without an ID")
				}
				// A subscription to a task that does not exist would just
				// stay silent: ask first, for a clear NOT_FOUND.
				id, err := resolveID(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				data, err := c.Do(cmd.Context(), docTaskVersion, map[string]any{"id": id})
				if err != nil {
					return err
				}
				var t struct{ Task *struct{ Version int } }
				if err := json.Unmarshal(data, &t); err != nil {
					return err
				}
				if t.Task == nil {
					return notFound(args[0])
				}
				after := -1
				if cmd.Flags().Changed("after-version") {
					after = afterVersion
				}
				query, vars := taskEventsQuery(id, after)
				return follow(cmd, c, query, vars, func() {
					fmt.Fprintf(stderr, "watching task %s (version %d); Ctrl-C to stop\n", id, t.Task.Version)
				}, func(data json.RawMessage) (bool, error) {
					if o.json() {
						return false, writeJSONLine(stdout, data)
					}
					var out struct{ TaskEvents apiEvent }
					if err := json.Unmarshal(data, &out); err != nil {
						return false, err
					}
					_, err := fmt.Fprintln(stdout, eventLine(out.TaskEvents))
					return false, err
				})
			}
			if cmd.Flags().Changed("after-version") {
				return usageError("--after-version needs a task ID")
			}
			filter := map[string]any{}
			if len(statuses) > 0 {
				s, err := enumValues("--status", statuses, taskStatuses)
				if err != nil {
					return err
				}
				filter["status"] = s
			}
			if len(phases) > 0 {
				p, err := enumValues("--phase", phases, taskPhases)
				if err != nil {
					return err
				}
				filter["phase"] = p
			}
			if runtime != "" {
				filter["runtime"] = runtime
			}
			if titleContains != "" {
				filter["titleContains"] = titleContains
			}
			return follow(cmd, c, docTaskChanged, map[string]any{"filter": filter}, func() {
				fmt.Fprintln(stderr, "watching task changes; Ctrl-C to stop")
			}, func(data json.RawMessage) (bool, error) {
				if o.json() {
					return false, writeJSONLine(stdout, data)
				}
				var out struct{ TaskChanged apiTask }
				if err := json.Unmarshal(data, &out); err != nil {
					return false, err
				}
				_, err := fmt.Fprintln(stdout, taskLine(out.TaskChanged))
				return false, err
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&afterVersion, "after-version", 0, "with ID: first replay the stored events after this version (0: all)")
	f.StringSliceVar(&statuses, "status", nil, "without ID: only tasks in these statuses")
	f.StringSliceVar(&phases, "phase", nil, "without ID: only tasks in these phases")
	f.StringVar(&runtime, "runtime", "", "without ID: only tasks of this runtime")
	f.StringVar(&titleContains, "title-contains", "", "without ID: only titles containing this")
	_ = cmd.RegisterFlagCompletionFunc("status", fixedCompletion(taskStatuses))
	_ = cmd.RegisterFlagCompletionFunc("phase", fixedCompletion(taskPhases))
	return cmd
}
