package podapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// savingHost keeps what it is sent, or refuses names starting with "bad".
type savingHost struct {
	fakeHost
	got map[string][]byte
}

func (h *savingHost) UploadArtifact(_ context.Context, name string, r io.Reader) (Artifact, error) {
	if len(name) >= 3 && name[:3] == "bad" {
		return Artifact{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "The artifact %q was refused.", name)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return Artifact{}, err
	}
	h.got[name] = b
	sum := sha256.Sum256(b)
	return Artifact{Name: name, SizeBytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// TestUploadArtifactOverGRPC: a file of several chunks arrives whole, in
// order; a refusal reaches the plugin with its code; a host without
// artifacts is ErrUnsupported; a reader's error ends the upload with it.
func TestUploadArtifactOverGRPC(t *testing.T) {
	serve := func(t *testing.T, impl Host) *hostHandle {
		conn, server := plugin.TestGRPCConn(t, func(s *grpc.Server) {
			pb.RegisterHostServer(s, &hostServer{impl: impl, taskID: "task-A"})
		})
		t.Cleanup(func() { _ = conn.Close(); server.Stop() })
		h := &hostHandle{}
		h.bind("task-A", conn)
		return h
	}
	ctx := context.Background()
	host := &savingHost{got: map[string][]byte{}}
	h := serve(t, host)

	data := bytes.Repeat([]byte("0123456789abcdef"), artifactChunk/16*2+7) // three chunks, the last short
	a, err := h.UploadArtifact(ctx, "big.bin", bytes.NewReader(data))
	sum := sha256.Sum256(data)
	if err != nil || a.Name != "big.bin" || a.SizeBytes != int64(len(data)) || a.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("UploadArtifact: %+v %v", a, err)
	}
	if !bytes.Equal(host.got["big.bin"], data) {
		t.Fatalf("the host got %d bytes, want the %d sent", len(host.got["big.bin"]), len(data))
	}
	if a, err := h.UploadArtifact(ctx, "empty.txt", bytes.NewReader(nil)); err != nil || a.SizeBytes != 0 {
		t.Fatalf("an empty artifact: %+v %v", a, err)
	}
	_, err = h.UploadArtifact(ctx, "bad name", bytes.NewReader(data))
	if ipa.ErrorCode(err) != ipa.EINVALID {
		t.Fatalf("a refused artifact: want EINVALID, got %v", err)
	}
	broken := errors.New("disk gone")
	_, err = h.UploadArtifact(ctx, "half.bin", io.MultiReader(bytes.NewReader(data[:artifactChunk+1]), errReader{broken}))
	if !errors.Is(err, broken) {
		t.Fatalf("a reader's error: got %v", err)
	}
	if _, ok := host.got["half.bin"]; ok {
		t.Fatal("a broken upload was kept")
	}

	plain := serve(t, &fakeHost{})
	if _, err := plain.UploadArtifact(ctx, "x.txt", bytes.NewReader(data)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a host without artifacts: want ErrUnsupported, got %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
