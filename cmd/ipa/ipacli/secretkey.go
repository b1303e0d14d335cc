package ipacli

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipa-dev/ipa/internal/webhook"
)

// The key that seals webhook secrets at rest (see internal/webhook/seal.go)
// is a file outside the database, so that a copy of the database alone
// reveals no secret.

// secretKeyFileName is the default key file's name.
const secretKeyFileName = "ipa-secret.key"

// defaultSecretKeyFile is where the key lives without --secret-key-file:
// beside a SQLite store (in its directory, which holds the store's other
// files and moves with it, while backups go elsewhere), and in the data
// directory for PostgreSQL (whose servers each have their own data
// directory, so they must be given one shared --secret-key-file).
func defaultSecretKeyFile(databaseURL, dataDir string) string {
	if path, ok := strings.CutPrefix(databaseURL, "sqlite://"); ok {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		return filepath.Join(filepath.Dir(path), secretKeyFileName)
	}
	return filepath.Join(dataDir, secretKeyFileName)
}

// loadSecretKey reads the key file at path, or creates it when there is
// none: 32 random bytes, written as 64 hex digits, mode 0600. mkdir lets it
// create the file's directory (the default data directory may not exist
// yet). A key file may hold the 32 bytes themselves, 64 hex digits or their
// base64. Errors name the flag and the file, never the key.
func loadSecretKey(path string, mkdir bool, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = createSecretKey(path, mkdir); err == nil {
			log.Info("secret key created", slog.String("path", path))
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("--secret-key-file %s: %w", path, err)
	}
	key, err := parseSecretKey(b)
	if err != nil {
		return nil, fmt.Errorf("--secret-key-file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secret key file is readable by others than its owner: whoever reads it and a copy of the database has the webhook secrets",
			slog.String("path", path), slog.String("mode", fi.Mode().Perm().String()))
	}
	return key, nil
}

func parseSecretKey(b []byte) ([]byte, error) {
	if len(b) == webhook.KeySize {
		return b, nil
	}
	text := strings.TrimSpace(string(b))
	if k, err := hex.DecodeString(text); err == nil && len(k) == webhook.KeySize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(text); err == nil && len(k) == webhook.KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("not a key: want %d bytes, given as they are, as %d hex digits or in base64", webhook.KeySize, 2*webhook.KeySize)
}

// createSecretKey writes a new key to path unless a file appeared there
// meanwhile (another server starting on the same directory), and returns
// what path then holds. The key is written to a private temporary file,
// synced, and linked into place, so path never holds a partial key.
func createSecretKey(path string, mkdir bool) ([]byte, error) {
	dir := filepath.Dir(path)
	if mkdir {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	key := make([]byte, webhook.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.ReadFile(path)
}
