package podapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// Pauser is implemented by a Runtime that pauses its own work (protocol
// version 3): the host calls it instead of stopping the plugin's process
// group. Either method answers ErrUnsupported when the runtime cannot.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Pause asks a dispensed Runtime to pause its own work. ErrUnsupported when
// it cannot (it does not implement Pauser, or negotiated a version before 3):
// the caller pauses it by other means.
func Pause(ctx context.Context, rt Runtime) error {
	if p, ok := rt.(Pauser); ok {
		return p.Pause(ctx)
	}
	return ErrUnsupported
}

// Resume asks a dispensed Runtime to resume its own work; ErrUnsupported as
// for Pause.
func Resume(ctx context.Context, rt Runtime) error {
	if p, ok := rt.(Pauser); ok {
		return p.Resume(ctx)
	}
	return ErrUnsupported
}

var _ Pauser = (*runtimeClient)(nil)

// Pause is the host side of Runtime.Pause.
func (c *runtimeClient) Pause(ctx context.Context) error {
	if c.version < 3 {
		return ErrUnsupported
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	_, err := c.rpc.Pause(cctx, &pb.PauseRequest{})
	return c.pauseError(ctx, err)
}

// Resume is the host side of Runtime.Resume.
func (c *runtimeClient) Resume(ctx context.Context) error {
	if c.version < 3 {
		return ErrUnsupported
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	_, err := c.rpc.Resume(cctx, &pb.ResumeRequest{})
	return c.pauseError(ctx, err)
}

func (c *runtimeClient) pauseError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unimplemented {
		return ErrUnsupported
	}
	return c.unavailable(ctx, err)
}

// Pause is the plugin side: UNIMPLEMENTED unless the runtime pauses itself.
func (s *runtimeServer) Pause(ctx context.Context, _ *pb.PauseRequest) (*pb.PauseResponse, error) {
	p, ok := s.impl.(Pauser)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this runtime does not pause itself")
	}
	if err := p.Pause(ctx); err != nil {
		return nil, pauserStatus(err)
	}
	return &pb.PauseResponse{}, nil
}

// Resume is the plugin side of Runtime.Resume.
func (s *runtimeServer) Resume(ctx context.Context, _ *pb.ResumeRequest) (*pb.ResumeResponse, error) {
	p, ok := s.impl.(Pauser)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this runtime does not pause itself")
	}
	if err := p.Resume(ctx); err != nil {
		return nil, pauserStatus(err)
	}
	return &pb.ResumeResponse{}, nil
}

func pauserStatus(err error) error {
	if err == ErrUnsupported {
		return status.Error(codes.Unimplemented, "this runtime does not pause itself")
	}
	return toStatus(err, "")
}
