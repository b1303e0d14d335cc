package ipacli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Secrets from files. A secret in an environment variable is readable by
// whatever can read the process's environment (/proc/<pid>/environ: the
// same user's processes unless the process is non-dumpable, root always)
// and travels into every child that inherits it; a secret in a file is read
// once and lives only in memory. systemd's LoadCredential= hands a service
// exactly such a file.

// readSecretFile returns the trimmed content of the file a --*-file flag
// names. The error names the flag and why the file is no good, never its
// content.
func readSecretFile(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("--%s %s: cannot read it: %w", flag, path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("--%s %s: the file is empty", flag, path)
	}
	return v, nil
}

// applyDatabaseURLFile sets the database URL from --database-url-file
// (IPA_DATABASE_URL_FILE) when it is given. Giving the URL both ways is
// refused rather than resolved silently: one of them is a mistake.
func (o *options) applyDatabaseURLFile(cmd *cobra.Command) error {
	if o.databaseURLFile == "" {
		return nil
	}
	// An empty IPA_DATABASE_URL says nothing (a service manager may leave one).
	inEnv := os.Getenv(envName("database")) != ""
	if cmd.Flags().Changed("database") || inEnv {
		return &exitError{code: 2, err: errors.New("the database URL is given twice: use --database (IPA_DATABASE_URL) or --database-url-file (IPA_DATABASE_URL_FILE), not both")}
	}
	u, err := readSecretFile("database-url-file", o.databaseURLFile)
	if err != nil {
		return err
	}
	o.database = u
	return nil
}
