package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeDist runs `make dist` into a temporary directory and checks its
// release archives: one for each of linux and darwin on amd64 and arm64,
// each holding the static binary of its platform, the licence, the README
// and the docs; SHA256SUMS names each archive's hash; the linux/amd64
// binary prints the stamped version and commit.
func TestMakeDist(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	t.Parallel()
	dist := filepath.Join(t.TempDir(), "dist")
	const version = "v9.8.7-test"
	cmd := exec.Command("make", "dist", "DIST="+dist, "VERSION="+version, "COMMIT=0123456789abcdef0123456789abcdef01234567")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		elf   elf.Machine
		macho macho.Cpu
	}{
		"linux_amd64":  {elf: elf.EM_X86_64},
		"linux_arm64":  {elf: elf.EM_AARCH64},
		"darwin_amd64": {macho: macho.CpuAmd64},
		"darwin_arm64": {macho: macho.CpuArm64},
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		listed = append(listed, f[1])
		b, err := os.ReadFile(filepath.Join(dist, f[1]))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f[0] {
			t.Errorf("%s: SHA256SUMS says %s", f[1], f[0])
		}
	}
	slices.Sort(listed)
	var names []string
	for p := range want {
		names = append(names, "ipa_"+version+"_"+p+".tar.gz")
	}
	slices.Sort(names)
	if !slices.Equal(listed, names) {
		t.Fatalf("archives %v, want %v", listed, names)
	}
	for p, arch := range want {
		prefix := "ipa_" + version + "_" + p + "/"
		files := untar(t, filepath.Join(dist, prefix[:len(prefix)-1]+".tar.gz"))
		for _, f := range []string{"ipa", "LICENSE", "README.md", "docs/cli.md"} {
			if _, ok := files[prefix+f]; !ok {
				t.Errorf("%s: no %s", p, f)
			}
		}
		bin := files[prefix+"ipa"]
		if arch.elf != 0 {
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil || f.Machine != arch.elf {
				t.Errorf("%s: binary is not ELF for %v: %v", p, arch.elf, err)
				continue
			}
			if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
				t.Errorf("%s: the binary is dynamically linked", p)
			}
		} else if f, err := macho.NewFile(bytes.NewReader(bin)); err != nil || f.Cpu != arch.macho {
			t.Errorf("%s: binary is not Mach-O for %v: %v", p, arch.macho, err)
		}
	}
	out, err := exec.Command(filepath.Join(dist, "ipa_"+version+"_linux_amd64", "ipa"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ipa "+version+" (commit 0123456789ab, built ") {
		t.Fatalf("ipa version of the linux/amd64 archive: %q %v", out, err)
	}
}

// untar reads a .tar.gz into a map of regular files' contents by name.
func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}
