package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// The plugins of these tests are shell scripts that print who they are; the
// tests run the returned command itself, not the plugin handshake.
const (
	scriptA = "#!/bin/sh\necho A\n"
	scriptB = "#!/bin/sh\necho B\n"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup makes a plugin dir, a data dir and an allow-list file with lines.
type setup struct {
	plugins, data, allowFile string
}

func newSetup(t *testing.T, allowLines ...string) setup {
	t.Helper()
	root := t.TempDir()
	s := setup{plugins: filepath.Join(root, "plugins"), data: filepath.Join(root, "data"), allowFile: filepath.Join(root, "allow.sha256")}
	if err := os.Mkdir(s.plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.allowFile, []byte(strings.Join(allowLines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s setup) write(t *testing.T, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.plugins, name), []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func (s setup) opts() Options {
	return Options{PluginDir: s.plugins, SHA256File: s.allowFile, EnableExec: true, DataDir: s.data}
}

func names(c *Catalog) []string {
	var out []string
	for _, rt := range c.Runtimes() {
		out = append(out, rt.Name)
	}
	return out
}

// run runs runtime's command to the end and returns what it printed.
func run(t *testing.T, c *Catalog, runtime string) string {
	t.Helper()
	cmd, err := c.Command(runtime)
	if err != nil {
		t.Fatalf("Command(%s): %v", runtime, err)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run %s (%s): %v", runtime, cmd.Path, err)
	}
	return strings.TrimSpace(string(out))
}

func TestReadChecksums(t *testing.T) {
	a, b := sum(scriptA), sum(scriptB)
	write := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "allow")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("OK", func(t *testing.T) {
		body := "# pinned plugins\n\n" +
			a + "  alpha\n" +
			strings.ToUpper(b) + " *bin/beta\n" + // binary-mode marker, a path, upper-case hex
			"   " + a + "  ./gamma   \n"
		got, err := readChecksums(write(t, body))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"alpha": a, "beta": b, "gamma": a}
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: got %q, want %q", k, got[k], v)
			}
		}
	})
	for name, body := range map[string]string{
		"ErrShortDigest": a[:63] + "  alpha\n",
		"ErrNotHex":      strings.Repeat("g", 64) + "  alpha\n",
		"ErrNoName":      a + "\n",
		"ErrSpaceInName": a + "  my plugin\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readChecksums(write(t, body))
			if err == nil || !strings.Contains(err.Error(), ":") {
				t.Fatalf("want an error naming the line, got %v", err)
			}
		})
	}
	t.Run("ErrLineNumber", func(t *testing.T) {
		_, err := readChecksums(write(t, "# c\n"+a+"  alpha\nbogus\n"))
		if err == nil || !strings.Contains(err.Error(), ":3:") {
			t.Fatalf("want an error naming line 3, got %v", err)
		}
	})
	t.Run("ErrMissingFile", func(t *testing.T) {
		if _, err := readChecksums(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDiscoverBuiltins(t *testing.T) {
	c, err := Discover(Options{EnableExec: true}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(c); !slices.Equal(got, []string{"demo", "exec"}) {
		t.Fatalf("runtimes %v", got)
	}
	c, err = Discover(Options{EnableExec: false}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(c); !slices.Equal(got, []string{"demo"}) {
		t.Fatalf("runtimes with exec off %v", got)
	}
	var ie *ipa.Error
	if _, err := c.Command("exec"); !errors.As(err, &ie) || ie.Code != ipa.EINVALID {
		t.Fatalf("Command(exec) with exec off: %v, want EINVALID", err)
	}
	cmd, err := c.Command("demo")
	if err != nil || !slices.Equal(cmd.Args[1:], []string{"plugin", "demo"}) {
		t.Fatalf("Command(demo): %v %v", cmd, err)
	}
}

func TestDiscoverAllowList(t *testing.T) {
	s := newSetup(t,
		sum(scriptA)+"  alpha",
		sum(scriptA)+"  beta", // beta holds B's bytes: mismatch
		sum(scriptA)+"  notexec",
		sum(scriptA)+"  demo", // a built-in's name is never taken over
		sum(scriptA)+"  absent",
	)
	s.write(t, "alpha", scriptA, 0o755)
	s.write(t, "beta", scriptB, 0o755)
	s.write(t, "gamma", scriptB, 0o755) // not listed
	s.write(t, "notexec", scriptA, 0o644)
	s.write(t, "demo", scriptA, 0o755)
	if err := os.Mkdir(filepath.Join(s.plugins, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A stale copy and a leftover temporary file from an earlier run.
	priv := filepath.Join(s.data, privateDirName)
	if err := os.MkdirAll(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{sum(scriptB), ".tmp-123"} {
		if err := os.WriteFile(filepath.Join(priv, f), []byte(scriptB), 0o500); err != nil {
			t.Fatal(err)
		}
	}

	var logs bytes.Buffer
	c, err := Discover(s.opts(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(c); !slices.Equal(got, []string{"demo", "exec", "alpha"}) {
		t.Fatalf("runtimes %v, want demo exec alpha", got)
	}
	for _, want := range []string{"beta: checksum mismatch", "notexec: not executable"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
	for _, rt := range []string{"beta", "gamma", "notexec", "absent", "dir"} {
		var ie *ipa.Error
		if _, err := c.Command(rt); !errors.As(err, &ie) || ie.Code != ipa.EINVALID {
			t.Fatalf("Command(%s): %v, want EINVALID", rt, err)
		}
	}
	if cmd, err := c.Command("demo"); err != nil || cmd.Args[len(cmd.Args)-1] != "demo" || cmd.Args[len(cmd.Args)-2] != "plugin" {
		t.Fatalf("demo must stay the built-in: %v %v", cmd, err)
	}

	cmd, err := c.Command("alpha")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(priv, sum(scriptA)); cmd.Path != want {
		t.Fatalf("alpha runs %s, want the private copy %s", cmd.Path, want)
	}
	if got := run(t, c, "alpha"); got != "A" {
		t.Fatalf("alpha printed %q", got)
	}
	fi, err := os.Stat(cmd.Path)
	if err != nil || fi.Mode().Perm() != 0o500 {
		t.Fatalf("private copy mode %v (%v), want 0500", fi.Mode(), err)
	}
	di, err := os.Lstat(priv)
	if err != nil || !di.IsDir() || di.Mode().Perm() != 0o700 {
		t.Fatalf("private dir mode %v (%v), want a 0700 directory", di.Mode(), err)
	}
	// Only alpha's copy is left: the stale copy and the temporary file are
	// gone, and no refused file was kept.
	left, err := os.ReadDir(priv)
	if err != nil || len(left) != 1 || left[0].Name() != sum(scriptA) {
		t.Fatalf("private dir holds %v (%v), want only alpha's copy", left, err)
	}

	// Changing the plugin dir after discovery changes nothing that runs.
	s.write(t, "alpha", scriptB, 0o755)
	if err := os.Remove(filepath.Join(s.plugins, "alpha")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, "alpha"); got != "A" {
		t.Fatalf("alpha printed %q after the plugin dir changed", got)
	}
}

func TestDiscoverWithoutAllowList(t *testing.T) {
	s := newSetup(t)
	s.write(t, "alpha", scriptA, 0o755)
	s.write(t, "notes.txt", "not a plugin", 0o644)
	o := s.opts()
	o.SHA256File = ""
	c, err := Discover(o, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(c); !slices.Equal(got, []string{"demo", "exec", "alpha"}) {
		t.Fatalf("runtimes %v", got)
	}
	// Nothing is pinned: the plugin runs from the plugin dir, as it is now.
	cmd, err := c.Command("alpha")
	if err != nil || cmd.Path != filepath.Join(s.plugins, "alpha") {
		t.Fatalf("Command(alpha) = %v, %v; want the plugin dir's file", cmd, err)
	}
	if _, err := os.Stat(filepath.Join(s.data, privateDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no private dir expected without an allow-list: %v", err)
	}
	if err := os.WriteFile(filepath.Join(s.plugins, "alpha"), []byte(scriptB), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, "alpha"); got != "B" {
		t.Fatalf("alpha printed %q, want the current file's B", got)
	}
}

func TestDiscoverErrors(t *testing.T) {
	t.Run("ErrAllowListMissing", func(t *testing.T) {
		s := newSetup(t)
		o := s.opts()
		o.SHA256File = filepath.Join(t.TempDir(), "nope")
		if _, err := Discover(o, quiet()); err == nil {
			t.Fatal("want an error for a missing allow-list")
		}
	})
	t.Run("ErrNoDataDir", func(t *testing.T) {
		s := newSetup(t, sum(scriptA)+"  alpha")
		o := s.opts()
		o.DataDir = ""
		if _, err := Discover(o, quiet()); err == nil {
			t.Fatal("want an error: an allow-list needs a data dir")
		}
	})
	t.Run("MissingPluginDir", func(t *testing.T) {
		s := newSetup(t, sum(scriptA)+"  alpha")
		o := s.opts()
		o.PluginDir = filepath.Join(t.TempDir(), "nope")
		c, err := Discover(o, quiet())
		if err != nil || len(c.Runtimes()) != 2 {
			t.Fatalf("got %v %v, want the built-ins only", names(c), err)
		}
	})
}

// The private dir is refused, and nothing runs, when anyone but this user
// could change it.
func TestPrivateDirRefused(t *testing.T) {
	cases := map[string]func(t *testing.T, s setup){
		"ErrWorldWritable": func(t *testing.T, s setup) {
			mkdirMode(t, filepath.Join(s.data, privateDirName), 0o777)
		},
		"ErrGroupWritable": func(t *testing.T, s setup) {
			mkdirMode(t, filepath.Join(s.data, privateDirName), 0o770)
		},
		"ErrSymlink": func(t *testing.T, s setup) {
			mkdirMode(t, s.data, 0o700)
			if err := os.Symlink(t.TempDir(), filepath.Join(s.data, privateDirName)); err != nil {
				t.Fatal(err)
			}
		},
		"ErrNotADirectory": func(t *testing.T, s setup) {
			mkdirMode(t, s.data, 0o700)
			if err := os.WriteFile(filepath.Join(s.data, privateDirName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"ErrDataDirWritableByOthers": func(t *testing.T, s setup) {
			mkdirMode(t, s.data, 0o777)
		},
		"ErrNotOurs": func(t *testing.T, s setup) {
			if os.Geteuid() != 0 {
				t.Skip("changing a directory's owner needs root")
			}
			dir := filepath.Join(s.data, privateDirName)
			mkdirMode(t, dir, 0o700)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, prepare := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, sum(scriptA)+"  alpha")
			s.write(t, "alpha", scriptA, 0o755)
			prepare(t, s)
			c, err := Discover(s.opts(), quiet())
			if err == nil {
				t.Fatalf("Discover accepted an unsafe private dir; runtimes %v", names(c))
			}
		})
	}
	t.Run("StickyDataDir", func(t *testing.T) {
		// Like /tmp: others may write, but not rename what is ours.
		s := newSetup(t, sum(scriptA)+"  alpha")
		s.write(t, "alpha", scriptA, 0o755)
		mkdirMode(t, s.data, 0o777|os.ModeSticky)
		c, err := Discover(s.opts(), quiet())
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, c, "alpha"); got != "A" {
			t.Fatalf("alpha printed %q", got)
		}
	})
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
}

// A listed plugin swapped in and out of the plugin dir while pods start
// never lets the unlisted bytes run: neither through a catalog discovered
// before the swapping, nor through one discovered in the middle of it.
func TestSwapRace(t *testing.T) {
	s := newSetup(t, sum(scriptA)+"  alpha")
	s.write(t, "alpha", scriptA, 0o755)
	c, err := Discover(s.opts(), quiet())
	if err != nil {
		t.Fatal(err)
	}

	// The swapper replaces alpha with B's bytes and back, each time by a
	// rename, as fast as it can, until told to stop.
	stop := make(chan struct{})
	var (
		swapper sync.WaitGroup
		swaps   atomic.Int64
		swapErr error
	)
	swapper.Add(1)
	go func() {
		defer swapper.Done()
		alpha := filepath.Join(s.plugins, "alpha")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := scriptB
			if i%2 == 1 {
				body = scriptA
			}
			tmp := filepath.Join(s.plugins, ".swap")
			if err := os.WriteFile(tmp, []byte(body), 0o755); err != nil {
				swapErr = err
				return
			}
			if err := os.Rename(tmp, alpha); err != nil {
				swapErr = err
				return
			}
			swaps.Add(1)
		}
	}()
	stopSwapping := sync.OnceFunc(func() { close(stop); swapper.Wait() })
	defer stopSwapping()

	const runs = 50
	offered := 0
	for i := 0; i < runs; i++ {
		if got := run(t, c, "alpha"); got != "A" {
			t.Fatalf("run %d printed %q: unlisted bytes ran", i, got)
		}
		// Discover again in the middle of the swapping: alpha is either
		// pinned with A's bytes or refused, never run as B.
		c2, err := Discover(s.opts(), quiet())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Command("alpha"); err != nil {
			continue
		}
		offered++
		if got := run(t, c2, "alpha"); got != "A" {
			t.Fatalf("run %d of a fresh discovery printed %q: unlisted bytes ran", i, got)
		}
	}
	stopSwapping()
	if swapErr != nil {
		t.Fatal(swapErr)
	}
	if swaps.Load() < runs {
		t.Fatalf("only %d swaps during %d runs: the race was not exercised", swaps.Load(), runs)
	}
	t.Logf("%d swaps; %d of %d discoveries during the swapping offered alpha", swaps.Load(), offered, runs)
}
