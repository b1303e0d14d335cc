package supervisor

import (
	"fmt"
	"os"
	"strings"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// A plugin process starts with a minimal environment, never the server's.
// The server's environment holds its secrets (IPA_DATABASE_URL with its
// password, cloud credentials, whatever the service manager put there), and
// a plugin's environment is readable by whatever the plugin runs: an exec
// command reads its parent's through /proc/$PPID/environ. So a plugin gets
// go-plugin's handshake variables (added by go-plugin itself), the launcher's
// own variables (orphan grace), and from the server's environment only the
// names below, plus those the operator names with --plugin-env.

// pluginEnvNames are the server variables every plugin inherits: where
// programs and the home directory are, language and time zone, the TLS
// trust store, the variables of the plugin contract, and the Go runtime's
// knobs (built-in runtimes are the ipa binary itself).
var pluginEnvNames = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true,
	"LANG": true, "LANGUAGE": true, "TZ": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	podapi.EnvOrphanGrace: true, podapi.EnvLogFile: true,
	"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GODEBUG": true,
	"GOTRACEBACK": true, "GORACE": true, "GOCOVERDIR": true,
}

// pluginEnvPrefixes are inherited by prefix: locale categories, and
// OpenTelemetry's settings, so plugins export their spans where the server
// does (see internal/tracing).
var pluginEnvPrefixes = []string{"LC_", "OTEL_"}

// PluginEnv returns the part of environ (NAME=value entries, as
// os.Environ gives them) a plugin process inherits: the names above and
// those in extra. Order is environ's.
func PluginEnv(environ, extra []string) []string {
	named := make(map[string]bool, len(extra))
	for _, n := range extra {
		named[n] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		if pluginEnvNames[name] || named[name] || hasAnyPrefix(name, pluginEnvPrefixes) {
			out = append(out, kv)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// CheckPluginEnvNames refuses a --plugin-env list with a name that is not a
// variable name (empty, or with '=' or a NUL byte).
func CheckPluginEnvNames(names []string) error {
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "=\x00") {
			return fmt.Errorf("--plugin-env: %q is not a variable name", n)
		}
	}
	return nil
}

// basePluginEnv is the environment a plugin of this supervisor starts
// from, before the launcher's own variables.
func (s *Supervisor) basePluginEnv() []string {
	return PluginEnv(os.Environ(), s.cfg.PluginEnv)
}
