// Command chatty is a runtime of the SDK's own tests that holds a
// conversation: it writes every message it receives as an output line
// "got: <text>", and with runtimeConfig {"ask": {...}} asks once (under the
// key "q") and writes how the request ended as "answer: <state> <text>
// approved=<bool> by=<actor>"; with {"usageEveryMs": N} it reports usage
// every N ms. It runs until stopped.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
)

type askConfig struct {
	Kind      string   `json:"kind"`
	Prompt    string   `json:"prompt"`
	Options   []string `json:"options"`
	TimeoutMs int      `json:"timeoutMs"`
}

type config struct {
	Ask *askConfig `json:"ask"`
	// UsageEveryMs, when set, reports 20 input tokens, 10 output tokens and
	// 5 micros of cost at this interval.
	UsageEveryMs int `json:"usageEveryMs"`
	// AskLoop, when set, asks this many questions one after the other
	// (keys loop-1, loop-2, …) and writes "answered <i> <unix nanos>" when
	// each call returns: the answer latency as the runtime sees it.
	AskLoop int `json:"askLoop"`
}

type chatty struct {
	mu     sync.Mutex
	taskID string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *chatty) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{Description: "Writes the messages it gets; asks what its config says."}, nil
}

func (c *chatty) Start(_ context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	var cfg config
	if len(req.RuntimeConfig) > 0 {
		if err := json.Unmarshal(req.RuntimeConfig, &cfg); err != nil {
			return pod.StartResponse{}, pod.Errorf(pod.CodeInvalid, pod.ReasonInvalidArgument, "chatty config: %v", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.taskID = req.TaskID
	c.ctx, c.cancel = context.WithCancel(context.Background())
	host := req.Host
	conv := req.Host.(pod.Conversing)
	c.wg.Go(func() {
		err := conv.Messages(c.ctx, func(m pod.Message) error {
			return say(c.ctx, host, "got: "+m.Text)
		})
		pod.Logger().Info("messages ended", "err", err)
	})
	if cfg.UsageEveryMs > 0 {
		c.wg.Go(func() {
			rep := req.Host.(pod.UsageReporter)
			t := time.NewTicker(time.Duration(cfg.UsageEveryMs) * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-c.ctx.Done():
					return
				case <-t.C:
					_ = rep.ReportUsage(c.ctx, pod.Usage{InputTokens: 20, OutputTokens: 10, CostMicros: 5})
				}
			}
		})
	}
	if cfg.AskLoop > 0 {
		c.wg.Go(func() {
			for i := 1; i <= cfg.AskLoop; i++ {
				if _, err := conv.Ask(c.ctx, pod.AskRequest{Key: fmt.Sprintf("loop-%d", i), Prompt: fmt.Sprintf("loop %d", i)}); err != nil {
					return
				}
				at := time.Now().UnixNano()
				if say(c.ctx, host, fmt.Sprintf("answered %d %d", i, at)) != nil {
					return
				}
			}
		})
	}
	if cfg.Ask != nil {
		c.wg.Go(func() {
			a, err := conv.Ask(c.ctx, pod.AskRequest{Key: "q", Kind: cfg.Ask.Kind, Prompt: cfg.Ask.Prompt,
				Options: cfg.Ask.Options, Timeout: time.Duration(cfg.Ask.TimeoutMs) * time.Millisecond})
			if err != nil {
				_ = say(c.ctx, host, "ask failed: "+err.Error())
				return
			}
			_ = say(c.ctx, host, fmt.Sprintf("answer: %s %s approved=%t by=%s", a.State, a.Text, a.Approved, a.AnsweredBy))
		})
	}
	return pod.StartResponse{}, nil
}

// say writes one output line, waiting out a restarting server.
func say(ctx context.Context, host pod.Host, line string) error {
	for {
		// A long deadline: a call that timed out on a busy machine but was
		// recorded would be written twice by the retry.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := host.Output(cctx, pod.OutputRequest{Lines: []pod.OutputLine{{Stream: pod.Stdout, Text: line}}})
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *chatty) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return pod.AttachResponse{TaskID: c.taskID}, nil
}

func (c *chatty) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return pod.StateResponse{TaskID: c.taskID, Running: c.taskID != ""}, nil
}

func (c *chatty) Stop(context.Context, pod.StopRequest) (pod.StopResponse, error) {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	return pod.StopResponse{}, nil
}

func main() { pod.Serve(&chatty{}) }
