package podapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// runtimeClient is the host side of Runtime: it calls the plugin over gRPC
// and serves the task's Host back to it.
type runtimeClient struct {
	done    context.Context // ends when the plugin client closes
	broker  *plugin.GRPCBroker
	rpc     pb.RuntimeClient
	version int // negotiated protocol version

	mu         sync.Mutex
	attachStop func() // stops the Host server of the latest Attach
}

func newRuntimeClient(done context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn, version int) *runtimeClient {
	c := &runtimeClient{done: done, broker: broker, rpc: pb.NewRuntimeClient(conn), version: version}
	go func() {
		<-done.Done()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.attachStop != nil {
			c.attachStop()
			c.attachStop = nil
		}
	}()
	return c
}

// withDeadline gives ctx DefaultCallTimeout when it has no deadline.
func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultCallTimeout)
}

func (c *runtimeClient) unavailable(ctx context.Context, err error) error {
	e, _ := fromStatus(ctx, err, ErrRuntimeUnavailable)
	return e
}

func (c *runtimeClient) Start(ctx context.Context, req StartRequest) (StartResponse, error) {
	if req.Host == nil {
		return StartResponse{}, errors.New("podapi: StartRequest.Host is required")
	}
	if c.done.Err() != nil {
		return StartResponse{}, ErrRuntimeUnavailable
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()

	// The Host service for this task lives on a broker stream until the
	// plugin client closes.
	id := c.broker.NextId()
	hs := &hostServer{impl: req.Host, taskID: req.TaskID}
	go c.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(append(opts, hostServerOptions()...)...)
		pb.RegisterHostServer(s, hs)
		return s
	})

	_, err := c.rpc.Start(cctx, &pb.StartRequest{
		TaskId:        req.TaskID,
		Title:         req.Title,
		Description:   req.Description,
		RuntimeConfig: req.RuntimeConfig,
		Attempt:       int32(req.Attempt),
		HostBrokerId:  id,
		WorkDir:       req.WorkDir,
	})
	if err != nil {
		return StartResponse{}, c.unavailable(ctx, err)
	}
	return StartResponse{}, nil
}

