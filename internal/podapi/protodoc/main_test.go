package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// protoc runs protoc with args from internal/podapi, or skips the test when
// it is not installed (the generated files are committed; only checking
// them needs it).
func protoc(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc is not installed (apt-get install protobuf-compiler)")
	}
	cmd := exec.Command("protoc", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("protoc %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// The guide's protocol reference is what the .proto file says today.
func TestGuideReferenceIsCurrent(t *testing.T) {
	set := protoc(t, "..", "-I", "proto", "--include_source_info", "--descriptor_set_out=/dev/stdout", "proto/runtime.proto")
	ref, err := Render(set)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "runtimes.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Splice(doc, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, want) {
		t.Fatal("docs/runtimes.md's protocol reference is stale: run `make generate`")
	}
	for _, s := range []string{"### service Runtime", "`Describe`", "#### DescribeResponse", "`config_schema`"} {
		if !strings.Contains(ref, s) {
			t.Errorf("reference lacks %q", s)
		}
	}
}

// hello-py carries the protocol's descriptors inside itself; they are the
// ones the .proto files give.
func TestPythonExampleDescriptorsAreCurrent(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "examples", "runtime-python")
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc is not installed")
	}
	out, err := exec.Command("sh", filepath.Join(dir, "gen-descriptors.sh")).Output()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "hello-py"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("DESCRIPTORS = \"\"\"\n"+string(out)+"\"\"\"")) {
		t.Fatal("hello-py's DESCRIPTORS differ from ./gen-descriptors.sh's output: regenerate them")
	}
}
