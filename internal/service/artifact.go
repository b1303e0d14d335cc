package service

import (
	"context"
	"net/url"
	"os"

	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// ArtifactService lists and opens tasks' artifacts. It is safe for
// concurrent use.
type ArtifactService struct {
	store TaskReader
	arts  *artifact.Store
}

// NewArtifactService returns an ArtifactService over arts.
func NewArtifactService(r TaskReader, arts *artifact.Store) *ArtifactService {
	return &ArtifactService{store: r, arts: arts}
}

// URL is where an artifact is downloaded.
func URL(taskID, name string) string {
	return "/artifacts/" + url.PathEscape(taskID) + "/" + url.PathEscape(name)
}

// List returns the task's artifacts by name. Requires VIEWER.
func (s *ArtifactService) List(ctx context.Context, taskID string) ([]artifact.Artifact, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.arts.List(ctx, taskID)
}

// Open returns the task's artifact name and its file, for download.
// Requires VIEWER. Returns EINVALID for a name no artifact can have (a
// path, '..'), ENOTFOUND for no such task or artifact.
func (s *ArtifactService) Open(ctx context.Context, taskID, name string) (artifact.Artifact, *os.File, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return artifact.Artifact{}, nil, err
	}
	if !artifact.ValidName(name) {
		return artifact.Artifact{}, nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Not an artifact name: names are letters, digits, '.', '_' and '-', not starting with '.'.")
	}
	if _, err := s.store.GetTask(ctx, taskID); err != nil {
		return artifact.Artifact{}, nil, err
	}
	return s.arts.Get(ctx, taskID, name)
}
