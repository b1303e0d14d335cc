package podapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// grpcCodes maps domain error codes onto gRPC codes, for logs and tools that
// only look at the gRPC code; the domain code itself rides in an ErrorInfo.
var grpcCodes = map[string]codes.Code{
	ipa.EINVALID:         codes.InvalidArgument,
	ipa.ENOTFOUND:        codes.NotFound,
	ipa.ECONFLICT:        codes.FailedPrecondition,
	ipa.EUNAUTHENTICATED: codes.Unauthenticated,
	ipa.EFORBIDDEN:       codes.PermissionDenied,
	ipa.EUNAVAILABLE:     codes.Unavailable,
	ipa.EINTERNAL:        codes.Internal,
}

// toStatus turns an error returned by an implementation into a gRPC status
// error. An *ipa.Error keeps its code, reason and message (and phase, for a
// refused phase request); any other error becomes codes.Unknown with its text.
func toStatus(err error, phase string) error {
	if err == nil {
		return nil
	}
	var e *ipa.Error
	if errors.As(err, &e) {
		c, ok := grpcCodes[e.Code]
		if !ok {
			c = codes.Unknown
		}
		st := status.New(c, e.Message)
		if withInfo, derr := st.WithDetails(&pb.ErrorInfo{Code: e.Code, Reason: e.Reason, Message: e.Message, Phase: phase}); derr == nil {
			st = withInfo
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, ErrHostUnavailable), errors.Is(err, ErrRuntimeUnavailable):
		// Not Unavailable: the peer must not take it for a dead connection.
		return status.Error(codes.Aborted, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// domainError extracts the *ipa.Error (and the phase it carries, if any) from
// a gRPC status error; ok is false when err carries none.
func domainError(err error) (e *ipa.Error, phase string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return nil, "", false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*pb.ErrorInfo); isInfo {
			return &ipa.Error{Code: info.Code, Reason: info.Reason, Message: info.Message}, info.Phase, true
		}
	}
	return nil, "", false
}

// transportFailure reports whether err says the peer process or its
// connection is gone rather than the peer having answered with an error.
func transportFailure(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		return true
	case codes.Internal, codes.Unknown:
		// Connection resets mid-call surface as these with transport text.
		msg := status.Convert(err).Message()
		return strings.Contains(msg, "EOF") || strings.Contains(msg, "transport") || strings.Contains(msg, "connection")
	}
	return false
}

// fromStatus turns a gRPC error received from the peer back into a Go error:
// the *ipa.Error it carries; unavailable (wrapped with the context error when
// the deadline passed) for a transport failure; else an error with the
// peer's message. caller is the context the caller passed in: when it was
// cancelled by the caller, its error is returned as is.
func fromStatus(caller context.Context, err error, unavailable error) (error, string) {
	if err == nil {
		return nil, ""
	}
	if e, phase, ok := domainError(err); ok {
		return e, phase
	}
	if cerr := caller.Err(); errors.Is(cerr, context.Canceled) {
		return cerr, ""
	}
	if transportFailure(err) {
		if status.Code(err) == codes.DeadlineExceeded {
			return fmt.Errorf("%w: %w", unavailable, context.DeadlineExceeded), ""
		}
		return fmt.Errorf("%w: %s", unavailable, status.Convert(err).Message()), ""
	}
	return fmt.Errorf("podapi: peer error (%s): %s", status.Code(err), status.Convert(err).Message()), ""
}
