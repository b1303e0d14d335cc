package podapi

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// runtimeServer is the plugin side of Runtime: it serves impl to the host and
// keeps the task's Host handle pointed at the current host.
type runtimeServer struct {
	pb.UnimplementedRuntimeServer
	impl   Runtime
	broker *plugin.GRPCBroker
	host   *hostHandle
}

func newRuntimeServer(impl Runtime, broker *plugin.GRPCBroker) *runtimeServer {
	return &runtimeServer{impl: impl, broker: broker, host: &hostHandle{}}
}

func (s *runtimeServer) Start(ctx context.Context, req *pb.StartRequest) (*pb.StartResponse, error) {
	if req.GetTaskId() == "" {
		return nil, toStatus(ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "StartRequest.TaskID is required."), "")
	}
	if t := s.host.task(); t != "" {
		return nil, toStatus(ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidArgument, "This plugin already runs task %s.", t), "")
	}
	// Dial is lazy: it waits (up to 5 s) for the host's broker address only.
	conn, err := s.broker.DialWithOptions(req.GetHostBrokerId(), pluginDialOption())
	if err != nil {
		return nil, toStatus(fmt.Errorf("dial host service: %w", err), "")
	}
	s.host.bind(req.GetTaskId(), conn)
	// Also proves logging survives a vanished host (stderr gives EPIPE).
	Logger().Info("starting work", "task", req.GetTaskId(), "attempt", req.GetAttempt())
	_, err = s.impl.Start(ctx, StartRequest{
		TaskID:        req.GetTaskId(),
		Title:         req.GetTitle(),
		Description:   req.GetDescription(),
		RuntimeConfig: req.GetRuntimeConfig(),
		Attempt:       int(req.GetAttempt()),
		WorkDir:       req.GetWorkDir(),
		Host:          s.host,
	})
	if err != nil {
		s.host.unbind()
		return nil, toStatus(err, "")
	}
	return &pb.StartResponse{}, nil
}

func (s *runtimeServer) Attach(ctx context.Context, req *pb.AttachRequest) (*pb.AttachResponse, error) {
	running := s.host.task()
	if running == "" || running != req.GetTaskId() {
		return nil, toStatus(ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidArgument,
			"This plugin runs task %q, not %q.", running, req.GetTaskId()), "")
	}
	ep := req.GetHost()
	if ep.GetNetwork() != "unix" || ep.GetAddress() == "" {
		return nil, toStatus(ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Attach needs a unix host endpoint."), "")
	}
	addr := ep.GetAddress()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		pluginDialOption(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return nil, toStatus(fmt.Errorf("dial host service: %w", err), "")
	}
	s.host.bind(running, conn)
	Logger().Info("host reattached", "task", running)
	if _, err := s.impl.Attach(ctx, AttachRequest{TaskID: running, Host: s.host}); err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.AttachResponse{TaskId: running}, nil
}

func (s *runtimeServer) State(ctx context.Context, _ *pb.StateRequest) (*pb.StateResponse, error) {
	resp, err := s.impl.State(ctx, StateRequest{})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.StateResponse{
		TaskId:      resp.TaskID,
		Phase:       resp.Phase,
		WantedPhase: resp.WantedPhase,
		Progress:    resp.Progress,
		Live:        resp.Live,
		Message:     resp.Message,
		Running:     resp.Running,
	}, nil
}

func (s *runtimeServer) Stop(ctx context.Context, req *pb.StopRequest) (*pb.StopResponse, error) {
	var deadline time.Time
	if n := req.GetDeadlineUnixNano(); n != 0 {
		deadline = time.Unix(0, n)
	}
	resp, err := s.impl.Stop(ctx, StopRequest{Deadline: deadline, Reason: req.GetReason()})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.StopResponse{Forced: resp.Forced}, nil
}

func (s *runtimeServer) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	resp, err := s.impl.Health(ctx, HealthRequest{})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.HealthResponse{Healthy: resp.Healthy, Message: resp.Message}, nil
}

// hostHandle is the Host a runtime gets in StartRequest. It stays the same
// value for the life of the plugin; Attach re-points it at a new host. Every
// call stamps the task id (checked again by the host) and has a deadline.
type hostHandle struct {
	mu     sync.Mutex
	taskID string
	conn   *grpc.ClientConn
	rpc    pb.HostClient
}

func (h *hostHandle) task() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.taskID
}

func (h *hostHandle) bind(taskID string, conn *grpc.ClientConn) {
	h.mu.Lock()
	old := h.conn
	h.taskID, h.conn, h.rpc = taskID, conn, pb.NewHostClient(conn)
	h.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (h *hostHandle) unbind() {
	h.mu.Lock()
	old := h.conn
	h.taskID, h.conn, h.rpc = "", nil, nil
	h.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (h *hostHandle) client() (pb.HostClient, string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rpc == nil {
		return nil, "", ErrHostUnavailable
	}
	return h.rpc, h.taskID, nil
}

func (h *hostHandle) AppendEvent(ctx context.Context, req AppendEventRequest) (AppendEventResponse, error) {
	rpc, task, err := h.client()
	if err != nil {
		return AppendEventResponse{}, err
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := rpc.AppendEvent(cctx, &pb.AppendEventRequest{TaskId: task, Type: req.Type, Data: req.Data})
	if err != nil {
		e, _ := fromStatus(ctx, err, ErrHostUnavailable)
		return AppendEventResponse{}, e
	}
	return AppendEventResponse{Version: resp.GetVersion()}, nil
}

func (h *hostHandle) RequestPhase(ctx context.Context, req PhaseRequest) (PhaseResponse, error) {
	rpc, task, err := h.client()
	if err != nil {
		return PhaseResponse{}, err
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := rpc.RequestPhase(cctx, &pb.PhaseRequest{TaskId: task, To: req.To, Note: req.Note})
	if err != nil {
		e, phase := fromStatus(ctx, err, ErrHostUnavailable)
		return PhaseResponse{Phase: phase}, e
	}
	return PhaseResponse{Phase: resp.GetPhase()}, nil
}

func (h *hostHandle) Output(ctx context.Context, req OutputRequest) (OutputResponse, error) {
	rpc, task, err := h.client()
	if err != nil {
		return OutputResponse{}, err
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	lines := make([]*pb.OutputLine, len(req.Lines))
	for i, l := range req.Lines {
		lines[i] = &pb.OutputLine{Stream: l.Stream, Text: l.Text}
	}
	if _, err := rpc.Output(cctx, &pb.OutputRequest{TaskId: task, Lines: lines, Dropped: int64(req.Dropped)}); err != nil {
		e, _ := fromStatus(ctx, err, ErrHostUnavailable)
		return OutputResponse{}, e
	}
	return OutputResponse{}, nil
}
