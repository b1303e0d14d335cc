package podapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ExternalRuntime is a runtime plugin executable found in the plugin
// directory. Its name is its file name.
type ExternalRuntime struct {
	Name   string
	Path   string
	SHA256 string // hex
}

// Discover lists the runtime plugins in dir: every regular, executable file
// (symlinks are followed) is one runtime named after the file. Hidden files,
// directories and non-executable files are skipped. allow maps a name to the
// sha256 (hex) its file must have: nil allows every file; otherwise a file
// whose name is not in allow is skipped and one whose checksum differs is
// refused, and Discover returns the runtimes that passed together with an
// error naming every refused one. A missing dir is not an error. Launch with
// plugin.SecureConfig too, so the file checked is the file run.
func Discover(dir string, allow map[string]string) ([]ExternalRuntime, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("podapi: read plugin dir: %w", err)
	}
	var found []ExternalRuntime
	var refused []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		want, listed := allow[name]
		if allow != nil && !listed {
			continue
		}
		sum, err := fileSHA256(path)
		if err != nil {
			refused = append(refused, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if allow != nil && !strings.EqualFold(sum, want) {
			refused = append(refused, fmt.Sprintf("%s: checksum mismatch: file has sha256 %s, allowed is %s", name, sum, want))
			continue
		}
		found = append(found, ExternalRuntime{Name: name, Path: path, SHA256: sum})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	if len(refused) > 0 {
		return found, fmt.Errorf("podapi: refused runtime plugins: %s", strings.Join(refused, "; "))
	}
	return found, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
