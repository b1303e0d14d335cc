package ipacli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ipa-dev/ipa/internal/client"
)

// Exit codes of `ipa task`, one per class of the contract's error codes
// (printed in the commands' help, and asserted by the process tests).
const (
	ExitFailure     = 1 // anything else: INTERNAL_SERVER_ERROR, an unexpected answer
	ExitUsage       = 2 // bad flags or arguments; nothing was sent
	ExitBadInput    = 3 // BAD_USER_INPUT, or a request the server could not parse or validate
	ExitNotFound    = 4 // NOT_FOUND, or no task with that id
	ExitConflict    = 5 // CONFLICT
	ExitAuth        = 6 // UNAUTHENTICATED or FORBIDDEN
	ExitUnavailable = 7 // UNAVAILABLE, RATE_LIMITED, or the server cannot be reached
)

const taskExitCodes = `Exit codes:
  0  success (also watch and logs -f ended by Ctrl-C or SIGTERM)
  1  any other failure (INTERNAL_SERVER_ERROR, an unexpected answer)
  2  usage: bad flags or arguments; nothing was sent
  3  BAD_USER_INPUT (also GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED and the query limits)
  4  NOT_FOUND: no task with that id
  5  CONFLICT: e.g. a forbidden phase move, changing a closed task, stop with no pod running
  6  UNAUTHENTICATED or FORBIDDEN: no, bad or revoked token, or a role that may not do it
  7  UNAVAILABLE or RATE_LIMITED, or the server cannot be reached or the connection was lost
Errors print the server's message and code (CODE/REASON) on stderr.`

// apiExitCode maps an error code from the server (or the client) to an exit code.
func apiExitCode(code string) int {
	switch code {
	case client.CodeBadUserInput, "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED",
		"COMPLEXITY_LIMIT_EXCEEDED", "DEPTH_LIMIT_EXCEEDED", "UNSUPPORTED_MEDIA_TYPE", "METHOD_NOT_ALLOWED":
		return ExitBadInput
	case client.CodeNotFound:
		return ExitNotFound
	case "CONFLICT":
		return ExitConflict
	case client.CodeUnauthenticated, client.CodeForbidden:
		return ExitAuth
	case client.CodeUnavailable, client.CodeRateLimited, "REQUEST_TIMEOUT":
		return ExitUnavailable
	}
	return ExitFailure
}

// usageError is a bad flag or argument: exit 2, nothing sent.
func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// usageArgs makes an argument check fail as a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		return nil
	}
}

// taskOptions are the flags every `ipa task` command shares.
type taskOptions struct {
	server  string
	token   string
	context string
	output  string
	timeout time.Duration
	flags   *pflag.FlagSet // the persistent flags above, to tell given from default
}

func (o *taskOptions) client() (*client.Client, error) {
	if o.output != "table" && o.output != "json" {
		return nil, usageError("-o must be table or json, not %q", o.output)
	}
	server, token, err := o.endpoint()
	if err != nil {
		return nil, err
	}
	c, err := client.New(server, token, o.timeout)
	if err != nil {
		return nil, usageError("--server: %v", err)
	}
	return c, nil
}

func (o *taskOptions) json() bool { return o.output == "json" }

// Phases, statuses and output formats, for validation and completion.
var (
	taskPhases   = []string{"SPEC_CLARIFICATION", "PLANNING", "DEVELOPMENT", "REVIEW", "COMPLETED", "CANCELLED"}
	taskStatuses = []string{"ACTIVE", "INACTIVE", "COMPLETED", "CANCELLED"}
	outputs      = []string{"table", "json"}
)

// enumValue normalizes a user-typed enum value (any case, - for _) and
// checks it against the allowed ones.
func enumValue(flag, v string, allowed []string) (string, error) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(v), "-", "_"))
	if !slices.Contains(allowed, n) {
		return "", usageError("%s must be one of %s, not %q", flag, strings.Join(allowed, ", "), v)
	}
	return n, nil
}

