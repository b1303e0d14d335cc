package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgsOrder(t *testing.T) {
	got := Args(Spec{
		Workspace: "/srv/ipa/tasks/t1",
		Writable:  []string{"/srv/cache"},
		Hide:      []Hidden{{Path: "/srv/ipa", Dir: true}, {Path: "/srv/ipa.db"}},
	})
	want := []string{
		"--die-with-parent", "--unshare-all",
		"--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
		"--tmpfs", "/srv/ipa", "--ro-bind", "/dev/null", "/srv/ipa.db",
		"--bind", "/srv/ipa/tasks/t1", "/srv/ipa/tasks/t1",
		"--bind", "/srv/cache", "/srv/cache",
		"--chdir", "/srv/ipa/tasks/t1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Args =\n%q\nwant\n%q", got, want)
	}
	if slices.Contains(got, "--share-net") {
		t.Fatal("network shared without being asked for")
	}
	if net := Args(Spec{Workspace: "/w", Network: true}); !slices.Contains(net, "--share-net") {
		t.Fatalf("network asked for, not shared: %q", net)
	}
}

func TestCheckWritable(t *testing.T) {
	hide := []Hidden{{Path: "/srv/ipa", Dir: true}}
	for path, ok := range map[string]bool{
		"/srv/cache": true, "/srv/ipa2": true,
		"": false, "rel/path": false, "/": false, "/srv/../etc": false, "/srv/cache/": false,
		"/srv": false, "/srv/ipa": false, "/srv/ipa/tasks/other": false, "/a\nb": false,
	} {
		if err := CheckWritable(path, hide); (err == nil) != ok {
			t.Errorf("CheckWritable(%q) = %v, want ok=%v", path, err, ok)
		}
	}
}

func TestParseModeAndExitSignal(t *testing.T) {
	for in, want := range map[string]Mode{"off": Off, "AUTO": Auto, " required ": Required} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := ParseMode("on"); err == nil {
		t.Error("ParseMode(on) accepted")
	}
	if ExitSignal(137) != 9 || ExitSignal(1) != 0 || ExitSignal(128) != 0 || ExitSignal(255) != 0 {
		t.Error("ExitSignal decodes wrongly")
	}
}

func TestDecodeHide(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := DecodeHide(EncodeHide([]string{dir, file, filepath.Join(dir, "missing"), "relative", "bad\nname"}))
	want := []Hidden{{Path: dir, Dir: true}, {Path: file}}
	if !slices.Equal(got, want) {
		t.Fatalf("DecodeHide = %v, want %v", got, want)
	}
}

// The real bwrap: Find works here, and a broken one is refused with its
// reason.
func TestFindAndProbe(t *testing.T) {
	if _, err := exec.LookPath(Program); err != nil {
		t.Fatalf("bwrap is not in PATH (install bubblewrap): %v", err)
	}
	path, err := Find(context.Background(), "")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if !filepath.IsAbs(path) {
		t.Fatalf("Find = %q, not absolute", path)
	}
	if _, err := Find(context.Background(), "/bin/false"); err == nil || !strings.Contains(err.Error(), "does not work") {
		t.Fatalf("Find(/bin/false) = %v, want a refusal", err)
	}
	if _, err := Find(context.Background(), "/nonexistent/bwrap"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Find(missing) = %v, want not found", err)
	}
	// A PATH without bwrap means no bwrap, even where /usr/bin/bwrap exists.
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Find with bwrap absent from PATH = %v, want not found", err)
	}
}
