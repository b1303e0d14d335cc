package pod

import (
	"context"
	"io"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// Artifact is a file the server keeps as the task's artifact, listed in
// Task.artifacts and downloaded at /artifacts/{taskId}/{name}.
type Artifact struct {
	Name      string
	SizeBytes int64
	SHA256    string // hex
}

// ArtifactSaver is implemented by the Host the SDK hands a runtime
// (protocol version 3): SaveArtifact streams what r yields to the server,
// which keeps it as the task's artifact name and records artifact_saved.
// The names and limits are the server's (docs/runtimes.md): a bad name or a
// file over a limit is an *Error with CodeInvalid, a server that keeps no
// artifacts CodeUnavailable, an older server ErrUnsupported, no server
// connected ErrHostUnavailable (save again once it is back). Saving a name
// again replaces it. Get it with a type assertion,
// req.Host.(pod.ArtifactSaver).
type ArtifactSaver interface {
	SaveArtifact(ctx context.Context, name string, r io.Reader) (Artifact, error)
}

var _ ArtifactSaver = host{}

func (h host) SaveArtifact(ctx context.Context, name string, r io.Reader) (Artifact, error) {
	s, ok := h.h.(podapi.ArtifactSaving)
	if !ok {
		return Artifact{}, ErrUnsupported
	}
	a, err := s.UploadArtifact(ctx, name, r)
	if err != nil {
		return Artifact{}, fromEngine(err)
	}
	return Artifact{Name: a.Name, SizeBytes: a.SizeBytes, SHA256: a.SHA256}, nil
}
