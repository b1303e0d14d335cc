package main

// A runtime saves an artifact through the SDK (pod.ArtifactSaver, protocol
// version 3): the Go example, built outside the checkout, saves
// greeting.txt; the task lists it and it downloads. Over the server's
// per-artifact limit it is refused and recorded as such.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestSDKRuntimeSavesArtifact(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildGoExample(t, dir)
	h := newHome(t, "--plugin-dir", dir)
	s := h.start()

	title := "Ada"
	want := "hello, " + title + "\n"
	id := s.createTask(t, map[string]any{"title": title, "runtime": "hello", "runtimeConfig": map[string]any{"artifact": true}, "autoStart": true})
	type art struct {
		Name      string
		SizeBytes int
		Sha256    string
		URL       string
	}
	var arts []art
	eventually(t, 60*time.Second, func() string {
		var out struct{ Task struct{ Artifacts []art } }
		s.must(t, `query($id: ID!) { task(id: $id) { artifacts { name sizeBytes sha256 url } } }`, map[string]any{"id": id}, &out)
		arts = out.Task.Artifacts
		if len(arts) == 0 {
			return "no artifact yet"
		}
		return ""
	})
	sum := sha256.Sum256([]byte(want))
	if len(arts) != 1 || arts[0].Name != "greeting.txt" || arts[0].SizeBytes != len(want) || arts[0].Sha256 != hex.EncodeToString(sum[:]) ||
		arts[0].URL != "/artifacts/"+id+"/greeting.txt" {
		t.Fatalf("artifacts %+v, want greeting.txt of %d bytes", arts, len(want))
	}
	saved := s.events(t, id, "artifact_saved")
	if len(saved) != 1 || dataField[string](t, saved[0], "name") != "greeting.txt" || saved[0].ActorID != "runtime:hello" {
		t.Fatalf("artifact_saved events %+v", saved)
	}
	resp, body := s.get(t, "", arts[0].URL, nil)
	if resp.StatusCode != http.StatusOK || body != want {
		t.Fatalf("download: %d %q, want %q", resp.StatusCode, body, want)
	}
	// Without the config the example saves nothing (its contract unchanged).
	plain := s.createTask(t, map[string]any{"title": "plain", "runtime": "hello", "autoStart": true})
	s.waitPod(t, plain, "RUNNING", "", 0, 60*time.Second)
	eventually(t, 30*time.Second, func() string {
		if n := len(s.events(t, plain, "runtime.hello.greeted")); n != 1 {
			return fmt.Sprintf("%d greeted events", n)
		}
		return ""
	})
	if n := len(s.events(t, plain, "artifact_saved", "artifact_refused")); n != 0 {
		t.Fatalf("%d artifact events for a task that saves none", n)
	}
	s.stop(t, 60*time.Second)

	// Over the per-artifact limit: refused, recorded, nothing kept.
	s = h.start("--artifact-max-bytes", "4")
	big := s.createTask(t, map[string]any{"title": title, "runtime": "hello", "runtimeConfig": map[string]any{"artifact": true}, "autoStart": true})
	eventually(t, 60*time.Second, func() string {
		if len(s.events(t, big, "artifact_refused")) == 0 {
			return "no artifact_refused yet"
		}
		return ""
	})
	if n := len(s.events(t, big, "artifact_saved")); n != 0 {
		t.Fatalf("%d artifact_saved over the limit", n)
	}
	if resp, _ := s.get(t, "", "/artifacts/"+big+"/greeting.txt", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("download of a refused artifact: %d, want 404", resp.StatusCode)
	}
}