// Attach serves the Host on a private unix socket (in a fresh 0700 temporary
// directory) and sends its address to the plugin: the plugin side of
// go-plugin's broker does not survive the loss of its first host, so a
// reattached host cannot use it.
func (c *runtimeClient) Attach(ctx context.Context, req AttachRequest) (AttachResponse, error) {
	if req.Host == nil {
		return AttachResponse{}, errors.New("podapi: AttachRequest.Host is required")
	}
	if c.done.Err() != nil {
		return AttachResponse{}, ErrRuntimeUnavailable
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()

	dir, err := os.MkdirTemp("", "ipa-host-")
	if err != nil {
		return AttachResponse{}, fmt.Errorf("podapi: host socket dir: %w", err)
	}
	sock := filepath.Join(dir, "host.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		return AttachResponse{}, fmt.Errorf("podapi: host socket: %w", err)
	}
	srv := grpc.NewServer(hostServerOptions()...)
	pb.RegisterHostServer(srv, &hostServer{impl: req.Host, taskID: req.TaskID})
	go func() { _ = srv.Serve(ln) }()
	stop := func() { srv.Stop(); _ = os.RemoveAll(dir) }

	resp, err := c.rpc.Attach(cctx, &pb.AttachRequest{
		TaskId: req.TaskID,
		Host:   &pb.HostEndpoint{Network: "unix", Address: sock},
	})
	if err != nil {
		stop()
		return AttachResponse{}, c.unavailable(ctx, err)
	}
	c.mu.Lock()
	if c.attachStop != nil {
		c.attachStop()
	}
	c.attachStop = stop
	if c.done.Err() != nil { // closed meanwhile: the watcher has already run
		c.attachStop()
		c.attachStop = nil
	}
	c.mu.Unlock()
	return AttachResponse{TaskID: resp.GetTaskId()}, nil
}

func (c *runtimeClient) State(ctx context.Context, _ StateRequest) (StateResponse, error) {
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := c.rpc.State(cctx, &pb.StateRequest{})
	if err != nil {
		return StateResponse{}, c.unavailable(ctx, err)
	}
	return StateResponse{
		TaskID:      resp.GetTaskId(),
		Phase:       resp.GetPhase(),
		WantedPhase: resp.GetWantedPhase(),
		Progress:    resp.GetProgress(),
		Live:        resp.GetLive(),
		Message:     resp.GetMessage(),
		Running:     resp.GetRunning(),
	}, nil
}

// stopGrace is how long past req.Deadline the host waits for Stop to answer.
const stopGrace = 2 * time.Second

func (c *runtimeClient) Stop(ctx context.Context, req StopRequest) (StopResponse, error) {
	var cctx context.Context
	var cancel context.CancelFunc
	if !req.Deadline.IsZero() {
		cctx, cancel = context.WithDeadline(ctx, req.Deadline.Add(stopGrace))
	} else {
		cctx, cancel = withDeadline(ctx)
	}
	defer cancel()
	var nanos int64
	if !req.Deadline.IsZero() {
		nanos = req.Deadline.UnixNano()
	}
	resp, err := c.rpc.Stop(cctx, &pb.StopRequest{DeadlineUnixNano: nanos, Reason: req.Reason})
	if err != nil {
		return StopResponse{}, c.unavailable(ctx, err)
	}
	return StopResponse{Forced: resp.GetForced()}, nil
}

func (c *runtimeClient) Health(ctx context.Context, _ HealthRequest) (HealthResponse, error) {
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := c.rpc.Health(cctx, &pb.HealthRequest{})
	if err != nil {
		return HealthResponse{}, c.unavailable(ctx, err)
	}
	return HealthResponse{Healthy: resp.GetHealthy(), Message: resp.GetMessage()}, nil
}

// hostServer serves one task's Host to its plugin. It is bound to that task:
// a request naming another task is refused before it reaches impl.
type hostServer struct {
	pb.UnimplementedHostServer
	impl   Host
	taskID string
}

func (s *hostServer) check(taskID string) error {
	if taskID != "" && taskID != s.taskID {
		return status.Errorf(codes.PermissionDenied, "this host service is bound to task %s; it cannot serve task %s", s.taskID, taskID)
	}
	return nil
}

func (s *hostServer) AppendEvent(ctx context.Context, req *pb.AppendEventRequest) (*pb.AppendEventResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(req.GetType(), ipa.RuntimeEventPrefix) || len(req.GetType()) == len(ipa.RuntimeEventPrefix) {
		return nil, toStatus(ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument,
			"A runtime may only append events of type %s…; got %q.", ipa.RuntimeEventPrefix, req.GetType()), "")
	}
	resp, err := s.impl.AppendEvent(ctx, AppendEventRequest{Type: req.GetType(), Data: req.GetData()})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.AppendEventResponse{Version: resp.Version}, nil
}

func (s *hostServer) RequestPhase(ctx context.Context, req *pb.PhaseRequest) (*pb.PhaseResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	resp, err := s.impl.RequestPhase(ctx, PhaseRequest{To: req.GetTo(), Note: req.GetNote()})
	if err != nil {
		return nil, toStatus(err, resp.Phase)
	}
	return &pb.PhaseResponse{Phase: resp.Phase}, nil
}

func (s *hostServer) Output(ctx context.Context, req *pb.OutputRequest) (*pb.OutputResponse, error) {
	if err := s.check(req.GetTaskId()); err != nil {
		return nil, err
	}
	lines := make([]OutputLine, len(req.GetLines()))
	for i, l := range req.GetLines() {
		lines[i] = OutputLine{Stream: l.GetStream(), Text: l.GetText()}
	}
	if _, err := s.impl.Output(ctx, OutputRequest{Lines: lines, Dropped: int(req.GetDropped())}); err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.OutputResponse{}, nil
}