func enumValues(flag string, vs []string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range vs {
		n, err := enumValue(flag, v, allowed)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// jsonFlag checks that a flag's value is JSON and returns it as is.
func jsonFlag(flag, v string) (json.RawMessage, error) {
	if !json.Valid([]byte(v)) {
		return nil, usageError("--%s is not valid JSON: %s", flag, v)
	}
	return json.RawMessage(v), nil
}

// labelFlag reads repeated --label KEY=VALUE flags.
func labelFlag(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("--label must be KEY=VALUE, not %q", kv)
		}
		m[k] = v
	}
	return m, nil
}

func newTaskCommand() *cobra.Command {
	o := &taskOptions{}
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, list, drive and watch tasks on a running server",
		Long: `Talks to a running ipa server through its GraphQL API only (HTTP for
queries and mutations, WebSocket for watch and logs -f).

The server is --server (IPA_SERVER), else the current context's (see ipa
context), else http://127.0.0.1:8080; the token is --token (IPA_TOKEN; prefer
the variable, as arguments show in ps), else the context's. Output is a table
for people, or with -o json the GraphQL data object as one JSON document
(watch and logs -f: one JSON object per line) for scripts.

A task ID may be abbreviated to any start of it that names one task
(like 0196f2a0-3b); an abbreviation shared by several tasks is refused with
the list of them.

` + taskExitCodes,
		Example: `  ipa task create "Nightly export" --runtime exec --config '{"command": ["sh", "-c", "./export"]}' --label team=data --start
  ipa task list --status active --label team=data
  ipa task logs -f 0196f2a0-3b
  ipa task cancel 0196f2a0-3b --reason "superseded"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
				}
				return usageError("%s", msg)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.SuggestionsMinimumDistance = 2
	// Flag errors of the task commands are usage errors (exit 2).
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.server, "server", "http://127.0.0.1:8080", "server URL (or host:port, or unix:///path of the server's --socket)")
	pf.StringVar(&o.token, "token", "", "API token, sent as Authorization: Bearer (prefer IPA_TOKEN)")
	pf.StringVar(&o.context, "context", "", "use this context's server and token (see ipa context)")
	o.flags = pf
	_ = cmd.RegisterFlagCompletionFunc("context", contextCompletion)
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&o.timeout, "timeout", time.Minute, "how long one request may take (not watch or logs -f)")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedCompletion(outputs))

	cmd.AddCommand(
		newTaskCreateCommand(o),
		newTaskListCommand(o),
		newTaskGetCommand(o),
		newTaskStartCommand(o),
		newTaskStopCommand(o),
		newTaskRestartCommand(o),
		newTaskMoveCommand(o),
		newTaskCompleteCommand(o),
		newTaskCancelCommand(o),
		newTaskEventsCommand(o),
		newTaskLogsCommand(o),
		newTaskWatchCommand(o),
		newTaskArtifactsCommand(o),
		newTaskDownloadCommand(o),
		newTaskSendCommand(o),
		newTaskAnswerCommand(o),
	)
	for _, c := range cmd.Commands() {
		if c.Long == "" {
			c.Long = c.Short + "."
		}
		c.Long += "\n\nExit codes: see ipa task --help."
		if ex, ok := taskExamples[c.Name()]; ok && c.Example == "" {
			c.Example = ex
		}
	}
	hideServerFlags(cmd)
	return cmd
}

// taskExamples are the Examples sections of the task commands that do not
// set their own.
var taskExamples = map[string]string{
	"list": `  ipa task list
  ipa task list --status active,inactive --phase development
  ipa task list --label team=data --label env=prod -o json
  ipa task list --all --title-contains export`,
	"get": `  ipa task get 0196f2a0-3b        # any unique start of the id
  ipa task get 0196f2a0-3b -o json | jq .task.pod`,
	"start":   `  ipa task start 0196f2a0-3b`,
	"stop":    `  ipa task stop 0196f2a0-3b --reason "maintenance"`,
	"restart": `  ipa task restart 0196f2a0-3b`,
	"move": `  ipa task move 0196f2a0-3b planning
  ipa task move 0196f2a0-3b development --note "plan approved"`,
	"complete": `  ipa task complete 0196f2a0-3b --expected-version 12`,
	"cancel":   `  ipa task cancel 0196f2a0-3b --reason "superseded by the new export"`,
	"events": `  ipa task events 0196f2a0-3b
  ipa task events 0196f2a0-3b --types pod_crashed,pod_restart_scheduled --all`,
	"logs": `  ipa task logs 0196f2a0-3b
  ipa task logs -f 0196f2a0-3b          # until the pod ends
  ipa task logs -f 0196f2a0-3b -o json | jq -r .taskEvents.data.lines[].text`,
	"watch": `  ipa task watch 0196f2a0-3b
  ipa task watch --status active        # every change to an active task`,
}

