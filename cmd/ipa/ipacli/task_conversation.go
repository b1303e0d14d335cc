package ipacli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

var requestStates = []string{"PENDING", "ANSWERED", "EXPIRED", "CANCELLED"}

// newTaskSendCommand is `ipa task send ID TEXT`: sendMessage.
func newTaskSendCommand(o *taskOptions) *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:               "send ID TEXT",
		Short:             "Send a message to the task's pod (delivered now, or at its next start)",
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars := map[string]any{"id": args[0], "text": args[1]}
			if cmd.Flags().Changed("data") {
				raw, err := jsonFlag("--data", data)
				if err != nil {
					return err
				}
				vars["data"] = raw
			}
			expectedVersion(cmd, vars)
			return o.run(cmd, docSendMessage, vars,
				func(raw json.RawMessage) error {
					var out struct {
						SendMessage struct {
							Message struct{ ID, SentAt string }
						}
					}
					if err := json.Unmarshal(raw, &out); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "message %s sent\n", out.SendMessage.Message.ID)
					return nil
				})
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "JSON sent with the text")
	addExpectedVersion(cmd.Flags())
	return cmd
}

// newTaskAnswerCommand is `ipa task answer REQUEST [TEXT]`: answerRequest.
func newTaskAnswerCommand(o *taskOptions) *cobra.Command {
	var approve, reject bool
	var comment string
	cmd := &cobra.Command{
		Use:   "answer REQUEST [TEXT]",
		Short: "Answer a pod's request: TEXT for a question or a choice, --approve or --reject for an approval",
		Args:  usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars := map[string]any{"r": args[0]}
			if len(args) == 2 {
				vars["answer"] = args[1]
			}
			switch {
			case approve && reject:
				return usageError("--approve and --reject do not go together")
			case approve:
				vars["approve"] = true
			case reject:
				vars["approve"] = false
			}
			if cmd.Flags().Changed("comment") {
				vars["comment"] = comment
			}
			return o.run(cmd, docAnswerRequest, vars,
				func(raw json.RawMessage) error {
					var out struct {
						AnswerRequest struct {
							Request struct {
								ID, Kind, State string
								AnsweredBy      *string
							}
						}
					}
					if err := json.Unmarshal(raw, &out); err != nil {
						return err
					}
					r := out.AnswerRequest.Request
					fmt.Fprintf(cmd.OutOrStdout(), "request %s: %s\n", r.ID, r.State)
					return nil
				})
		},
	}
	cmd.Flags().BoolVar(&approve, "approve", false, "approve an APPROVAL request")
	cmd.Flags().BoolVar(&reject, "reject", false, "reject an APPROVAL request")
	cmd.Flags().StringVar(&comment, "comment", "", "a comment recorded with the answer")
	return cmd
}

// newInboxCommand is `ipa inbox`: the requests waiting for people, across
// tasks.
func newInboxCommand() *cobra.Command {
	o := &taskOptions{}
	var state string
	var first int
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "List the requests pods made to people, across tasks (pending ones by default)",
		Long: `Lists the input requests of every task's runtime, oldest first: pending ones
by default (--state). Answer one with ipa task answer REQUEST.

` + taskExitCodes,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := enumValue("--state", state, requestStates)
			if err != nil {
				return err
			}
			return o.run(cmd, docInputRequests,
				map[string]any{"s": st, "first": first}, func(raw json.RawMessage) error {
					var out struct {
						InputRequests struct {
							Edges []struct {
								Node struct {
									ID, Kind, Prompt, State, CreatedAt string
									Options                            []string
									ExpiresAt                          *string
									Task                               struct{ ID, Title string }
								}
							}
						}
					}
					if err := json.Unmarshal(raw, &out); err != nil {
						return err
					}
					w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "REQUEST\tTASK\tKIND\tPROMPT\tASKED\tEXPIRES")
					for _, e := range out.InputRequests.Edges {
						n := e.Node
						prompt := n.Prompt
						if len(n.Options) > 0 {
							prompt += " [" + strings.Join(n.Options, "|") + "]"
						}
						exp := "-"
						if n.ExpiresAt != nil {
							exp = ago(*n.ExpiresAt)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.Task.ID, n.Kind, cell(prompt, 60), ago(n.CreatedAt), exp)
					}
					return w.Flush()
				})
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: ExitUsage, err: err} })
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "http://127.0.0.1:8080", "server URL (or host:port, or unix:///path of the server's --socket)")
	f.StringVar(&o.token, "token", "", "API token, sent as Authorization: Bearer (prefer IPA_TOKEN)")
	f.StringVar(&o.context, "context", "", "use this context's server and token (see ipa context)")
	o.flags = f
	_ = cmd.RegisterFlagCompletionFunc("context", contextCompletion)
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "how long the request may take")
	f.StringVar(&state, "state", "PENDING", "requests in this state: "+strings.Join(requestStates, ", "))
	f.IntVar(&first, "first", 100, "at most this many, 1 to 1000")
	_ = cmd.RegisterFlagCompletionFunc("state", fixedCompletion(requestStates))
	return cmd
}

// ago shows an RFC 3339 instant as it is (UTC, to the second).
func ago(at string) string {
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return at
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// cell keeps a table cell on one line and at most n runes.
func cell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
