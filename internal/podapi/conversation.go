package podapi

import (
	"context"
	"errors"

	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// AutoKeyPrefix starts the key the SDK gives an ask made without one; the
// server takes such an ask as unkeyed (ipa.Unkeyed).
const AutoKeyPrefix = ipa.AutoKeyPrefix

// ErrUnsupported is returned by a plugin-side call the connected host does
// not know (a server older than the protocol version that added it).
var ErrUnsupported = errors.New("podapi: the host does not support this call")

// Message is one message a person sent to the task (protocol version 3).
type Message struct {
	ID     string
	Text   string
	Data   []byte // JSON; nil when none
	SentBy string
	SentAt time.Time
}

// AskRequest is a question for a person (protocol version 3).
type AskRequest struct {
	Key     string // the runtime's name for the request; "" makes a new one per call (but see ipa.Unkeyed)
	Kind    string // QUESTION, APPROVAL or CHOICE
	Prompt  string
	Options []string
	Timeout time.Duration // 0: no expiry
}

// AskResponse is how a request ended.
type AskResponse struct {
	RequestID  string
	State      string // ANSWERED, EXPIRED or CANCELLED
	Answer     string
	Approved   *bool // set for an approval's answer
	Comment    string
	AnsweredBy string
}

// Conversing is the part of Host added in protocol version 3: messages in,
// questions out. The server's Host implements it; the plugin's handle does
// too, and answers ErrUnsupported when the connected server is older.
type Conversing interface {
	// Messages calls fn with each unacknowledged message, oldest first, then
	// with each new one, until ctx ends or fn fails.
	Messages(ctx context.Context, fn func(Message) error) error
	// AckMessage records that the runtime has the message.
	AckMessage(ctx context.Context, messageID string) error
	// Ask records the request (once per key) and waits for its end.
	Ask(ctx context.Context, req AskRequest) (AskResponse, error)
}

func (s *hostServer) conversing() (Conversing, error) {
	c, ok := s.impl.(Conversing)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this host does not hold conversations")
	}
	return c, nil
}

func (s *hostServer) Messages(req *pb.MessagesRequest, stream pb.Host_MessagesServer) error {
	if err := s.check(req.GetTaskId()); err != nil {
		return err
	}
	c, err := s.conversing()
	if err != nil {
		return err
	}
	err = c.Messages(stream.Context(), func(m Message) error {
		return stream.Send(&pb.Message{Id: m.ID, Text: m.Text, Data: m.Data, SentBy: m.SentBy, SentAtUnixNano: m.SentAt.UnixNano()})
	})
	if err != nil && stream.Context().Err() == nil {
		return toStatus(err, "")
	}
	return nil
}

func (s *hostServer) AckMessage(ctx context.Context, req *pb.AckMessageRequest) (*pb.AckMessageResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	c, err := s.conversing()
	if err != nil {
		return nil, err
	}
	if err := c.AckMessage(ctx, req.GetMessageId()); err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.AckMessageResponse{}, nil
}

func (s *hostServer) Ask(ctx context.Context, req *pb.AskRequest) (*pb.AskResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	c, err := s.conversing()
	if err != nil {
		return nil, err
	}
	resp, err := c.Ask(ctx, AskRequest{Key: req.GetKey(), Kind: req.GetKind(), Prompt: req.GetPrompt(),
		Options: req.GetOptions(), Timeout: time.Duration(req.GetTimeoutNanos())})
	if err != nil {
		return nil, toStatus(err, "")
	}
	out := &pb.AskResponse{RequestId: resp.RequestID, State: resp.State, Answer: resp.Answer,
		Comment: resp.Comment, AnsweredBy: resp.AnsweredBy}
	if resp.Approved != nil {
		out.HasApproved, out.Approved = true, *resp.Approved
	}
	return out, nil
}

// hostError maps a failed plugin-side conversation call.
func hostError(ctx context.Context, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return ErrUnsupported
	}
	e, _ := fromStatus(ctx, err, ErrHostUnavailable)
	return e
}

// Messages streams messages from the host (no deadline of its own: it
// lasts as long as ctx). It returns ErrHostUnavailable when the host goes
// away; call it again after the host is back (Attach).
func (h *hostHandle) Messages(ctx context.Context, fn func(Message) error) error {
	rpc, task, err := h.client()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpc.Messages(cctx, &pb.MessagesRequest{TaskId: task})
	if err != nil {
		return hostError(ctx, err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return hostError(ctx, err)
		}
		msg := Message{ID: m.GetId(), Text: m.GetText(), Data: m.GetData(), SentBy: m.GetSentBy(), SentAt: time.Unix(0, m.GetSentAtUnixNano()).UTC()}
		if len(msg.Data) == 0 {
			msg.Data = nil
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
}

// AckMessage acknowledges a message.
func (h *hostHandle) AckMessage(ctx context.Context, messageID string) error {
	rpc, task, err := h.client()
	if err != nil {
		return err
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	if _, err := rpc.AckMessage(cctx, &pb.AckMessageRequest{TaskId: task, MessageId: messageID}); err != nil {
		return hostError(ctx, err)
	}
	return nil
}

// Ask asks once; it waits as long as ctx allows. The SDK asks again (same
// key) when the host was unavailable.
func (h *hostHandle) Ask(ctx context.Context, req AskRequest) (AskResponse, error) {
	rpc, task, err := h.client()
	if err != nil {
		return AskResponse{}, err
	}
	resp, err := rpc.Ask(ctx, &pb.AskRequest{TaskId: task, Key: req.Key, Kind: req.Kind, Prompt: req.Prompt,
		Options: req.Options, TimeoutNanos: int64(req.Timeout)})
	if err != nil {
		return AskResponse{}, hostError(ctx, err)
	}
	out := AskResponse{RequestID: resp.GetRequestId(), State: resp.GetState(), Answer: resp.GetAnswer(),
		Comment: resp.GetComment(), AnsweredBy: resp.GetAnsweredBy()}
	if resp.GetHasApproved() {
		a := resp.GetApproved()
		out.Approved = &a
	}
	return out, nil
}

var (
	_ Conversing = (*hostHandle)(nil)
)

// Usage is what the work used since its last report (protocol version 3).
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	CostMicros   int64
}

// UsageReporting is the part of Host that records usage (protocol version
// 3); the server's Host implements it, and the plugin's handle answers
// ErrUnsupported when the connected server is older.
type UsageReporting interface {
	ReportUsage(ctx context.Context, u Usage) error
}

func (s *hostServer) ReportUsage(ctx context.Context, req *pb.UsageRequest) (*pb.UsageResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	r, ok := s.impl.(UsageReporting)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this host does not record usage")
	}
	if err := r.ReportUsage(ctx, Usage{InputTokens: req.GetInputTokens(), OutputTokens: req.GetOutputTokens(), CostMicros: req.GetCostMicros()}); err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.UsageResponse{}, nil
}

// ReportUsage sends a usage report to the host.
func (h *hostHandle) ReportUsage(ctx context.Context, u Usage) error {
	rpc, task, err := h.client()
	if err != nil {
		return err
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	if _, err := rpc.ReportUsage(cctx, &pb.UsageRequest{TaskId: task, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CostMicros: u.CostMicros}); err != nil {
		return hostError(ctx, err)
	}
	return nil
}

var _ UsageReporting = (*hostHandle)(nil)