// serverFlags are the root's flags that only the server and the commands
// on its database read; ipa task talks to a server and never uses them.
var serverFlags = []string{"database", "database-url-file", "create-dirs", "log-level", "log-format"}

// hideServerFlags keeps the root's server-only flags out of the help of cmd
// and its subcommands. They stay accepted (IPA_DATABASE_URL in a shared
// environment must not break the CLI), only unlisted.
func hideServerFlags(cmd *cobra.Command) {
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		for _, name := range serverFlags {
			if f := c.InheritedFlags().Lookup(name); f != nil {
				f.Hidden = true
			}
		}
		c.Root().HelpFunc()(c, args)
	})
}

// ---------------------------------------------------------------- completion

func fixedCompletion(values []string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// taskIDCompletion completes the first argument with the ids of the most
// recently updated tasks (titles as descriptions), asking the server; it
// offers nothing when the server does not answer quickly.
func taskIDCompletion(o *taskOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// Completion runs without the root's pre-run: read IPA_* here.
		if applyEnv(cmd) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		server, token, err := o.endpoint()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := client.New(server, token, 2*time.Second)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		data, err := c.Do(cmd.Context(), docCompletionTasks, nil)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out struct {
			Tasks struct {
				Edges []struct{ Node struct{ ID, Title string } }
			}
		}
		_ = json.Unmarshal(data, &out)
		var ids []cobra.Completion
		for _, e := range out.Tasks.Edges {
			ids = append(ids, cobra.CompletionWithDesc(e.Node.ID, e.Node.Title))
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

// ---------------------------------------------------------------- queries

// run is the body of every one-shot command: one operation, then the data
// object printed as JSON or handed to table.
func (o *taskOptions) run(cmd *cobra.Command, query string, vars map[string]any, table func(data json.RawMessage) error) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	data, err := c.Do(cmd.Context(), query, vars)
	if err != nil {
		return err
	}
	if o.json() {
		return writeJSONDocument(cmd.OutOrStdout(), data)
	}
	return table(data)
}

// notFound is the error for a task query that answered null.
func notFound(id string) error {
	return &client.Error{Code: client.CodeNotFound, Reason: "TASK_NOT_FOUND", Message: fmt.Sprintf("no task with id %q", id)}
}

// expectedVersion adds expectedVersion to vars when the flag was given.
func expectedVersion(cmd *cobra.Command, vars map[string]any) {
	if f := cmd.Flags().Lookup("expected-version"); f != nil && f.Changed {
		v, _ := cmd.Flags().GetInt("expected-version")
		vars["ev"] = v
	}
}

func addExpectedVersion(fs *pflag.FlagSet) {
	fs.Int("expected-version", 0, "refuse (CONFLICT) unless the task's version is this one")
}

func newTaskCreateCommand(o *taskOptions) *cobra.Command {
	var (
		title, description, runtime, config, metadata, idempotencyKey string
		labels, approvals                                             []string
		start                                                         bool
		restartAuto                                                   bool
		maxAttempts                                                   int
		window, initialBackoff, maxBackoff                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [TITLE]",
		Short: "Create a task; prints it, and its id alone on the last line",
		Long: `Creates a task and prints it; in table output the new task's id is alone on
the last line of stdout. The title is --title or the argument.`,
		Example: `  ipa task create "Write the report" --runtime demo --config '{"stepMs": 500}' --start
  id=$(ipa task create --title "Nightly export" --runtime exec --config '{"command": ["sh", "-c", "./export"]}' | tail -n1)`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("title") {
					return usageError("give the title as an argument or with --title, not both")
				}
				title = args[0]
			}
			if !cmd.Flags().Changed("title") && len(args) == 0 {
				return usageError("a title is needed: ipa task create TITLE (or --title)")
			}
			in := map[string]any{"title": title}
			if cmd.Flags().Changed("description") {
				in["description"] = description
			}
			if cmd.Flags().Changed("runtime") {
				in["runtime"] = runtime
			}
			for flag, v := range map[string]string{"config": config, "metadata": metadata} {
				if !cmd.Flags().Changed(flag) {
					continue
				}
				raw, err := jsonFlag(flag, v)
				if err != nil {
					return err
				}
				in[map[string]string{"config": "runtimeConfig", "metadata": "metadata"}[flag]] = raw
			}
			if len(labels) > 0 {
				m, err := labelFlag(labels)
				if err != nil {
					return err
				}
				in["labels"] = m
			}
			if start {
				in["autoStart"] = true
			}
			if len(approvals) > 0 {
				ps, err := enumValues("--approval", approvals, taskPhases)
				if err != nil {
					return err
				}
				in["approvals"] = ps
			}
			if idempotencyKey != "" {
				in["idempotencyKey"] = idempotencyKey
			}
			policy := map[string]any{}
			if cmd.Flags().Changed("restart-auto") {
				policy["autoRestart"] = restartAuto
			}
			if cmd.Flags().Changed("max-attempts") {
				policy["maxAttempts"] = maxAttempts
			}
			if cmd.Flags().Changed("restart-window") {
				policy["windowSeconds"] = int(window / time.Second)
			}
			if cmd.Flags().Changed("initial-backoff") {
				policy["initialBackoffMs"] = int(initialBackoff / time.Millisecond)
			}
			if cmd.Flags().Changed("max-backoff") {
				policy["maxBackoffMs"] = int(maxBackoff / time.Millisecond)
			}
			if len(policy) > 0 {
				in["restartPolicy"] = policy
			}
			return o.run(cmd, docCreateTask,
				map[string]any{"in": in}, func(data json.RawMessage) error {
					var out struct{ CreateTask struct{ Task apiTask } }
					if err := json.Unmarshal(data, &out); err != nil {
						return err
					}
					w := cmd.OutOrStdout()
					if err := printTask(w, out.CreateTask.Task); err != nil {
						return err
					}
					_, err := fmt.Fprintln(w, out.CreateTask.Task.ID)
					return err
				})
		},
	}
	f := cmd.Flags()
	f.StringVar(&title, "title", "", "title, 1 to 255 characters")
	f.StringVar(&description, "description", "", "description")
	f.StringVar(&runtime, "runtime", "", "pod runtime (server default: demo)")
	f.StringVar(&config, "config", "", "runtime config, a JSON object")
	f.StringVar(&metadata, "metadata", "", "free-form metadata, a JSON object")
	f.StringArrayVar(&labels, "label", nil, "a label KEY=VALUE (repeatable; needs a server with task labels)")
	f.BoolVar(&start, "start", false, "start the task's pod right after creating it")
	f.StringArrayVar(&approvals, "approval", nil, "a phase whose entry needs another person's approval (repeatable)")
	f.BoolVar(&start, "auto-start", false, "the same as --start")
	f.StringVar(&idempotencyKey, "idempotency-key", "", "a key repeated by the same actor returns the first task and creates nothing")
	f.BoolVar(&restartAuto, "restart-auto", false, "restart the pod automatically after a crash")
	f.IntVar(&maxAttempts, "max-attempts", 0, "automatic restarts allowed inside --restart-window")
	f.DurationVar(&window, "restart-window", 0, "restart window (whole seconds), e.g. 60s")
	f.DurationVar(&initialBackoff, "initial-backoff", 0, "first back-off delay, e.g. 500ms")
	f.DurationVar(&maxBackoff, "max-backoff", 0, "longest back-off delay, e.g. 30s")
	_ = cmd.RegisterFlagCompletionFunc("runtime", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return []cobra.Completion{"demo", "exec"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func newTaskListCommand(o *taskOptions) *cobra.Command {
	var (
		statuses, phases       []string
		runtime, titleContains string
		after                  string
		labels                 []string
		first                  int
		all                    bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, most recently updated first",
		Long: `Lists tasks matching the filters, most recently updated first, a page of
--first at a time; --after continues after a page's end cursor, and --all
follows the pages to the end.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if len(labels) > 0 {
				m, err := labelFlag(labels)
				if err != nil {
					return err
				}
				filter["labels"] = m
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			vars := map[string]any{"filter": filter, "first": first}
			if after != "" {
				vars["after"] = after
			}
			var page apiTaskPage
			var edges []json.RawMessage
			for {
				data, err := c.Do(cmd.Context(), docListTasks, vars)
				if err != nil {
					return err
				}
				var p struct{ Tasks apiTaskPage }
				if err := json.Unmarshal(data, &p); err != nil {
					return err
				}
				page.Rows = append(page.Rows, p.Tasks.Rows...)
				edges = append(edges, p.Tasks.Edges...)
				page.PageInfo, page.TotalCount = p.Tasks.PageInfo, p.Tasks.TotalCount
				if !all || !page.PageInfo.HasNextPage {
					break
				}
				vars["after"] = page.PageInfo.EndCursor
			}
			if o.json() {
				return writeJSONValue(cmd.OutOrStdout(), map[string]any{"tasks": map[string]any{
					"edges": edges, "pageInfo": page.PageInfo, "totalCount": page.TotalCount}})
			}
			if err := printTaskList(cmd.OutOrStdout(), page); err != nil {
				return err
			}
			if page.PageInfo.HasNextPage {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d shown; more with --after %s (or --all)\n",
					len(page.Rows), page.TotalCount, page.PageInfo.EndCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&statuses, "status", nil, "only these statuses (comma-separated or repeated): "+strings.Join(taskStatuses, ", "))
	f.StringSliceVar(&phases, "phase", nil, "only these phases (comma-separated or repeated): "+strings.Join(taskPhases, ", "))
	f.StringVar(&runtime, "runtime", "", "only tasks of this runtime")
	f.StringVar(&titleContains, "title-contains", "", "only titles containing this (case-insensitive)")
	f.StringArrayVar(&labels, "label", nil, "only tasks with this label KEY=VALUE (repeatable; all must match)")
	f.IntVar(&first, "first", 100, "page size, 1 to 1000")
	f.StringVar(&after, "after", "", "start after this cursor (a page's end cursor)")
	f.BoolVar(&all, "all", false, "follow the pages to the end")
	_ = cmd.RegisterFlagCompletionFunc("status", fixedCompletion(taskStatuses))
	_ = cmd.RegisterFlagCompletionFunc("phase", fixedCompletion(taskPhases))
	return cmd
}

func newTaskGetCommand(o *taskOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "get ID",
		Short:             "Show a task and its pod",
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
			data, err := c.Do(cmd.Context(), docGetTask, map[string]any{"id": id})
			if err != nil {
				return err
			}
			var out struct{ Task *apiTask }
			if err := json.Unmarshal(data, &out); err != nil {
				return err
			}
			if out.Task == nil {
				return notFound(args[0])
			}
			if o.json() {
				return writeJSONDocument(cmd.OutOrStdout(), data)
			}
			return printTask(cmd.OutOrStdout(), *out.Task)
		},
	}
}

// mutationCommand is a command that runs one task mutation (query, a whole
// document from documents.go) whose payload has a task, and prints the task
// (after note, when set).
func mutationCommand(o *taskOptions, use, short, field, query string, vars func(cmd *cobra.Command, args []string) (map[string]any, error), note func(payload json.RawMessage) string) *cobra.Command {
	nargs := len(strings.Fields(use)) - 1
	cmd := &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              usageArgs(cobra.ExactArgs(nargs)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := vars(cmd, args)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if v["id"], err = resolveID(cmd.Context(), c, args[0]); err != nil {
				return err
			}
			expectedVersion(cmd, v)
			return o.run(cmd, query, v, func(data json.RawMessage) error {
				var out map[string]json.RawMessage
				if err := json.Unmarshal(data, &out); err != nil {
					return err
				}
				var p struct{ Task apiTask }
				if err := json.Unmarshal(out[field], &p); err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if note != nil {
					fmt.Fprintln(w, note(out[field]))
				}
				return printTask(w, p.Task)
			})
		},
	}
	addExpectedVersion(cmd.Flags())
	return cmd
}

func noVars(*cobra.Command, []string) (map[string]any, error) { return map[string]any{}, nil }

func newTaskStartCommand(o *taskOptions) *cobra.Command {
	return mutationCommand(o, "start ID", "Start the task's pod (nothing happens when one runs)", "startPod",
		docStartPod,
		noVars, func(p json.RawMessage) string {
			var s struct{ Started bool }
			_ = json.Unmarshal(p, &s)
			if s.Started {
				return "pod started"
			}
			return "a pod was already running; nothing changed"
		})
}

func newTaskStopCommand(o *taskOptions) *cobra.Command {
	var reason string
	cmd := mutationCommand(o, "stop ID", "Stop the task's pod gracefully (forcibly after a timeout)", "stopPod",
		docStopPod,
		func(cmd *cobra.Command, _ []string) (map[string]any, error) {
			v := map[string]any{}
			if cmd.Flags().Changed("reason") {
				v["reason"] = reason
			}
			return v, nil
		}, nil)
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on pod_stopped")
	return cmd
}

func newTaskRestartCommand(o *taskOptions) *cobra.Command {
	return mutationCommand(o, "restart ID", "Stop the task's pod if it runs, then start it (clears FAILED)", "restartPod",
		docRestartPod,
		noVars, nil)
}

func newTaskMoveCommand(o *taskOptions) *cobra.Command {
	var note string
	cmd := mutationCommand(o, "move ID PHASE", "Move the task one phase forward, or one back for rework", "transitionPhase",
		docTransitionPhase,
		func(cmd *cobra.Command, args []string) (map[string]any, error) {
			to, err := enumValue("PHASE", args[1], taskPhases)
			if err != nil {
				return nil, err
			}
			v := map[string]any{"to": to}
			if cmd.Flags().Changed("note") {
				v["note"] = note
			}
			return v, nil
		}, nil)
	cmd.Flags().StringVar(&note, "note", "", "a note recorded on phase_changed")
	cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, s string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 1 {
			return taskPhases, cobra.ShellCompDirectiveNoFileComp
		}
		return taskIDCompletion(o)(cmd, args, s)
	}
	return cmd
}

func newTaskCompleteCommand(o *taskOptions) *cobra.Command {
	return mutationCommand(o, "complete ID", "Close the task as completed (stops a running pod first)", "completeTask",
		docCompleteTask,
		noVars, nil)
}

func newTaskCancelCommand(o *taskOptions) *cobra.Command {
	var reason string
	cmd := mutationCommand(o, "cancel ID", "Close the task as cancelled (stops a running pod first); --reason is required", "cancelTask",
		docCancelTask,
		func(cmd *cobra.Command, _ []string) (map[string]any, error) {
			if !cmd.Flags().Changed("reason") {
				return nil, usageError("--reason is required")
			}
			return map[string]any{"reason": reason}, nil
		}, nil)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required), recorded on task_cancelled")
	return cmd
}
