package ipacli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/podsock"
)

// Exit codes of `ipa pod ask`.
const (
	askApproved  = 0
	askRejected  = 1
	askExpired   = 2
	askCancelled = 3
	askFailed    = 4
)

// newPodCommand is `ipa pod`: what a command running in an exec pod uses to
// talk to people, through the pod's socket ($IPA_POD_SOCKET).
func newPodCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "pod",
		Short: "Inside an exec pod: ask a person, read the messages sent to the task",
		Long: `Commands for a program running in an exec pod. They talk to the task's
server through the pod's socket, named by $IPA_POD_SOCKET (set for every exec
pod's command, with the ipa binary at $IPA_BIN).`,
	}
	c.AddCommand(newPodAskCommand(), newPodMessagesCommand())
	return c
}

func podSocket() (string, error) {
	p := os.Getenv(podsock.Env)
	if p == "" {
		return "", &exitError{code: askFailed, err: errors.New("IPA_POD_SOCKET is not set: `ipa pod` runs inside an exec pod")}
	}
	return p, nil
}

func newPodAskCommand() *cobra.Command {
	var approval bool
	var choices []string
	var timeout time.Duration
	var key string
	c := &cobra.Command{
		Use:   "ask [--approval | --choice A --choice B] [--timeout D] [--key K] TEXT",
		Short: "Ask a person and wait for the answer",
		Long: `Asks a person (the request shows in the task's pendingRequests, the inbox,
live feeds and webhooks) and waits for the answer.

A question prints the answer. With --approval, the exit status says it: 0
approved, 1 rejected. With --choice (twice or more), the chosen option is
printed. In every kind: 2 when the request expired (--timeout), 3 when it was
cancelled (the task closed), 4 on an error.

--key names the request: asking again with the same key (after the pod
restarted) waits for the same request, or prints the answer given meanwhile.
Without --key, a pod restarted while its command asked (or before anyone
answered) that asks the same again (same kind, text and choices) waits for
the earlier request too, or gets the answer given while the pod was down;
an answer a run of the pod already got is not reused: started again, the
command asks anew.`,
		Args:          cobra.ExactArgs(1),
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := podSocket()
			if err != nil {
				return err
			}
			req := podsock.Request{Op: "ask", Kind: "QUESTION", Prompt: args[0], Key: key, TimeoutMs: timeout.Milliseconds()}
			switch {
			case approval && len(choices) > 0:
				return &exitError{code: askFailed, err: errors.New("--approval and --choice do not go together")}
			case approval:
				req.Kind = "APPROVAL"
			case len(choices) > 0:
				req.Kind, req.Options = "CHOICE", choices
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			conn, dec, err := podsock.Call(ctx, path, req)
			if err != nil {
				return &exitError{code: askFailed, err: fmt.Errorf("pod socket: %w", err)}
			}
			defer conn.Close()
			go func() { <-ctx.Done(); _ = conn.Close() }()
			var a podsock.Answer
			if err := dec.Decode(&a); err != nil {
				return &exitError{code: askFailed, err: fmt.Errorf("pod socket: %w", err)}
			}
			if a.Error != "" {
				return &exitError{code: askFailed, err: errors.New(a.Error)}
			}
			out := cmd.OutOrStdout()
			switch a.State {
			case "EXPIRED":
				return &exitError{code: askExpired, err: errors.New("the request expired unanswered")}
			case "CANCELLED":
				return &exitError{code: askCancelled, err: errors.New("the request was cancelled: the task closed")}
			}
			if req.Kind == "APPROVAL" {
				if a.Answer != "" {
					fmt.Fprintln(out, a.Answer)
				}
				if !a.Approved {
					return &exitError{code: askRejected, err: errors.New("rejected by " + a.AnsweredBy + commentOf(a.Comment))}
				}
				return nil
			}
			fmt.Fprintln(out, a.Answer)
			return nil
		},
	}
	c.Flags().BoolVar(&approval, "approval", false, "ask for an approval: exit 0 when approved, 1 when rejected")
	c.Flags().StringArrayVar(&choices, "choice", nil, "an option to choose from (repeat); the chosen one is printed")
	c.Flags().DurationVar(&timeout, "timeout", 0, "expire the request after this long (exit 2); 0: never")
	c.Flags().StringVar(&key, "key", "", "the request's name within the task (asking again waits for the same request)")
	return c
}

func commentOf(c string) string {
	if c == "" {
		return ""
	}
	return ": " + strings.TrimSpace(c)
}

func newPodMessagesCommand() *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "messages [--follow]",
		Short: "Print the messages sent to the task, one JSON object a line",
		Long: `Prints the messages sent to the task that this pod's command has not read
yet, oldest first, one JSON object a line ({"id", "text", "data", "sentBy",
"sentAt"}). Each message is printed once per pod run. With --follow, waits for
new ones until interrupted.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := podSocket()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			conn, dec, err := podsock.Call(ctx, path, podsock.Request{Op: "messages", Follow: follow})
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("pod socket: %w", err)}
			}
			defer conn.Close()
			go func() { <-ctx.Done(); _ = conn.Close() }()
			enc := json.NewEncoder(cmd.OutOrStdout())
			for {
				var m json.RawMessage
				if err := dec.Decode(&m); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return nil // the pod closed the stream (end of the backlog, or it stops)
				}
				var e podsock.Answer
				if json.Unmarshal(m, &e) == nil && e.Error != "" {
					return &exitError{code: 1, err: errors.New(e.Error)}
				}
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep waiting for new messages")
	return c
}
