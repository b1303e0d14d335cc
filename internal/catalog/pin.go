package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// privateDirName is the directory under the data directory that holds the
// private copies of allow-listed plugins, each named after its sha256.
const privateDirName = "plugins"

// pinAll copies every allow-listed plugin of pluginDir into privDir and
// returns the copies that match their listed checksum, sorted by name, and a
// message for each listed plugin refused. Hidden files and files not listed
// are skipped, as is a missing plugin dir. It returns an error when privDir
// is not safe to use.
//
// Checking a file in pluginDir and then executing it by path lets whoever
// can write pluginDir swap the file in between. A copy closes that gap: the
// bytes hashed are the bytes written to a file only this user can change, and
// that file is the one executed.
func pinAll(pluginDir string, allow map[string]string, privDir string) ([]external, []string, error) {
	entries, err := os.ReadDir(pluginDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read plugin dir: %w", err)
	}
	if err := ensurePrivateDir(privDir); err != nil {
		return nil, nil, err
	}
	var (
		found   []external
		refused []string
		keep    = map[string]bool{}
	)
	// Every listed digest is kept, not only those pinned now: a copy that a
	// catalog already hands out stays valid even when this discovery finds
	// the plugin dir's file changed and refuses it.
	for _, sum := range allow {
		keep[sum] = true
	}
	for _, e := range entries {
		name := e.Name()
		want, listed := allow[name]
		if strings.HasPrefix(name, ".") || !listed {
			continue
		}
		path, err := pin(filepath.Join(pluginDir, name), privDir, want)
		if err != nil {
			refused = append(refused, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		found = append(found, external{name: name, path: path, sha256: want})
	}
	prune(privDir, keep)
	sort.Slice(found, func(i, j int) bool { return found[i].name < found[j].name })
	return found, refused, nil
}

// pin copies src into dir as dir/<want>, read-only and executable by this
// user alone, and returns the copy's path. The checksum is computed over the
// bytes as they are written to the copy, so what is verified is the copy
// itself, whatever happens to src meanwhile. It returns an error, leaving
// nothing behind, when src is not a regular executable file or the copy's
// checksum is not want.
//
// The copy is made fresh at every discovery: a file left by an earlier run
// is never trusted, only replaced (rename is atomic, and a pod still running
// an earlier copy keeps its own inode).
func pin(src, dir, want string) (string, error) {
	// O_NONBLOCK: a FIFO swapped in must not hang discovery.
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer func() { _ = in.Close() }()
	fi, err := in.Stat() // of the file opened, not of whatever the name points at later
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", errors.New("not executable")
	}
	// CreateTemp opens with O_CREATE|O_EXCL and mode 0600: it never follows
	// or reuses a file that someone else put there.
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("private copy: %w", err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		return "", fmt.Errorf("private copy: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want {
		return "", fmt.Errorf("checksum mismatch: file has sha256 %s, allowed is %s", sum, want)
	}
	if err := tmp.Chmod(0o500); err != nil {
		return "", fmt.Errorf("private copy: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("private copy: %w", err)
	}
	dst := filepath.Join(dir, want)
	if err := os.Rename(tmpName, dst); err != nil {
		return "", fmt.Errorf("private copy: %w", err)
	}
	done = true
	return dst, nil
}

// prune removes what the private dir holds besides the copies in keep:
// copies whose digest is no longer listed and temporary files of an
// interrupted discovery. A pod still running a removed copy is unaffected
// (it holds the inode). Failures are left for the next discovery.
func prune(dir string, keep map[string]bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ensurePrivateDir creates dir (0700) unless it exists, then checks that it
// is a real directory owned by this user that no one else may write, inside
// a parent that no one else may rename it out of. It returns an error saying
// what is wrong otherwise; it never loosens or tightens an existing
// directory's mode, so a misconfiguration is reported rather than hidden.
func ensurePrivateDir(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// The parent may be a symlink the administrator chose; what matters is
	// who may change the directory it leads to.
	pfi, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := safeDir(parent, pfi, true); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("private plugin dir: %w", err)
	}
	fi, err := os.Lstat(dir) // a symlink here is refused, not followed
	if err != nil {
		return fmt.Errorf("private plugin dir: %w", err)
	}
	return safeDir(dir, fi, false)
}

// safeDir refuses a directory that someone other than this user could
// change: not a directory (a symlink counts as not one), owned by another
// user, or writable by group or others. A parent may belong to root, and
// may be writable by others when sticky (like /tmp), since then they still
// cannot rename or remove what this user put in it.
func safeDir(path string, fi fs.FileInfo, parent bool) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell its owner", path)
	}
	me := uint32(os.Geteuid())
	if st.Uid != me && !(parent && st.Uid == 0) {
		return fmt.Errorf("%s: owned by uid %d, not by this server's uid %d", path, st.Uid, me)
	}
	if fi.Mode().Perm()&0o022 != 0 && !(parent && fi.Mode()&fs.ModeSticky != 0) {
		return fmt.Errorf("%s: writable by group or others (mode %v)", path, fi.Mode().Perm())
	}
	return nil
}
