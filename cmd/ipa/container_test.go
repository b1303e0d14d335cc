package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainerImage builds the Containerfile's FROM scratch image around a
// static binary with podman, checks what the image says it runs, and then
// runs it where the container runtime allows: the first token created in
// the data volume, the server started, /healthz answered, a task created
// over GraphQL. Without podman, or where the runtime refuses to run
// containers, it says so and skips that part.
func TestContainerImage(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman is not installed (apt-get install -y podman); the image cannot be built here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, podman, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	// The build context the Makefile's image target makes: the static
	// binary, an empty tmp/ and data/.
	dir := t.TempDir()
	for _, d := range []string{"tmp", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "ipa"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	tag := "localhost/ipa-test:" + hex.EncodeToString(suffix)
	if out, err := run("build", "-f", filepath.Join("..", "..", "Containerfile"), "-t", tag, dir); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = exec.Command(podman, "rmi", "-f", tag).CombinedOutput() })

	out, err := run("image", "inspect", tag)
	if err != nil {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	var images []struct {
		Config struct {
			Entrypoint, Cmd, Env []string
			User, WorkingDir     string
			Volumes              map[string]any
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(out), &images); err != nil || len(images) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	c := images[0].Config
	if strings.Join(c.Entrypoint, " ") != "/ipa" || strings.Join(c.Cmd, " ") != "serve" || c.User != "65532:65532" ||
		c.WorkingDir != "/data" || c.Volumes["/data"] == nil || !strings.Contains(strings.Join(c.Env, " "), "IPA_DATABASE_URL=sqlite:///data/ipa.db") {
		t.Fatalf("image config: %+v", c)
	}
	// FROM scratch: only the image's own three layers (tmp, data, binary).
	if n := len(images[0].RootFS.Layers); n != 3 {
		t.Fatalf("the image has %d layers, want 3 (FROM scratch)", n)
	}

	// Running needs a container runtime that may set rlimits and make
	// namespaces; some sandboxes refuse it.
	if out, err := run("run", "--rm", tag, "version"); err != nil {
		t.Skipf("the image builds, but this machine's container runtime refuses to run it (%v): %s", err, strings.TrimSpace(out))
	} else if !strings.HasPrefix(out, "ipa ") {
		t.Fatalf("ipa version in the container: %q", out)
	}

	volume := "ipa-test-" + hex.EncodeToString(suffix)
	t.Cleanup(func() { _, _ = exec.Command(podman, "volume", "rm", "-f", volume).CombinedOutput() })
	out, err = run("run", "--rm", "-v", volume+":/data", tag, "token", "create", "--actor", "admin", "--role", "admin")
	if err != nil {
		t.Fatalf("token create in the container: %v\n%s", err, out)
	}
	token := lastLine(out)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	name := "ipa-test-" + hex.EncodeToString(suffix)
	if out, err := run("run", "-d", "--name", name, "-p", "127.0.0.1:"+itoa(port)+":8080", "-v", volume+":/data", tag); err != nil {
		t.Fatalf("podman run -d: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command(podman, "logs", name).CombinedOutput()
			t.Logf("container log:\n%s", logs)
		}
		_, _ = exec.Command(podman, "rm", "-f", "-t", "5", name).CombinedOutput()
	})
	base := "http://127.0.0.1:" + itoa(port)
	eventually(t, 60*time.Second, func() string {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "ok ") {
			return "healthz: " + resp.Status + " " + string(b)
		}
		return ""
	})
	body := `{"query":"mutation { createTask(input: {title: \"in a container\"}) { task { id title } } }"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"title":"in a container"`) {
		t.Fatalf("createTask in the container: %s %s", resp.Status, b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
