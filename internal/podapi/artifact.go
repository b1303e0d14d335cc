package podapi

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// Artifact is a file the host kept as the task's artifact (protocol version
// 3).
type Artifact struct {
	Name      string
	SizeBytes int64
	SHA256    string // hex
}

// ArtifactSaving is the part of Host that keeps artifacts (protocol version
// 3). The server's Host implements it; the plugin's handle does too, and
// answers ErrUnsupported when the connected server is older.
type ArtifactSaving interface {
	// UploadArtifact keeps what r yields as the task's artifact name.
	UploadArtifact(ctx context.Context, name string, r io.Reader) (Artifact, error)
}

// artifactChunk is how many bytes one ArtifactChunk carries: well under
// gRPC's 4 MiB message limit, large enough that a big file is few messages.
const artifactChunk = 256 << 10

func (s *hostServer) SaveArtifact(stream pb.Host_SaveArtifactServer) error {
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "an artifact's stream must name it in its first chunk")
		}
		return err
	}
	if err := s.check(first.GetTaskId()); err != nil {
		return err
	}
	a, ok := s.impl.(ArtifactSaving)
	if !ok {
		return status.Error(codes.Unimplemented, "this host does not keep artifacts")
	}
	r := &chunkReader{stream: stream, buf: first.GetData()}
	saved, err := a.UploadArtifact(stream.Context(), first.GetName(), r)
	if err != nil {
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			return r.err // the plugin's stream broke: nothing to tell it
		}
		return toStatus(err, "")
	}
	return stream.SendAndClose(&pb.ArtifactSaved{Name: saved.Name, SizeBytes: saved.SizeBytes, Sha256: saved.SHA256})
}

// chunkReader reads an artifact's bytes from the chunks of its stream.
type chunkReader struct {
	stream pb.Host_SaveArtifactServer
	buf    []byte
	err    error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		m, err := c.stream.Recv()
		if err != nil {
			c.err = err
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		c.buf = m.GetData()
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// UploadArtifact streams r to the host in chunks, the name first. It lasts
// as long as ctx (a large file takes what it takes). A read error of r ends
// the upload with that error and keeps nothing.
func (h *hostHandle) UploadArtifact(ctx context.Context, name string, r io.Reader) (Artifact, error) {
	rpc, task, err := h.client()
	if err != nil {
		return Artifact{}, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel() // an abandoned stream is cancelled: the host keeps nothing
	stream, err := rpc.SaveArtifact(cctx)
	if err != nil {
		return Artifact{}, hostError(ctx, err)
	}
	buf := make([]byte, artifactChunk)
	first := true
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 || first {
			msg := &pb.ArtifactChunk{Data: buf[:n]}
			if first {
				msg.TaskId, msg.Name = task, name
				first = false
			}
			if err := stream.Send(msg); err != nil {
				if errors.Is(err, io.EOF) {
					break // the host ended the call: its answer says why
				}
				return Artifact{}, hostError(ctx, err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return Artifact{}, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return Artifact{}, hostError(ctx, err)
	}
	return Artifact{Name: resp.GetName(), SizeBytes: resp.GetSizeBytes(), SHA256: resp.GetSha256()}, nil
}

var _ ArtifactSaving = (*hostHandle)(nil)
